using Headlight.Kernels;

namespace Headlight.Models;

/// <summary>
/// The op-level rules the reverse traversal in <see cref="TransformerBackward"/> applies. <see cref="Gradient"/>
/// is the chain rule; a relevance method (AttnLRP: ε-rule for linear layers, identity through LayerNorm
/// and GELU, modified attention) derives from this class and overrides the rules it changes, keeping the
/// traversal. Every rule maps the signal at an op's output to the signal at its input.
/// </summary>
internal abstract class BackwardRules
{
    /// <summary>Plain gradients.</summary>
    public static BackwardRules Gradient { get; } = new GradientRules();

    /// <summary>
    /// LRP in signal form (relevance = tensor ⊙ signal): the ε-rule for linear layers and the rotary map, the identity
    /// rule for LayerNorm and RMSNorm (σ held constant), GELU and SiLU, the uniform rule for the SwiGLU product, and <paramref name="attention"/>'s rule inside attention (AttnLRP's uniform and
    /// softmax rules, or CP-LRP). Residual additions pass the signal on unchanged: relevance splits in proportion to
    /// the two summands. <paramref name="scratch"/> holds the ε-normalised signal of one linear layer at a time and must
    /// be at least as large as the widest layer output.
    /// </summary>
    public static BackwardRules Relevance(AttentionRelevanceRule attention, float epsilon, Tensor<float> scratch)
        => new RelevanceRules(attention, epsilon, scratch);

    /// <summary>
    /// Through <c>output = LN(input)</c> (input being the sum when a residual was fused):
    /// <paramref name="dOutput"/> [rows, d] → <paramref name="dInput"/> [rows, d], added to it when
    /// <paramref name="accumulate"/> (a residual branch's signal already there).
    /// </summary>
    public abstract void LayerNorm(Tensor<float> dOutput, Tensor<float> input, Tensor<float> output, Tensor<float> gamma,
        Tensor<float> mean, Tensor<float> rstd, Tensor<float> dInput, bool accumulate, Tensor<float>? dGamma = null, Tensor<float>? dBeta = null);

    /// <summary>
    /// Through <c>output = input·weight + bias</c> (weight [in, out]): <paramref name="dOutput"/> [rows, out]
    /// → <paramref name="dInput"/> [rows, in], added to it when <paramref name="accumulate"/>.
    /// </summary>
    /// <remarks>With <paramref name="dWeight"/> (and <paramref name="dBias"/>) the weight gradients are added to them (training); relevance rules ignore them.</remarks>
    public abstract void Linear(Tensor<float> input, Tensor<float> weight, Tensor<float> output, Tensor<float> dOutput,
        Tensor<float> dInput, bool accumulate, Tensor<float>? dWeight = null, Tensor<float>? dBias = null);

    /// <summary>Through <c>act = gelu(pre)</c>, in place: <paramref name="signal"/> holds d(act) and becomes d(pre).</summary>
    public abstract void Gelu(Tensor<float> pre, Tensor<float> act, Tensor<float> signal, GeluForm form);

    /// <summary>Through <c>output = RMSNorm(input)</c>: <paramref name="dOutput"/> → <paramref name="dInput"/>, added when <paramref name="accumulate"/>.</summary>
    public abstract void RmsNorm(Tensor<float> dOutput, Tensor<float> input, Tensor<float> gamma, Tensor<float> rstd, Tensor<float> dInput, bool accumulate, Tensor<float>? dGamma = null);

    /// <summary>Through <c>act = silu(gate) ⊙ up</c>: <paramref name="dAct"/> [rows, n] → <paramref name="dGateUp"/> [rows, 2n] (overwritten).</summary>
    public abstract void SwiGlu(Tensor<float> gateUp, Tensor<float> dAct, Tensor<float> dGateUp);

    /// <summary>Through the rotary embedding of <paramref name="heads"/> heads: d(rotated) → d(projection) (overwritten).</summary>
    public abstract void Rope(AttentionOperand rotated, AttentionOperand dRotated, AttentionOperand dInput, int heads, int headDim, int rotaryDims,
        Tensor<int> positions, Tensor<float> table);

