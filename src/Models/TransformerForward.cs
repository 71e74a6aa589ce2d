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
    /// (integrated gradients) and the word embeddings are not gathered from the ids. With <paramref name="packed"/>
    /// (the <c>cpu</c> device) the four GEMMs of each block read weights packed at load. Capturing nothing
    /// allocates nothing.
    /// </summary>
    public static void Run(ModelConfig config, DeviceWeights weights, ForwardState state, IReadOnlySet<string> capture, ActivationCache? cache,
        bool tokenEmbedsGiven = false, PackedWeights? packed = null)
    {
        // Probabilities named in capture are written into the state even without a cache (rollout reads them there).
        bool capturing = capture.Count > 0;
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

        if (capturing)
        {
            Keep(cache, capture, ActivationNames.Embed, stream0);
        }

        var shape = new AttentionShape(b, config.Heads, t, t, config.HeadDim);
        float scale = 1f / MathF.Sqrt(config.HeadDim);
        for (int l = 0; l < config.Layers; l++)
        {
            var w = weights.Layers[l];
            var pw = packed?.Layers[l];
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

            Linear(attnIn, w.QkvWeight, pw?.Qkv, s.Qkv, w.QkvBias);
            string? probsName = capturing ? ActivationNames.AttentionProbs(l) : null;
            var probs = probsName is not null && capture.Contains(probsName) ? state.ProbabilitiesFor(l) : null;
            Attention.Forward(
                new AttentionOperand(s.Qkv, 0), new AttentionOperand(s.Qkv, d), new AttentionOperand(s.Qkv, 2 * d),
                new AttentionOperand(s.Context, 0), s.LogSumExp, shape, scale, state.KeyMask, config.IsCausal, probs);
            if (capturing)
            {
                Keep(cache, capture, probsName!, probs);
                Keep(cache, capture, ActivationNames.AttentionZ(l), s.Context);
            }

            Linear(s.Context, w.OutWeight, pw?.Out, s.AttnOut, w.OutBias);
            if (capturing)
            {
                Keep(cache, capture, ActivationNames.AttentionOut(l), s.AttnOut);
            }

            if (bert)
            {
                // Post-LN: mid = LN(attn.out + x), keeping the sum for the backward pass.
                LayerNorm.Forward(s.AttnOut, w.Norm1Gamma, w.Norm1Beta, s.Mid, config.LayerNormEpsilon, s.Mean1, s.Rstd1, residual: input, sum: s.Sum1);
            }
            else
            {
                Elementwise.Add(input, s.AttnOut, s.Mid);
            }

            if (capturing)
            {
                Keep(cache, capture, ActivationNames.ResidMid(l), s.Mid);
            }

            // MLP: GELU fused into the first GEMM, its input kept for the backward pass.
            var mlpIn = s.Mid;
            if (!bert)
            {
                LayerNorm.Forward(s.Mid, w.Norm2Gamma, w.Norm2Beta, s.NormMid, config.LayerNormEpsilon, s.Mean2, s.Rstd2);
                mlpIn = s.NormMid;
            }

            var epilogue = config.Activation == GeluForm.Erf ? Epilogue.GeluErf : Epilogue.GeluTanh;
            Linear(mlpIn, w.FfnInWeight, pw?.FfnIn, s.FfnAct, w.FfnInBias, epilogue, state.SavesForBackward ? s.FfnPre : null);
            Linear(s.FfnAct, w.FfnOutWeight, pw?.FfnOut, s.MlpOut, w.FfnOutBias);
            if (capturing)
            {
                Keep(cache, capture, ActivationNames.MlpOut(l), s.MlpOut);
            }

            if (bert)
            {
                LayerNorm.Forward(s.MlpOut, w.Norm2Gamma, w.Norm2Beta, output, config.LayerNormEpsilon, s.Mean2, s.Rstd2, residual: s.Mid, sum: s.Sum2);
            }
            else
            {
                Elementwise.Add(s.Mid, s.MlpOut, output);
            }

            if (capturing)
            {
                Keep(cache, capture, ActivationNames.ResidPost(l), output);
            }
        }

        var last = state.StreamAt(config.Layers);
        if (config.Family == ModelFamily.Gpt2Decoder)
        {
            LayerNorm.Forward(last, weights.FinalNormGamma!, weights.FinalNormBeta!, state.Final!, config.LayerNormEpsilon, state.FinalMean, state.FinalRstd);
            last = state.Final!;
        }

        if (capturing)
        {
            Keep(cache, capture, ActivationNames.Final, last);
        }
    }

    /// <summary>The last hidden state [batch, seq, d] after <see cref="Run"/>.</summary>
    public static Tensor<float> LastHidden(ModelConfig config, ForwardState state)
        => config.Family == ModelFamily.Gpt2Decoder ? state.Final! : state.StreamAt(config.Layers);

    // x [rows, in] · w [in, out] + bias -> y [rows, out], through the packed weight where there is one.
    private static void Linear(Tensor<float> x, Tensor<float> w, PackedWeight? packed, Tensor<float> y, Tensor<float> bias,
        Epilogue epilogue = Epilogue.None, Tensor<float>? preActivation = null)
    {
        if (packed is not null)
        {
            Gemm.ForwardPacked(x, packed, y, bias, epilogue, preActivation: preActivation);
        }
        else
        {
            Gemm.Forward(x, w, y, bias: bias, epilogue: epilogue, preActivation: preActivation);
        }
    }

    private static void Keep(ActivationCache? cache, IReadOnlySet<string> capture, string name, Tensor<float>? tensor)
    {
        if (cache is not null && tensor is not null && capture.Contains(name))
        {
            cache.Add(new Activation(name, tensor.Shape.Dims.ToArray(), tensor.ToArray()));
        }
    }
}
