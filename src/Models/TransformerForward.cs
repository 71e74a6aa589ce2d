using Headlight.Kernels;

namespace Headlight.Models;

/// <summary>
/// The forward pass of every family on any device, op by op, writing into a <see cref="ForwardState"/>.
/// BERT: embeddings → LayerNorm → post-LN blocks. Decoders: embeddings → pre-norm blocks (LayerNorm or RMSNorm; GELU
/// or SwiGLU; sequential or GPT-NeoX's parallel residual; learned positions or rotary q and k) → final norm.
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
        bool tokenEmbedsGiven = false, PackedWeights? packed = null, KeyValueCache? keyValues = null)
    {
        // Probabilities named in capture are written into the state even without a cache (rollout reads them there).
        bool capturing = capture.Count > 0;
        int b = state.Batch;
        int t = state.Seq;
        bool bert = config.Family == ModelFamily.BertEncoder;

        // Embeddings: token (+ position + type).
        if (!tokenEmbedsGiven)
        {
            Embedding.Gather(weights.TokenEmbeddings, state.Ids, state.TokenEmbeds);
        }

        var stream0 = state.StreamAt(0);
        if (weights.PositionEmbeddings is { } positionTable)
        {
            Embedding.Gather(positionTable, state.Positions, state.EmbedSum);
            if (weights.TokenTypeEmbeddings is not null)
            {
                Embedding.Gather(weights.TokenTypeEmbeddings, state.TypeIds, state.EmbedSum, accumulate: true);
            }

            Elementwise.Add(state.EmbedSum, state.TokenEmbeds, state.EmbedSum);
            if (bert)
            {
                LayerNorm.Forward(state.EmbedSum, weights.EmbeddingNormGamma!, weights.EmbeddingNormBeta!, stream0, config.LayerNormEpsilon, state.EmbedMean, state.EmbedRstd);
            }
            else
            {
                state.EmbedSum.CopyTo(stream0);
            }
        }
        else
        {
            // Rotary decoders add no position vector: the stream starts as the token embeddings.
            state.TokenEmbeds.CopyTo(stream0);
        }

        if (capturing)
        {
            Keep(cache, capture, ActivationNames.Embed, stream0);
        }

        int past = keyValues?.Length ?? 0;
        var shape = new AttentionShape(b, config.Heads, t, past + t, config.HeadDim, config.KeyValueHeads);
        float scale = 1f / MathF.Sqrt(config.HeadDim);
        for (int l = 0; l < config.Layers; l++)
        {
            var w = weights.Layers[l];
            var pw = packed?.Layers[l];
            var s = state.LayerAt(l);
            var input = state.StreamAt(l);
            var output = state.StreamAt(l + 1);

            // Attention: one GEMM for Q, K and V; the fused kernel reads heads straight out of it.
            var attnIn = bert ? input : s.NormIn;
            if (!bert)
            {
                Norm(config, input, w.Norm1Gamma, w.Norm1Beta, s.NormIn, s.Mean1, s.Rstd1);
            }

            // With a key–value cache the projection is written into the cache's next rows and rotated there.
            var qkv = keyValues is null ? s.Qkv : keyValues.Rows(l, past, t);
            Linear(attnIn, w.QkvWeight, pw?.Qkv, qkv, w.QkvBias);
            var (q, k, v) = Operands(config, s, qkv);
            if (keyValues is not null)
            {
                var all = keyValues.Rows(l, 0, past + t);
                k = new AttentionOperand(all, k.FirstColumn);
                v = new AttentionOperand(all, v.FirstColumn);
            }

            if (config.RotaryDims > 0)
            {
                Rotate(config, weights, state, qkv, keyValues is null ? s.Rotated! : qkv);
            }

            string? probsName = capturing ? ActivationNames.AttentionProbs(l) : null;
            var probs = probsName is not null && capture.Contains(probsName) && keyValues is null ? state.ProbabilitiesFor(l) : null;
            Attention.Forward(q, k, v, new AttentionOperand(s.Context, 0), s.LogSumExp, shape, scale, keyValues is null ? state.KeyMask : null, config.IsCausal, probs);
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

            // MLP: GELU fused into the first GEMM (its input kept for the backward pass), or SwiGLU after a gate|up GEMM.
            // GPT-NeoX's parallel residual feeds the MLP the block input instead of the stream after attention.
            var mlpIn = s.Mid;
            if (!bert)
            {
                Norm(config, config.ParallelResidual ? input : s.Mid, w.Norm2Gamma, w.Norm2Beta, s.NormMid, s.Mean2, s.Rstd2);
                mlpIn = s.NormMid;
            }

            if (config.Mlp == MlpKind.SwiGlu)
            {
                Linear(mlpIn, w.FfnInWeight, pw?.FfnIn, s.FfnPre, w.FfnInBias);
                SwiGlu.Forward(s.FfnPre, s.FfnAct);
            }
            else
            {
                var epilogue = config.Activation == GeluForm.Erf ? Epilogue.GeluErf : Epilogue.GeluTanh;
                Linear(mlpIn, w.FfnInWeight, pw?.FfnIn, s.FfnAct, w.FfnInBias, epilogue, state.SavesForBackward ? s.FfnPre : null);
            }

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
                // Sequential: out = mid + mlp. Parallel: out = (in + attn) + mlp, the same sum.
                Elementwise.Add(s.Mid, s.MlpOut, output);
            }

            if (capturing)
            {
                Keep(cache, capture, ActivationNames.ResidPost(l), output);
            }
        }

        var last = state.StreamAt(config.Layers);
        if (config.IsDecoder)
        {
            Norm(config, last, weights.FinalNormGamma!, weights.FinalNormBeta!, state.Final!, state.FinalMean!, state.FinalRstd!);
            last = state.Final!;
        }

        keyValues?.Advance(t);
        if (capturing)
        {
            Keep(cache, capture, ActivationNames.Final, last);
        }
    }

    /// <summary>
    /// Where attention reads q, k and v: in the fused projection, or for rotary models q and k in the rotated copy
    /// (without a cache; with one, the projection is rotated in place and both come from it).
    /// </summary>
    public static (AttentionOperand Q, AttentionOperand K, AttentionOperand V) Operands(ModelConfig config, ForwardState.LayerState s, Tensor<float> qkv)
    {
        int qWidth = config.Heads * config.HeadDim;
        int kvWidth = config.KeyValueHeads * config.HeadDim;
        var qk = config.RotaryDims > 0 && s.Rotated is not null && qkv == s.Qkv ? s.Rotated : qkv;
        return (new AttentionOperand(qk, 0), new AttentionOperand(qk, qWidth), new AttentionOperand(qkv, qWidth + kvWidth));
    }

    // Rotary embeddings on the query and key heads of qkv, written to rotated's first (heads + kv heads)·hd columns
    // (rotated may be qkv itself: in place).
    private static void Rotate(ModelConfig config, DeviceWeights weights, ForwardState state, Tensor<float> qkv, Tensor<float> rotated)
    {
        int hd = config.HeadDim;
        int qWidth = config.Heads * hd;
        Rope.Forward(new AttentionOperand(qkv, 0), new AttentionOperand(rotated, 0), config.Heads, hd, config.RotaryDims, state.Positions, weights.RopeTable!);
        Rope.Forward(new AttentionOperand(qkv, qWidth), new AttentionOperand(rotated, qWidth), config.KeyValueHeads, hd, config.RotaryDims, state.Positions, weights.RopeTable!);
    }

    // LayerNorm (mean and rstd kept) or RMSNorm (rstd kept; beta unused).
    private static void Norm(ModelConfig config, Tensor<float> x, Tensor<float> gamma, Tensor<float> beta, Tensor<float> y, Tensor<float> mean, Tensor<float> rstd)
    {
        if (config.Norm == NormKind.RmsNorm)
        {
            RmsNorm.Forward(x, gamma, y, config.LayerNormEpsilon, rstd);
        }
        else
        {
            LayerNorm.Forward(x, gamma, beta, y, config.LayerNormEpsilon, mean, rstd);
        }
    }

    /// <summary>The last hidden state [batch, seq, d] after <see cref="Run"/>.</summary>
    public static Tensor<float> LastHidden(ModelConfig config, ForwardState state)
        => config.IsDecoder ? state.Final! : state.StreamAt(config.Layers);

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