    /// <summary>Through fused attention: d(output) → dq, dk, dv (overwritten); <paramref name="delta"/> is scratch [batch, heads, query].</summary>
    public abstract void Attention(AttentionOperand q, AttentionOperand k, AttentionOperand v, AttentionOperand output,
        AttentionOperand dOutput, Tensor<float> logSumExp, AttentionShape shape, float scale, Tensor<int> keyMask, bool causal,
        AttentionOperand dq, AttentionOperand dk, AttentionOperand dv, Tensor<float> delta);

    private sealed class GradientRules : BackwardRules
    {
        public override void LayerNorm(Tensor<float> dOutput, Tensor<float> input, Tensor<float> output, Tensor<float> gamma,
            Tensor<float> mean, Tensor<float> rstd, Tensor<float> dInput, bool accumulate, Tensor<float>? dGamma = null, Tensor<float>? dBeta = null)
            => Kernels.LayerNorm.Backward(dOutput, input, gamma, mean, rstd, dInput, dGamma, dBeta, accumulate: true, accumulateInput: accumulate);

        // The input gradient, and the weight gradients (added: micro-batches accumulate) only when asked for.
        public override void Linear(Tensor<float> input, Tensor<float> weight, Tensor<float> output, Tensor<float> dOutput,
            Tensor<float> dInput, bool accumulate, Tensor<float>? dWeight = null, Tensor<float>? dBias = null)
        {
            Gemm.Backward(input, weight, dOutput, dInput, null, null, accumulate: accumulate);
            if (dWeight is not null)
            {
                Gemm.Backward(input, weight, dOutput, null, dWeight, dBias, accumulate: true);
            }
        }

        public override void Gelu(Tensor<float> pre, Tensor<float> act, Tensor<float> signal, GeluForm form)
            => Kernels.Gelu.Backward(pre, signal, signal, form);

        public override void RmsNorm(Tensor<float> dOutput, Tensor<float> input, Tensor<float> gamma, Tensor<float> rstd, Tensor<float> dInput, bool accumulate, Tensor<float>? dGamma = null)
            => Kernels.RmsNorm.Backward(dOutput, input, gamma, rstd, dInput, dGamma, accumulateInput: accumulate);

        public override void SwiGlu(Tensor<float> gateUp, Tensor<float> dAct, Tensor<float> dGateUp)
            => Kernels.SwiGlu.Backward(gateUp, dAct, dGateUp);

        public override void Rope(AttentionOperand rotated, AttentionOperand dRotated, AttentionOperand dInput, int heads, int headDim, int rotaryDims,
            Tensor<int> positions, Tensor<float> table)
            => Kernels.Rope.Backward(dRotated, dInput, heads, headDim, rotaryDims, positions, table);

        public override void Attention(AttentionOperand q, AttentionOperand k, AttentionOperand v, AttentionOperand output,
            AttentionOperand dOutput, Tensor<float> logSumExp, AttentionShape shape, float scale, Tensor<int> keyMask, bool causal,
            AttentionOperand dq, AttentionOperand dk, AttentionOperand dv, Tensor<float> delta)
            => Kernels.Attention.Backward(q, k, v, output, dOutput, logSumExp, shape, scale, keyMask, causal, dq, dk, dv, delta);
    }

    private sealed class RelevanceRules(AttentionRelevanceRule attention, float epsilon, Tensor<float> scratch) : BackwardRules
    {
        public override void LayerNorm(Tensor<float> dOutput, Tensor<float> input, Tensor<float> output, Tensor<float> gamma,
            Tensor<float> mean, Tensor<float> rstd, Tensor<float> dInput, bool accumulate, Tensor<float>? dGamma = null, Tensor<float>? dBeta = null)
            => Kernels.LayerNorm.Relevance(dOutput, gamma, rstd, dInput, accumulate);

