using Headlight.Kernels;

namespace Headlight.Models;

/// <summary>
/// The forward pass of both families on any device, op by op, writing into a <see cref="ForwardState"/>.
/// BERT: embeddings → LayerNorm → post-LN blocks. GPT-2: embeddings → pre-LN blocks → final LayerNorm.
/// Requested activations are copied to the host as soon as they are computed (buffers are reused).
/// </summary>
internal static class TransformerForward
{
    /// <summary>
    /// Runs the blocks on the token, position and type ids already uploaded into <paramref name="state"/>,
    /// copying the activations named in <paramref name="capture"/> into <paramref name="cache"/>. With
    /// <paramref name="tokenEmbedsGiven"/> the caller has filled <see cref="ForwardState.TokenEmbeds"/>
    /// (integrated gradients) and the word embeddings are not gathered from the ids.
    /// </summary>
    public static void Run(ModelConfig config, DeviceWeights weights, ForwardState state, IReadOnlySet<string> capture, ActivationCache? cache, bool tokenEmbedsGiven = false)
    {
        int d = config.Hidden;
        int b = state.Batch;
        int t = state.Seq;

        // Embeddings: token (+ position + type).
        if (!tokenEmbedsGiven)
        {
            Embedding.Gather(weights.TokenEmbeddings, state.Ids, state.TokenEmbeds);
        }

        Embedding.Gather(weights.PositionEmbeddings, state.Positions, state.EmbedSum);
        if (weights.TokenTypeEmbeddings is not null)
        {
            Embedding.Gather(weights.TokenTypeEmbeddings, state.TypeIds, state.EmbedSum, accumulate: true);
        }

        Elementwise.Add(state.EmbedSum, state.TokenEmbeds, state.EmbedSum);
        var stream0 = state.StreamAt(0);
        if (config.Family == ModelFamily.BertEncoder)
        {
            LayerNorm.Forward(state.EmbedSum, weights.EmbeddingNormGamma!, weights.EmbeddingNormBeta!, stream0, config.LayerNormEpsilon, state.EmbedMean, state.EmbedRstd);
        }
        else
        {
            state.EmbedSum.CopyTo(stream0);
        }

        Keep(cache, capture, ActivationNames.Embed, stream0);

        var shape = new AttentionShape(b, config.Heads, t, t, config.HeadDim);
        float scale = 1f / MathF.Sqrt(config.HeadDim);
        for (int l = 0; l < config.Layers; l++)
        {
            var w = weights.Layers[l];
            var s = state.LayerAt(l);
            var input = state.StreamAt(l);
            var output = state.StreamAt(l + 1);
            bool bert = config.Family == ModelFamily.BertEncoder;

            // Attention: one GEMM for Q, K and V; the fused kernel reads heads straight out of it.
            var attnIn = bert ? input : s.NormIn;
            if (!bert)
            {
                LayerNorm.Forward(input, w.Norm1Gamma, w.Norm1Beta, s.NormIn, config.LayerNormEpsilon, s.Mean1, s.Rstd1);
            }

            Gemm.Forward(attnIn, w.QkvWeight, s.Qkv, bias: w.QkvBias);
            string probsName = ActivationNames.AttentionProbs(l);
            var probs = capture.Contains(probsName) ? state.ProbabilitiesFor(l) : null;
            Attention.Forward(
                new AttentionOperand(s.Qkv, 0), new AttentionOperand(s.Qkv, d), new AttentionOperand(s.Qkv, 2 * d),
                new AttentionOperand(s.Context, 0), s.LogSumExp, shape, scale, state.KeyMask, config.IsCausal, probs);
            Keep(cache, capture, probsName, probs);
            Keep(cache, capture, ActivationNames.AttentionZ(l), s.Context);
            Gemm.Forward(s.Context, w.OutWeight, s.AttnOut, bias: w.OutBias);
            Keep(cache, capture, ActivationNames.AttentionOut(l), s.AttnOut);

            if (bert)
            {
                // Post-LN: mid = LN(attn.out + x), keeping the sum for the backward pass.
                LayerNorm.Forward(s.AttnOut, w.Norm1Gamma, w.Norm1Beta, s.Mid, config.LayerNormEpsilon, s.Mean1, s.Rstd1, residual: input, sum: s.Sum1);
            }
            else
            {
                Elementwise.Add(input, s.AttnOut, s.Mid);
            }

            Keep(cache, capture, ActivationNames.ResidMid(l), s.Mid);

            // MLP: GELU fused into the first GEMM, its input kept for the backward pass.
            var mlpIn = s.Mid;
            if (!bert)
            {
                LayerNorm.Forward(s.Mid, w.Norm2Gamma, w.Norm2Beta, s.NormMid, config.LayerNormEpsilon, s.Mean2, s.Rstd2);
                mlpIn = s.NormMid;
            }

            var epilogue = config.Activation == GeluForm.Erf ? Epilogue.GeluErf : Epilogue.GeluTanh;
            Gemm.Forward(mlpIn, w.FfnInWeight, s.FfnAct, bias: w.FfnInBias, epilogue: epilogue, preActivation: state.SavesForBackward ? s.FfnPre : null);
            Gemm.Forward(s.FfnAct, w.FfnOutWeight, s.MlpOut, bias: w.FfnOutBias);
            Keep(cache, capture, ActivationNames.MlpOut(l), s.MlpOut);

            if (bert)
            {
                LayerNorm.Forward(s.MlpOut, w.Norm2Gamma, w.Norm2Beta, output, config.LayerNormEpsilon, s.Mean2, s.Rstd2, residual: s.Mid, sum: s.Sum2);
            }
            else
            {
                Elementwise.Add(s.Mid, s.MlpOut, output);
            }

            Keep(cache, capture, ActivationNames.ResidPost(l), output);
        }

        var last = state.StreamAt(config.Layers);
        if (config.Family == ModelFamily.Gpt2Decoder)
        {
            LayerNorm.Forward(last, weights.FinalNormGamma!, weights.FinalNormBeta!, state.Final!, config.LayerNormEpsilon, state.FinalMean, state.FinalRstd);
            last = state.Final!;
        }

        Keep(cache, capture, ActivationNames.Final, last);
    }

    /// <summary>The last hidden state [batch, seq, d] after <see cref="Run"/>.</summary>
    public static Tensor<float> LastHidden(ModelConfig config, ForwardState state)
        => config.Family == ModelFamily.Gpt2Decoder ? state.Final! : state.StreamAt(config.Layers);

    private static void Keep(ActivationCache? cache, IReadOnlySet<string> capture, string name, Tensor<float>? tensor)
    {
        if (cache is not null && tensor is not null && capture.Contains(name))
        {
            cache.Add(new Activation(name, tensor.Shape.Dims.ToArray(), tensor.ToArray()));
        }
    }
}
