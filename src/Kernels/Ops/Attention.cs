using System.Globalization;

namespace Headlight.Kernels;

/// <summary>
/// One attention input or output, read or written in place inside a projection buffer: head <c>h</c>,
/// dimension <c>d</c> of token <c>t</c> of batch <c>b</c> is
/// <c>Tensor[(b·seq + t)·width + FirstColumn + h·headDim + d]</c>. A packed QKV buffer
/// <c>[batch, seq, 3·heads·headDim]</c> gives Q, K and V at first columns 0, heads·headDim and 2·heads·headDim.
/// K, V, dK and dV hold <c>kvHeads·headDim</c> columns (<see cref="AttentionShape.KeyValueHeads"/>), so a grouped-query
/// buffer <c>[batch, seq, (heads + 2·kvHeads)·headDim]</c> gives them at heads·headDim and (heads + kvHeads)·headDim.
/// </summary>
/// <param name="Tensor">The buffer, <c>[batch, seq, width]</c>.</param>
/// <param name="FirstColumn">The column where head 0 starts; <c>FirstColumn + heads·headDim</c> (kvHeads for K, V, dK, dV) must not exceed width.</param>
public readonly record struct AttentionOperand(Tensor<float> Tensor, int FirstColumn = 0);

/// <summary>The sizes of one attention call.</summary>
/// <param name="Batch">Sequences in the batch.</param>
/// <param name="Heads">Attention heads.</param>
/// <param name="QueryLength">Query tokens per sequence.</param>
/// <param name="KeyLength">Key (and value) tokens per sequence; may differ from <paramref name="QueryLength"/>, as with a decoder's cache.</param>
/// <param name="HeadDim">Dimensions per head, 1 to <see cref="Attention.MaxHeadDim"/>.</param>
/// <param name="KvHeads">
/// Key/value heads for grouped-query attention (0 = <paramref name="Heads"/>, multi-head attention; 1 = multi-query);
/// must divide <paramref name="Heads"/>. Query head <c>h</c> reads key/value head <c>h / (heads / kvHeads)</c>.
/// </param>
public readonly record struct AttentionShape(int Batch, int Heads, int QueryLength, int KeyLength, int HeadDim, int KvHeads = 0)
{
    /// <summary>Key/value heads: <see cref="KvHeads"/>, or <see cref="Heads"/> when 0 (multi-head attention). Must divide <see cref="Heads"/>.</summary>
    public int KeyValueHeads => KvHeads == 0 ? Heads : KvHeads;
}

/// <summary>
/// Fused multi-head attention, <c>O = softmax(scale·Q·Kᵀ + mask)·V</c>, forward and backward, without
/// a <c>[query, key]</c> buffer: the forward pass is FlashAttention's online softmax and saves the row
/// logsumexp <c>L</c>; probabilities (for capture) and the backward pass recompute <c>P = exp(scale·q·k − L)</c>.
/// A query row whose keys are all masked gives output 0, probabilities 0, <c>L = +∞</c> and zero gradients.
/// Grouped-query (and multi-query) attention as Llama and Qwen2 use it: with <see cref="AttentionShape.KvHeads"/> key/value
/// heads, query head <c>h</c> reads key/value head <c>g = h / (heads / kvHeads)</c> (consecutive query heads share one,
/// as Hugging Face's <c>repeat_kv</c>); K, V, dK and dV hold <c>kvHeads·headDim</c> columns, and dK, dV of head <c>g</c>
/// are summed over its group's query heads. Q, the output, dQ, dOutput, logsumexp and probabilities stay per query head.
/// </summary>
public static partial class Attention
{
    /// <summary>The largest head dimension the kernels support.</summary>
    public const int MaxHeadDim = 128;