        public override void Linear(Tensor<float> input, Tensor<float> weight, Tensor<float> output, Tensor<float> dOutput,
            Tensor<float> dInput, bool accumulate, Tensor<float>? dWeight = null, Tensor<float>? dBias = null)
            => Gemm.Relevance(input, weight, output, dOutput, dInput, epsilon, scratch.Slice(0, output.Shape.Dims.ToArray()), accumulate: accumulate);

        public override void Gelu(Tensor<float> pre, Tensor<float> act, Tensor<float> signal, GeluForm form)
            => Kernels.Gelu.Relevance(pre, signal, signal, form);

        public override void RmsNorm(Tensor<float> dOutput, Tensor<float> input, Tensor<float> gamma, Tensor<float> rstd, Tensor<float> dInput, bool accumulate, Tensor<float>? dGamma = null)
            => Kernels.RmsNorm.Relevance(dOutput, gamma, rstd, dInput, accumulate);

        public override void SwiGlu(Tensor<float> gateUp, Tensor<float> dAct, Tensor<float> dGateUp)
            => Kernels.SwiGlu.Relevance(gateUp, dAct, dGateUp);

        public override void Rope(AttentionOperand rotated, AttentionOperand dRotated, AttentionOperand dInput, int heads, int headDim, int rotaryDims,
            Tensor<int> positions, Tensor<float> table)
            => Kernels.Rope.Relevance(rotated, dRotated, dInput, heads, headDim, rotaryDims, positions, table, epsilon);

        public override void Attention(AttentionOperand q, AttentionOperand k, AttentionOperand v, AttentionOperand output,
            AttentionOperand dOutput, Tensor<float> logSumExp, AttentionShape shape, float scale, Tensor<int> keyMask, bool causal,
            AttentionOperand dq, AttentionOperand dk, AttentionOperand dv, Tensor<float> delta)
            => Kernels.Attention.Relevance(q, k, v, output, dOutput, logSumExp, shape, scale, keyMask, causal, dq, dk, dv, delta, attention, epsilon);
    }
}

/// <summary>
/// What a backward pass hands out on the way besides the signal at the embeddings: the signal at every block
/// boundary reduced against the residual stream, and the signal at each block's attention output.
/// </summary>
internal sealed class BackwardTaps
{
    /// <summary>
    /// When set, <c>[layers + 1, batch, seq]</c>: <c>Σ_d stream ⊙ signal</c> of the residual stream entering block l
    /// (l = layers: after the last block). Under relevance rules this is each token's relevance at that boundary.
    /// </summary>
    public Tensor<float>? Streams { get; init; }

    /// <summary>Called with (layer, signal at attn.z [batch, seq, d]) before that layer's attention rule runs.</summary>
    public Action<int, Tensor<float>>? Context { get; init; }
}

/// <summary>
/// The buffers of one backward pass for one (batch, seq) shape, owned by the <see cref="ForwardState"/>
/// of that shape (allocated once, with it freed). Two residual-stream signals alternate through the
/// blocks; the rest is per-op scratch.
/// </summary>
internal sealed class BackwardState
{
    private readonly ForwardState owner;
    private readonly int widest;
    private readonly int layers;
    private readonly int heads;
    private Tensor<float>? relevanceScratch;
    private Tensor<float>? boundaries;
    private Tensor<float>?[]? probabilityGradients;

    public BackwardState(ForwardState owner, ModelConfig config)
    {
        this.owner = owner;
        bool swiGlu = config.Mlp == MlpKind.SwiGlu;
        widest = Math.Max(Math.Max(config.QkvWidth, config.Hidden), swiGlu ? 2 * config.Intermediate : config.Intermediate);
        int b = owner.Batch;
        int t = owner.Seq;
        int d = config.Hidden;
        Family = config.Family;
        layers = config.Layers;
        heads = config.Heads;
        StreamA = owner.Float(b, t, d);
        StreamB = owner.Float(b, t, d);
        Context = owner.Float(b, t, d);
        Qkv = owner.Float(b, t, config.QkvWidth);
        Rotated = config.RotaryDims > 0 ? owner.Float(b, t, (config.Heads + config.KeyValueHeads) * config.HeadDim) : null;
        Ffn = owner.Float(b, t, config.Intermediate);
        GateUp = swiGlu ? owner.Float(b, t, 2 * config.Intermediate) : null;
        StreamC = config.ParallelResidual ? owner.Float(b, t, d) : null;
        Delta = owner.Float(b, config.Heads, t);
        EmbedSum = Family == ModelFamily.BertEncoder ? owner.Float(b, t, d) : StreamA;
        Gates = owner.Float(config.Layers, b, config.Heads);
        GateRows = owner.Float(b, t, config.Heads);
        Ones = owner.Float(1, t);
        Ones.Fill(1f);
    }

    public ModelFamily Family { get; }

    public Tensor<float> StreamA { get; }      // [batch, seq, d] the signal at a block boundary

    public Tensor<float> StreamB { get; }      // [batch, seq, d] the signal inside a block

    public Tensor<float> Context { get; }      // [batch, seq, d] d(attn.z)

    public Tensor<float> Qkv { get; }          // [batch, seq, (heads + 2·kv)·hd] dq, dk, dv side by side

    public Tensor<float>? Rotated { get; }     // [batch, seq, (heads + kv)·hd] d(rotated q | k) (rotary decoders)

    public Tensor<float>? GateUp { get; }      // [batch, seq, 2·intermediate] d(gate | up) (SwiGLU)

    public Tensor<float>? StreamC { get; }     // [batch, seq, d] parallel residual: d(block input) through the MLP branch

    public Tensor<float> Ffn { get; }          // [batch, seq, intermediate] d(GELU output), then d(GELU input)

    public Tensor<float> Delta { get; }        // [batch, heads, seq] attention backward scratch

    public Tensor<float> EmbedSum { get; }     // [batch, seq, d] d(word + position + type embeddings); GPT-2: StreamA

    public Tensor<float> Gates { get; }        // [layer, batch, head] d(target)/d(gate) at gate = 1

    public Tensor<float> GateRows { get; }     // [batch, seq, head] per-token partial sums of the gate gradient

    public Tensor<float> Ones { get; }         // [1, seq] sums the gate rows over tokens in one GEMM

    /// <summary>[batch, seq, max(3d, intermediate)]: scratch for <see cref="BackwardRules.Relevance"/>, made on first use.</summary>
    public Tensor<float> RelevanceScratch => relevanceScratch ??= owner.Float(owner.Batch, owner.Seq, widest);

    /// <summary>[layers + 1, batch, seq]: the boundary reductions of <see cref="BackwardTaps.Streams"/>, made on first use.</summary>
    public Tensor<float> Boundaries => boundaries ??= owner.Float(layers + 1, owner.Batch, owner.Seq);

    /// <summary>d(target)/d(attention probabilities) [batch, head, query, key] of block <paramref name="layer"/>, one buffer per block made on first use.</summary>
    public Tensor<float> ProbabilityGradient(int layer)
    {
        probabilityGradients ??= new Tensor<float>?[layers];
        return probabilityGradients[layer] ??= owner.Float(owner.Batch, heads, owner.Seq, owner.Seq);
    }

    /// <summary>Where the caller writes d(target)/d(last hidden state) (GPT-2: of the final LayerNorm output), [batch, seq, d].</summary>
    public Tensor<float> Seed => Family == ModelFamily.BertEncoder ? StreamA : StreamB;

    /// <summary>
    /// d(target)/d(word embeddings) [batch, seq, d] after <see cref="TransformerBackward.Run"/>. Positions and
    /// token types are held fixed, so it equals the gradient of the summed embedding before BERT's embedding LayerNorm.
    /// </summary>
    public Tensor<float> TokenEmbeds => EmbedSum;
}