    /// <summary>
    /// Forward attention for every (batch, head):
    /// <c>output[b, i, h] = Σⱼ softmaxⱼ(scale·q[b, i, h]·k[b, j, g] + mask)·v[b, j, g]</c>, <c>g = h / (heads / kvHeads)</c>.
    /// </summary>
    /// <param name="q">Queries, <c>[batch, query, width]</c>.</param>
    /// <param name="k">Keys, <c>[batch, key, width]</c>.</param>
    /// <param name="v">Values, <c>[batch, key, width]</c>.</param>
    /// <param name="output">Written, <c>[batch, query, width]</c> at its first column; other columns are left alone.</param>
    /// <param name="logSumExp">Written, <c>[batch, heads, query]</c>: <c>L = m + log ℓ</c> per row, <c>+∞</c> for a row with no visible key.</param>
    /// <param name="shape">The sizes.</param>
    /// <param name="scale">Multiplies every score, usually <c>1/√headDim</c>.</param>
    /// <param name="keyMask">Optional <c>[batch, key]</c>: 1 (any non-zero) = attend, 0 = padding.</param>
    /// <param name="causal">When set, key <c>j</c> is visible to query <c>i</c> only if <c>j ≤ i + (key − query)</c>.</param>
    /// <param name="probabilities">Optional, written <c>[batch, heads, query, key]</c>: <c>exp(scale·q·k − L)</c>, exactly 0 for masked keys.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, mis-shaped or overlaps an output.</exception>
    public static void Forward(
        AttentionOperand q,
        AttentionOperand k,
        AttentionOperand v,
        AttentionOperand output,
        Tensor<float> logSumExp,
        AttentionShape shape,
        float scale,
        Tensor<int>? keyMask = null,
        bool causal = false,
        Tensor<float>? probabilities = null)
    {
        ForwardWith(q, k, v, output, logSumExp, shape, scale, keyMask, causal, probabilities, perThread: null);
    }

    /// <summary>
    /// <see cref="Forward"/> with the ILGPU kernel chosen: <paramref name="perThread"/> true runs one thread per query
    /// row without shared memory or barriers, false the tiled group kernel; null chooses (tests run both this way).
    /// </summary>
    internal static void ForwardWith(
        AttentionOperand q,
        AttentionOperand k,
        AttentionOperand v,
        AttentionOperand output,
        Tensor<float> logSumExp,
        AttentionShape shape,
        float scale,
        Tensor<int>? keyMask,
        bool causal,
        Tensor<float>? probabilities,
        bool? perThread)
    {
        const string op = "Attention.Forward";
        var args = new OpArgs(op)
            .Add("q", q.Tensor).Add("k", k.Tensor).Add("v", v.Tensor).Add("output", output.Tensor)
            .Add("logSumExp", logSumExp).AddOptional("keyMask", keyMask).AddOptional("probabilities", probabilities);
        var layout = CheckShape(args, shape, scale, causal, keyMask);
        (layout.QStride, layout.QColumn) = CheckOperand(args, "q", q, shape, shape.QueryLength);
        (layout.KStride, layout.KColumn) = CheckOperand(args, "k", k, shape, shape.KeyLength, layout.KvHeads);
        (layout.VStride, layout.VColumn) = CheckOperand(args, "v", v, shape, shape.KeyLength, layout.KvHeads);
        (layout.OStride, layout.OColumn) = CheckOperand(args, "output", output, shape, shape.QueryLength);
        CheckDims(args, "logSumExp", logSumExp, shape.Batch, shape.Heads, shape.QueryLength);
        CheckDims(args, "probabilities", probabilities, shape.Batch, shape.Heads, shape.QueryLength, shape.KeyLength);
        CheckNoOverlap(
            args,
            [Region("output", output, layout.Heads * layout.HeadDim), Region("logSumExp", logSumExp), Region("probabilities", probabilities)],
            [Region("q", q, layout.Heads * layout.HeadDim), Region("k", k, layout.KvHeads * layout.HeadDim), Region("v", v, layout.KvHeads * layout.HeadDim)]);

        if (shape.Batch == 0 || shape.QueryLength == 0)
        {
            return;
        }

        args.Backend.AttentionForward(q.Tensor, k.Tensor, v.Tensor, output.Tensor, logSumExp, keyMask, probabilities, layout, perThread);
    }