/// <summary>
/// The backward pass of both families from a signal at the last hidden state to the word embeddings,
/// reusing what a forward pass with <c>savesForBackward</c> kept (LayerNorm inputs and statistics, the
/// attention logsumexp, the GELU inputs). Inputs only: no weight gradients. Optionally it also gives the
/// gradient for a gate ξ = 1 on each head's output (Michel et al. 2019's head importance).
/// </summary>
internal static class TransformerBackward
{
    /// <summary>
    /// Runs the blocks in reverse. <paramref name="grads"/>.<see cref="BackwardState.Seed"/> must hold the
    /// signal at the last hidden state; afterwards <see cref="BackwardState.TokenEmbeds"/> holds the signal
    /// at the word embeddings, and with <paramref name="gates"/> <see cref="BackwardState.Gates"/> holds
    /// Σ over tokens and the head's columns of d(attn.z) ⊙ attn.z per [layer, batch, head].
    /// </summary>
    /// <remarks>With <paramref name="taps"/>, also reduces the signal at every block boundary against the stream and hands out
    /// each layer's signal at attn.z (see <see cref="BackwardTaps"/>).</remarks>
    /// <remarks>With <paramref name="weightGrads"/> (decoders, gradient rules) every parameter's gradient is added to its buffer there too;
    /// the embedding tables' gradients are left to the caller (scatter-adds of <see cref="BackwardState.TokenEmbeds"/>).</remarks>
    public static void Run(ModelConfig config, DeviceWeights weights, ForwardState state, BackwardState grads, BackwardRules rules, bool gates, BackwardTaps? taps = null,
        Training.ParameterGradients? weightGrads = null)
    {
        if (!state.SavesForBackward)
        {
            throw new InvalidOperationException("The backward pass needs a forward state made with savesForBackward.");
        }

        var shape = new AttentionShape(state.Batch, config.Heads, state.Seq, state.Seq, config.HeadDim, config.KeyValueHeads);
        float scale = 1f / MathF.Sqrt(config.HeadDim);
        var a = grads.StreamA;
        var b = grads.StreamB;
        bool bert = config.Family == ModelFamily.BertEncoder;

        if (!bert)
        {
            // Final norm: seed (in B) → d(stream after the last block) in A.
            Norm(config, rules, b, state.StreamAt(config.Layers), state.Final!, weights.FinalNormGamma!, state.FinalMean!, state.FinalRstd!, a, accumulate: false,
                weightGrads?.FinalNormGamma, weightGrads?.FinalNormBeta);
        }

        Boundary(config, state, grads, taps, config.Layers);

        for (int l = config.Layers - 1; l >= 0; l--)
        {
            var w = weights.Layers[l];
            var s = state.LayerAt(l);
            var input = state.StreamAt(l);
            var output = state.StreamAt(l + 1);
            var g = weightGrads?.Layers[l];
            if (bert)
            {
                // Post-LN block, A = d(output): out = LN2(mlp(mid) + mid), mid = LN1(attn(in) + in).
                rules.LayerNorm(a, s.Sum2, output, w.Norm2Gamma, s.Mean2, s.Rstd2, b, accumulate: false);   // B = d(sum2) = d(mlp.out), d(mid) so far
                Mlp(config, w, s, rules, grads, b, null);                                                    // Ffn = d(MLP input)
                rules.Linear(s.Mid, w.FfnInWeight, s.FfnPre, grads.Ffn, b, accumulate: true);               // B = d(mid)
                rules.LayerNorm(b, s.Sum1, s.Mid, w.Norm1Gamma, s.Mean1, s.Rstd1, a, accumulate: false);    // A = d(sum1) = d(attn.out), d(in) so far
                Attention(config, w, s, input, weights, state, grads, rules, shape, scale, a, l, gates, taps, null); // A = d(in)
            }
            else if (!config.ParallelResidual)
            {
                // Pre-norm block, A = d(output): out = mid + mlp(norm2(mid)), mid = in + attn(norm1(in)).
                var dMlpIn = Mlp(config, w, s, rules, grads, a, g);
                rules.Linear(s.NormMid, w.FfnInWeight, s.FfnPre, dMlpIn, b, accumulate: false, g?.FfnInWeight, g?.FfnInBias); // B = d(norm2 output)
                Norm(config, rules, b, s.Mid, s.NormMid, w.Norm2Gamma, s.Mean2, s.Rstd2, a, accumulate: true, g?.Norm2Gamma, g?.Norm2Beta); // A = d(mid)
                Attention(config, w, s, s.NormIn, weights, state, grads, rules, shape, scale, b, l, gates, taps, g); // B = d(norm1 output)
                Norm(config, rules, b, input, s.NormIn, w.Norm1Gamma, s.Mean1, s.Rstd1, a, accumulate: true, g?.Norm1Gamma, g?.Norm1Beta); // A = d(in)
            }
            else
            {
                // Parallel residual, A = d(output): out = in + attn(norm1(in)) + mlp(norm2(in)); A is d(in), d(attn.out)
                // and d(mlp.out) at once, so each branch's share of d(in) is gathered in C before it is added.
                var c = grads.StreamC!;
                var dMlpIn = Mlp(config, w, s, rules, grads, a, g);
                rules.Linear(s.NormMid, w.FfnInWeight, s.FfnPre, dMlpIn, b, accumulate: false, g?.FfnInWeight, g?.FfnInBias); // B = d(norm2 output)
                Norm(config, rules, b, input, s.NormMid, w.Norm2Gamma, s.Mean2, s.Rstd2, c, accumulate: false, g?.Norm2Gamma, g?.Norm2Beta); // C = d(in) through the MLP
                Attention(config, w, s, s.NormIn, weights, state, grads, rules, shape, scale, b, l, gates, taps, g); // B = d(norm1 output)
                Norm(config, rules, b, input, s.NormIn, w.Norm1Gamma, s.Mean1, s.Rstd1, c, accumulate: true, g?.Norm1Gamma, g?.Norm1Beta); // C += d(in) through attention
                Elementwise.Add(a, c, a);                                                                      // A = d(in)
            }

            Boundary(config, state, grads, taps, l);
        }

        if (bert)
        {
            // The embedding LayerNorm; word, position and type embeddings are summed, so each receives this.
            rules.LayerNorm(a, state.EmbedSum, state.StreamAt(0), weights.EmbeddingNormGamma!, state.EmbedMean, state.EmbedRstd, grads.EmbedSum, accumulate: false);
        }
    }