    /// <summary>
    /// Backward of <see cref="Forward"/> (FlashAttention's): <c>D = rowsum(dO∘O)</c>, <c>P = exp(S − L)</c>,
    /// <c>dV = Pᵀ·dO</c>, <c>dP = dO·Vᵀ</c>, <c>dS = P∘(dP − D)</c>, <c>dQ = scale·dS·K</c>, <c>dK = scale·dSᵀ·Q</c>.
    /// <paramref name="dq"/>, <paramref name="dk"/> and <paramref name="dv"/> are overwritten, not accumulated,
    /// and may be column ranges of one packed buffer.
    /// </summary>
    /// <param name="q">The forward queries, <c>[batch, query, width]</c>.</param>
    /// <param name="k">The forward keys, <c>[batch, key, width]</c>.</param>
    /// <param name="v">The forward values, <c>[batch, key, width]</c>.</param>
    /// <param name="output">The forward output, <c>[batch, query, width]</c>.</param>
    /// <param name="dOutput">The gradient of the output, <c>[batch, query, width]</c>.</param>
    /// <param name="logSumExp">The forward's <c>[batch, heads, query]</c> logsumexp.</param>
    /// <param name="shape">The sizes.</param>
    /// <param name="scale">The forward's score scale.</param>
    /// <param name="keyMask">The forward's key mask, or null.</param>
    /// <param name="causal">The forward's causal flag.</param>
    /// <param name="dq">Written: the gradient of <paramref name="q"/>.</param>
    /// <param name="dk">Written: the gradient of <paramref name="k"/>.</param>
    /// <param name="dv">Written: the gradient of <paramref name="v"/>.</param>
    /// <param name="delta">Scratch the caller provides, <c>[batch, heads, query]</c>; holds <c>D</c> afterwards.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, mis-shaped or overlaps an output.</exception>
    public static void Backward(
        AttentionOperand q,
        AttentionOperand k,
        AttentionOperand v,
        AttentionOperand output,
        AttentionOperand dOutput,
        Tensor<float> logSumExp,
        AttentionShape shape,
        float scale,
        Tensor<int>? keyMask,
        bool causal,
        AttentionOperand dq,
        AttentionOperand dk,
        AttentionOperand dv,
        Tensor<float> delta)
    {
        BackwardCore("Attention.Backward", q, k, v, output, dOutput, logSumExp, shape, scale, keyMask, causal, dq, dk, dv, delta, RuleGradient, 0f);
    }

    // The backward pass under one rule (RuleGradient, RuleUniform or RuleConservative), validated under op's name.
    private static void BackwardCore(
        string op,
        AttentionOperand q,
        AttentionOperand k,
        AttentionOperand v,
        AttentionOperand output,
        AttentionOperand dOutput,
        Tensor<float> logSumExp,
        AttentionShape shape,
        float scale,
        Tensor<int>? keyMask,
        bool causal,
        AttentionOperand dq,
        AttentionOperand dk,
        AttentionOperand dv,
        Tensor<float> delta,
        int rule,
        float epsilon)
    {
        var args = new OpArgs(op)
            .Add("q", q.Tensor).Add("k", k.Tensor).Add("v", v.Tensor).Add("output", output.Tensor).Add("dOutput", dOutput.Tensor)
            .Add("logSumExp", logSumExp).AddOptional("keyMask", keyMask)
            .Add("dq", dq.Tensor).Add("dk", dk.Tensor).Add("dv", dv.Tensor).Add("delta", delta);
        if (rule != RuleGradient && !(float.IsFinite(epsilon) && epsilon > 0))
        {
            args.Fail($"epsilon must be positive and finite, got {epsilon.ToString(CultureInfo.InvariantCulture)}");
        }

        var layout = CheckShape(args, shape, scale, causal, keyMask);
        layout.Rule = rule;
        layout.Epsilon = epsilon;
        (layout.QStride, layout.QColumn) = CheckOperand(args, "q", q, shape, shape.QueryLength);
        (layout.KStride, layout.KColumn) = CheckOperand(args, "k", k, shape, shape.KeyLength, layout.KvHeads);
        (layout.VStride, layout.VColumn) = CheckOperand(args, "v", v, shape, shape.KeyLength, layout.KvHeads);
        (layout.OStride, layout.OColumn) = CheckOperand(args, "output", output, shape, shape.QueryLength);
        (layout.GStride, layout.GColumn) = CheckOperand(args, "dOutput", dOutput, shape, shape.QueryLength);
        (layout.DqStride, layout.DqColumn) = CheckOperand(args, "dq", dq, shape, shape.QueryLength);
        (layout.DkStride, layout.DkColumn) = CheckOperand(args, "dk", dk, shape, shape.KeyLength, layout.KvHeads);
        (layout.DvStride, layout.DvColumn) = CheckOperand(args, "dv", dv, shape, shape.KeyLength, layout.KvHeads);
        CheckDims(args, "logSumExp", logSumExp, shape.Batch, shape.Heads, shape.QueryLength);
        CheckDims(args, "delta", delta, shape.Batch, shape.Heads, shape.QueryLength);
        int hd = layout.Heads * layout.HeadDim;
        int kvd = layout.KvHeads * layout.HeadDim;
        CheckNoOverlap(
            args,
            [Region("dq", dq, hd), Region("dk", dk, kvd), Region("dv", dv, kvd), Region("delta", delta)],
            [Region("q", q, hd), Region("k", k, kvd), Region("v", v, kvd), Region("output", output, hd), Region("dOutput", dOutput, hd), Region("logSumExp", logSumExp)]);

        if (shape.Batch == 0)
        {
            return;
        }

        args.Backend.AttentionBackward(q.Tensor, k.Tensor, v.Tensor, output.Tensor, dOutput.Tensor, logSumExp, keyMask, dq.Tensor, dk.Tensor, dv.Tensor, delta, layout);
    }

    #region Validation

    /// <summary>Sizes, strides and flags of one call; also the ILGPU kernels' parameter block.</summary>
    internal struct Layout
    {
        public int Batch;
        public int Heads;
        public int QueryLength;
        public int KeyLength;
        public int HeadDim;

        /// <summary>Key/value heads; query head h reads key/value head h / Group.</summary>
        public int KvHeads;

        /// <summary>Query heads per key/value head, Heads / KvHeads (1 for multi-head attention).</summary>
        public int Group;

        public int QStride;
        public int QColumn;
        public int KStride;
        public int KColumn;
        public int VStride;
        public int VColumn;
        public int OStride;
        public int OColumn;
        public int GStride;
        public int GColumn;
        public int DqStride;
        public int DqColumn;
        public int DkStride;
        public int DkColumn;
        public int DvStride;
        public int DvColumn;
        public float Scale;
        public int Causal;
        public int CausalOffset;
        public int HasMask;
        public int Blocks;

        /// <summary>RuleGradient, RuleUniform or RuleConservative: what the backward kernels propagate.</summary>
        public int Rule;

        /// <summary>The LRP stabiliser ε (unused by the gradient).</summary>
        public float Epsilon;
    }

    // Messages are built only on failure: validation runs on every call.
    private static Layout CheckShape(OpArgs args, AttentionShape shape, float scale, bool causal, Tensor<int>? keyMask)
    {
        if (shape.Batch < 0 || shape.Heads < 1 || shape.QueryLength < 0 || shape.KeyLength < 0)
        {
            args.Fail($"{shape} needs batch ≥ 0, heads ≥ 1 and lengths ≥ 0");
        }

        if (shape.KvHeads < 0 || shape.Heads % shape.KeyValueHeads != 0)
        {
            args.Fail($"{shape}: KvHeads must be 0 (= heads) or a positive divisor of heads {shape.Heads}, got {shape.KvHeads}");
        }

        if (shape.HeadDim < 1 || shape.HeadDim > MaxHeadDim)
        {
            args.Fail($"{shape}: head dimension must be 1 to {MaxHeadDim}");
        }

        if (!float.IsFinite(scale))
        {
            args.Fail($"scale must be finite, got {scale.ToString(CultureInfo.InvariantCulture)}");
        }

        if ((long)shape.Heads * shape.HeadDim > int.MaxValue || (long)shape.Batch * shape.Heads * Math.Max(shape.QueryLength, shape.KeyLength) > int.MaxValue)
        {
            args.ToInt32((long)shape.Heads * shape.HeadDim, $"heads·headDim for {shape}");
            args.ToInt32((long)shape.Batch * shape.Heads * Math.Max(shape.QueryLength, shape.KeyLength), $"batch·heads·length for {shape}");
        }

        CheckDims(args, "keyMask", keyMask, shape.Batch, shape.KeyLength);
        return new Layout
        {
            Batch = shape.Batch,
            Heads = shape.Heads,
            QueryLength = shape.QueryLength,
            KeyLength = shape.KeyLength,
            HeadDim = shape.HeadDim,
            KvHeads = shape.KeyValueHeads,
            Group = shape.Heads / shape.KeyValueHeads,
            Scale = scale,
            Causal = causal ? 1 : 0,
            CausalOffset = shape.KeyLength - shape.QueryLength,
            HasMask = keyMask is null ? 0 : 1,
        };
    }

    // OpArgs.RequireShape, with its message built only on a mismatch.
    private static void CheckDims<T>(OpArgs args, string name, Tensor<T>? tensor, params ReadOnlySpan<int> dims)
        where T : unmanaged
    {
        if (tensor is not null && !tensor.Shape.Dims.SequenceEqual(dims))
        {
            args.RequireShape(name, tensor, dims);
        }
    }