    // Through the MLP's second projection and its activation, from d(mlp.out): returns d(first projection's output),
    // [batch, seq, intermediate] (GELU, in Ffn) or [batch, seq, 2·intermediate] (SwiGLU gate | up, in GateUp).
    private static Tensor<float> Mlp(ModelConfig config, LayerWeights w, ForwardState.LayerState s, BackwardRules rules, BackwardState grads, Tensor<float> dMlpOut,
        Training.LayerGradients? g)
    {
        rules.Linear(s.FfnAct, w.FfnOutWeight, s.MlpOut, dMlpOut, grads.Ffn, accumulate: false, g?.FfnOutWeight, g?.FfnOutBias); // Ffn = d(activation output)
        if (config.Mlp == MlpKind.SwiGlu)
        {
            rules.SwiGlu(s.FfnPre, grads.Ffn, grads.GateUp!);
            return grads.GateUp!;
        }

        rules.Gelu(s.FfnPre, s.FfnAct, grads.Ffn, config.Activation);
        return grads.Ffn;
    }

    private static void Norm(ModelConfig config, BackwardRules rules, Tensor<float> dOutput, Tensor<float> input, Tensor<float> output, Tensor<float> gamma,
        Tensor<float> mean, Tensor<float> rstd, Tensor<float> dInput, bool accumulate, Tensor<float>? dGamma = null, Tensor<float>? dBeta = null)
    {
        if (config.Norm == NormKind.RmsNorm)
        {
            rules.RmsNorm(dOutput, input, gamma, rstd, dInput, accumulate, dGamma);
        }
        else
        {
            rules.LayerNorm(dOutput, input, output, gamma, mean, rstd, dInput, accumulate, dGamma, dBeta);
        }
    }