    // An operand must be [batch, length, width] with its heads (query heads unless given) inside width; returns (width, first column).
    private static (int Stride, int Column) CheckOperand(OpArgs args, string name, AttentionOperand operand, AttentionShape shape, int length, int heads = 0)
    {
        var dims = operand.Tensor.Shape;
        bool kv = heads != 0;
        heads = kv ? heads : shape.Heads;
        long end = (long)operand.FirstColumn + ((long)heads * shape.HeadDim);
        if (!(dims.Rank == 3 && dims[0] == shape.Batch && dims[1] == length && operand.FirstColumn >= 0 && end <= dims[2]))
        {
            string what = kv ? "kvHeads·headDim" : "heads·headDim";
            args.Fail($"'{name}' must be [{shape.Batch}, {length}, width] with FirstColumn {operand.FirstColumn} ≥ 0 and FirstColumn + {what} = {end} ≤ width, for {shape}");
        }

        return (dims[2], operand.FirstColumn);
    }

    private readonly record struct MemoryRegion(string Name, Tensor<float>? Tensor, int FirstColumn, int Columns);

    private static MemoryRegion Region(string name, AttentionOperand operand, int columns) => new(name, operand.Tensor, operand.FirstColumn, columns);

    private static MemoryRegion Region(string name, Tensor<float>? tensor) => new(name, tensor, 0, -1);

    // Outputs may not share memory with any other operand, except column ranges of one buffer that do not meet (packed dQKV).
    private static void CheckNoOverlap(OpArgs args, ReadOnlySpan<MemoryRegion> written, ReadOnlySpan<MemoryRegion> read)
    {
        for (int i = 0; i < written.Length; i++)
        {
            for (int j = 0; j < written.Length + read.Length; j++)
            {
                var other = j < written.Length ? written[j] : read[j - written.Length];
                if (j != i && (j >= written.Length || j > i) && Conflict(args.Backend, written[i], other))
                {
                    args.Fail($"'{written[i].Name}' overlaps '{other.Name}' in memory; outputs must not alias other operands");
                }
            }
        }
    }

    private static bool Conflict(Backend backend, MemoryRegion a, MemoryRegion b)
    {
        if (a.Tensor is null || b.Tensor is null || a.Tensor.Length == 0 || b.Tensor.Length == 0 || !backend.AttentionSharesMemory(a.Tensor, b.Tensor))
        {
            return false;
        }

        // The same buffer viewed the same way: fine when the two column ranges are disjoint.
        if (a.Columns > 0 && b.Columns > 0 && a.Tensor.Offset == b.Tensor.Offset && a.Tensor.Shape == b.Tensor.Shape)
        {
            return a.FirstColumn < b.FirstColumn + b.Columns && b.FirstColumn < a.FirstColumn + a.Columns;
        }

        return true;
    }

    #endregion

    // Keys [0, result) that any query up to row `last` may see: all of them unless causal; usable inside kernels.
    private static int KeyEnd(Layout p, int last)
    {
        int keyEnd = p.KeyLength;
        if (p.Causal != 0)
        {
            int limit = last + p.CausalOffset + 1;
            keyEnd = limit < 0 ? 0 : limit < keyEnd ? limit : keyEnd;
        }

        return keyEnd;
    }

    internal static int DivUp(int value, int divisor) => (value + divisor - 1) / divisor;

    private static int RoundUp(int value, int multiple) => DivUp(value, multiple) * multiple;
}

/// <summary>Attention's entry points on each backend (Attention.Cpu.cs, Attention.Ilgpu.cs; LRP in Attention.Lrp.cs).</summary>
internal abstract partial class Backend
{
    /// <summary>
    /// <see cref="Attention.Forward"/> on validated operands with at least one query row; <paramref name="perThread"/>
    /// picks the ILGPU kernel (null chooses) and is ignored elsewhere.
    /// </summary>
    internal abstract void AttentionForward(
        Tensor<float> q, Tensor<float> k, Tensor<float> v, Tensor<float> o, Tensor<float> lse, Tensor<int>? mask, Tensor<float>? probabilities,
        Attention.Layout layout, bool? perThread);

    /// <summary>The backward pass under <see cref="Attention.Layout.Rule"/> on validated operands with batch ≥ 1.</summary>
    internal abstract void AttentionBackward(
        Tensor<float> q, Tensor<float> k, Tensor<float> v, Tensor<float> o, Tensor<float> dO, Tensor<float> lse, Tensor<int>? mask,
        Tensor<float> dq, Tensor<float> dk, Tensor<float> dv, Tensor<float> delta, Attention.Layout layout);

    /// <summary>Whether two non-empty tensors on this backend share any memory.</summary>
    internal abstract bool AttentionSharesMemory(Tensor<float> a, Tensor<float> b);
}