    // dContext from the output projection, the gate gradients, then attention (and the rotary map) and the QKV
    // projection: the QKV projection's input gradient is added to (BERT) or written into (decoders) dAttnIn.
    private static void Attention(ModelConfig config, LayerWeights w, ForwardState.LayerState s, Tensor<float> attnIn, DeviceWeights weights, ForwardState state,
        BackwardState grads, BackwardRules rules, AttentionShape shape, float scale, Tensor<float> dAttnIn, int layer, bool gates, BackwardTaps? taps,
        Training.LayerGradients? g)
    {
        bool bert = config.Family == ModelFamily.BertEncoder;
        int hd = config.HeadDim;
        int qWidth = config.Heads * hd;
        int kvWidth = config.KeyValueHeads * hd;
        var dAttnOut = grads.StreamA;
        rules.Linear(s.Context, w.OutWeight, s.AttnOut, dAttnOut, grads.Context, accumulate: false, g?.OutWeight, g?.OutBias); // Context = d(attn.z)
        if (gates)
        {
            GateGradients(config, s, state, grads, layer);
        }

        taps?.Context?.Invoke(layer, grads.Context);

        var (q, k, v) = TransformerForward.Operands(config, s, s.Qkv);
        var dqk = grads.Rotated ?? grads.Qkv;
        rules.Attention(
            q, k, v, new AttentionOperand(s.Context, 0), new AttentionOperand(grads.Context, 0), s.LogSumExp, shape, scale, state.KeyMask, config.IsCausal,
            new AttentionOperand(dqk, 0), new AttentionOperand(dqk, qWidth), new AttentionOperand(grads.Qkv, qWidth + kvWidth), grads.Delta);
        if (grads.Rotated is { } dRotated)
        {
            // d(rotated q | k) → d(projected q | k), the value columns already in place.
            rules.Rope(q, new AttentionOperand(dRotated, 0), new AttentionOperand(grads.Qkv, 0), config.Heads, hd, config.RotaryDims, state.Positions, weights.RopeTable!);
            rules.Rope(k, new AttentionOperand(dRotated, qWidth), new AttentionOperand(grads.Qkv, qWidth), config.KeyValueHeads, hd, config.RotaryDims, state.Positions, weights.RopeTable!);
        }

        rules.Linear(attnIn, w.QkvWeight, s.Qkv, grads.Qkv, dAttnIn, accumulate: bert, g?.QkvWeight, g?.QkvBias);
    }

    // streams[layer, b, t] = Σ_d stream[b, t, d]·A[b, t, d] with A = d(stream entering block `layer`). StreamB is free at
    // every boundary (the block that used it is done, the next has not started), so it holds the product.
    private static void Boundary(ModelConfig config, ForwardState state, BackwardState grads, BackwardTaps? taps, int layer)
    {
        if (taps?.Streams is not { } streams)
        {
            return;
        }

        int rows = state.Batch * state.Seq;
        Elementwise.Multiply(state.StreamAt(layer), grads.StreamA, grads.StreamB);
        Reduce.RowSum(grads.StreamB.Reshape(rows, config.Hidden), streams.Slice((long)layer * rows, rows));
    }

    // gates[layer, b, h] = Σ_t Σ_{j in head h} dContext[b, t, j]·Context[b, t, j]. StreamB is free here in both
    // families (BERT has consumed d(mid); GPT-2 writes d(ln_1 output) only afterwards), so it holds the product.
    private static void GateGradients(ModelConfig config, ForwardState.LayerState s, ForwardState state, BackwardState grads, int layer)
    {
        int b = state.Batch;
        int t = state.Seq;
        int h = config.Heads;
        var product = grads.StreamB;
        Elementwise.Multiply(grads.Context, s.Context, product);
        Reduce.RowSum(product.Reshape(b * t * h, config.HeadDim), grads.GateRows.Reshape(b * t * h));
        // ones [1, t] · rows[b] [t, h] → gates[layer, b] [1, h], all batches in one GEMM.
        var target = grads.Gates.Slice((long)layer * b * h, b, 1, h);
        Gemm.Forward(grads.Ones, grads.GateRows, target);
    }
}
