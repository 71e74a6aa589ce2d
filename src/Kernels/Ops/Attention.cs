using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>
/// One attention input or output, read or written in place inside a projection buffer: head <c>h</c>,
/// dimension <c>d</c> of token <c>t</c> of batch <c>b</c> is
/// <c>Tensor[(b·seq + t)·width + FirstColumn + h·headDim + d]</c>. A packed QKV buffer
/// <c>[batch, seq, 3·heads·headDim]</c> gives Q, K and V at first columns 0, heads·headDim and 2·heads·headDim.
/// </summary>
/// <param name="Tensor">The buffer, <c>[batch, seq, width]</c>.</param>
/// <param name="FirstColumn">The column where head 0 starts; <c>FirstColumn + heads·headDim</c> must not exceed width.</param>
public readonly record struct AttentionOperand(Tensor<float> Tensor, int FirstColumn = 0);

/// <summary>The sizes of one attention call.</summary>
/// <param name="Batch">Sequences in the batch.</param>
/// <param name="Heads">Attention heads.</param>
/// <param name="QueryLength">Query tokens per sequence.</param>
/// <param name="KeyLength">Key (and value) tokens per sequence; may differ from <paramref name="QueryLength"/>, as with a decoder's cache.</param>
/// <param name="HeadDim">Dimensions per head, 1 to <see cref="Attention.MaxHeadDim"/>.</param>
public readonly record struct AttentionShape(int Batch, int Heads, int QueryLength, int KeyLength, int HeadDim);

/// <summary>
/// Fused multi-head attention, <c>O = softmax(scale·Q·Kᵀ + mask)·V</c>, forward and backward, without
/// a <c>[query, key]</c> buffer: the forward pass is FlashAttention's online softmax and saves the row
/// logsumexp <c>L</c>; probabilities (for capture) and the backward pass recompute <c>P = exp(scale·q·k − L)</c>.
/// A query row whose keys are all masked gives output 0, probabilities 0, <c>L = +∞</c> and zero gradients.
/// </summary>
public static class Attention
{
    /// <summary>The largest head dimension the kernels support.</summary>
    public const int MaxHeadDim = 128;

    // ILGPU: threads per group (one query or key row each) and rows per shared-memory tile.
    private const int GroupRows = 64;
    private const int TileRows = 32;

    // On ILGPU's CPU accelerator, problems up to this many multiply-adds per score pass keep the tiled kernel (so
    // tests of tiny shapes still run it there); larger ones take the barrier-free kernel.
    private const long SimulatorTiledWork = 1 << 14;

    // Managed path: query rows and keys per block; a key block is a multiple of the 16-float vector.
    private const int QueryBlock = 32;
    private const int KeyBlock = 128;
    private const int Lane = 16;

    /// <summary>
    /// Forward attention for every (batch, head):
    /// <c>output[b, i, h] = Σⱼ softmaxⱼ(scale·q[b, i, h]·k[b, j, h] + mask)·v[b, j, h]</c>.
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
        (layout.KStride, layout.KColumn) = CheckOperand(args, "k", k, shape, shape.KeyLength);
        (layout.VStride, layout.VColumn) = CheckOperand(args, "v", v, shape, shape.KeyLength);
        (layout.OStride, layout.OColumn) = CheckOperand(args, "output", output, shape, shape.QueryLength);
        CheckDims(args, "logSumExp", logSumExp, shape.Batch, shape.Heads, shape.QueryLength);
        CheckDims(args, "probabilities", probabilities, shape.Batch, shape.Heads, shape.QueryLength, shape.KeyLength);
        CheckNoOverlap(
            args,
            [Region("output", output, layout.Heads * layout.HeadDim), Region("logSumExp", logSumExp), Region("probabilities", probabilities)],
            [Region("q", q, layout.Heads * layout.HeadDim), Region("k", k, layout.Heads * layout.HeadDim), Region("v", v, layout.Heads * layout.HeadDim)]);

        if (shape.Batch == 0 || shape.QueryLength == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            ForwardIlgpu(gpu, q.Tensor, k.Tensor, v.Tensor, output.Tensor, logSumExp, keyMask, probabilities, layout, perThread);
        }
        else
        {
            ForwardManaged((CpuDevice)args.Device, q.Tensor, k.Tensor, v.Tensor, output.Tensor, logSumExp, keyMask, probabilities, layout);
        }
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
        const string op = "Attention.Backward";
        var args = new OpArgs(op)
            .Add("q", q.Tensor).Add("k", k.Tensor).Add("v", v.Tensor).Add("output", output.Tensor).Add("dOutput", dOutput.Tensor)
            .Add("logSumExp", logSumExp).AddOptional("keyMask", keyMask)
            .Add("dq", dq.Tensor).Add("dk", dk.Tensor).Add("dv", dv.Tensor).Add("delta", delta);
        var layout = CheckShape(args, shape, scale, causal, keyMask);
        (layout.QStride, layout.QColumn) = CheckOperand(args, "q", q, shape, shape.QueryLength);
        (layout.KStride, layout.KColumn) = CheckOperand(args, "k", k, shape, shape.KeyLength);
        (layout.VStride, layout.VColumn) = CheckOperand(args, "v", v, shape, shape.KeyLength);
        (layout.OStride, layout.OColumn) = CheckOperand(args, "output", output, shape, shape.QueryLength);
        (layout.GStride, layout.GColumn) = CheckOperand(args, "dOutput", dOutput, shape, shape.QueryLength);
        (layout.DqStride, layout.DqColumn) = CheckOperand(args, "dq", dq, shape, shape.QueryLength);
        (layout.DkStride, layout.DkColumn) = CheckOperand(args, "dk", dk, shape, shape.KeyLength);
        (layout.DvStride, layout.DvColumn) = CheckOperand(args, "dv", dv, shape, shape.KeyLength);
        CheckDims(args, "logSumExp", logSumExp, shape.Batch, shape.Heads, shape.QueryLength);
        CheckDims(args, "delta", delta, shape.Batch, shape.Heads, shape.QueryLength);
        int hd = layout.Heads * layout.HeadDim;
        CheckNoOverlap(
            args,
            [Region("dq", dq, hd), Region("dk", dk, hd), Region("dv", dv, hd), Region("delta", delta)],
            [Region("q", q, hd), Region("k", k, hd), Region("v", v, hd), Region("output", output, hd), Region("dOutput", dOutput, hd), Region("logSumExp", logSumExp)]);

        if (shape.Batch == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            BackwardIlgpu(gpu, new Operands(q.Tensor, k.Tensor, v.Tensor, output.Tensor, logSumExp, keyMask, null, dOutput.Tensor, dq.Tensor, dk.Tensor, dv.Tensor, delta), layout);
        }
        else
        {
            BackwardManaged((CpuDevice)args.Device, q.Tensor, k.Tensor, v.Tensor, output.Tensor, dOutput.Tensor, logSumExp, keyMask, dq.Tensor, dk.Tensor, dv.Tensor, delta, layout);
        }
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
    }

    /// <summary>The tensors of one call (null where absent).</summary>
    private sealed record Operands(
        Tensor<float> Q,
        Tensor<float> K,
        Tensor<float> V,
        Tensor<float> O,
        Tensor<float> Lse,
        Tensor<int>? Mask,
        Tensor<float>? Probabilities,
        Tensor<float>? DOutput = null,
        Tensor<float>? Dq = null,
        Tensor<float>? Dk = null,
        Tensor<float>? Dv = null,
        Tensor<float>? Delta = null);

    // Messages are built only on failure: validation runs on every call.
    private static Layout CheckShape(OpArgs args, AttentionShape shape, float scale, bool causal, Tensor<int>? keyMask)
    {
        if (shape.Batch < 0 || shape.Heads < 1 || shape.QueryLength < 0 || shape.KeyLength < 0)
        {
            args.Fail($"{shape} needs batch ≥ 0, heads ≥ 1 and lengths ≥ 0");
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

    // An operand must be [batch, length, width] with its heads inside width; returns (width, first column).
    private static (int Stride, int Column) CheckOperand(OpArgs args, string name, AttentionOperand operand, AttentionShape shape, int length)
    {
        var dims = operand.Tensor.Shape;
        long end = (long)operand.FirstColumn + ((long)shape.Heads * shape.HeadDim);
        if (!(dims.Rank == 3 && dims[0] == shape.Batch && dims[1] == length && operand.FirstColumn >= 0 && end <= dims[2]))
        {
            args.Fail($"'{name}' must be [{shape.Batch}, {length}, width] with FirstColumn {operand.FirstColumn} ≥ 0 and FirstColumn + heads·headDim = {end} ≤ width, for {shape}");
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
                if (j != i && (j >= written.Length || j > i) && Conflict(written[i], other))
                {
                    args.Fail($"'{written[i].Name}' overlaps '{other.Name}' in memory; outputs must not alias other operands");
                }
            }
        }
    }

    private static bool Conflict(MemoryRegion a, MemoryRegion b)
    {
        if (a.Tensor is null || b.Tensor is null || a.Tensor.Length == 0 || b.Tensor.Length == 0 || !SharesMemory(a.Tensor, b.Tensor))
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

    private static bool SharesMemory(Tensor<float> a, Tensor<float> b)
    {
        if (a.Device is IlgpuDevice)
        {
            IContiguousArrayView va = a.View;
            IContiguousArrayView vb = b.View;
            return ReferenceEquals(va.Buffer, vb.Buffer) && va.Index < vb.Index + vb.Length && vb.Index < va.Index + va.Length;
        }

        return a.HostSpan.Overlaps(b.HostSpan);
    }

    #endregion

    #region ILGPU

    private static void ForwardIlgpu(
        IlgpuDevice gpu, Tensor<float> q, Tensor<float> k, Tensor<float> v, Tensor<float> o, Tensor<float> lse, Tensor<int>? mask, Tensor<float>? probabilities,
        Layout layout, bool? perThread)
    {
        // Without keys (or a mask) the kernels never read those views; stand-ins avoid empty views.
        var standIn = q.View;
        var maskView = ViewOr(mask, standIn.Cast<int>());

        // ILGPU's CPU accelerator synchronises a group's OS threads at every barrier: beyond tiny problems a
        // thread per query row, reading keys and values in place, is far faster there.
        long work = (long)layout.Batch * layout.Heads * layout.QueryLength * layout.KeyLength * layout.HeadDim;
        if (perThread ?? (gpu.Kind == DeviceKind.IlgpuCpu && work > SimulatorTiledWork))
        {
            var rows = gpu.GetKernel("Attention.ForwardPerThread", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, Layout>(ForwardPerThreadKernel));
            lock (gpu.SyncRoot)
            {
                rows(gpu.Accelerator.DefaultStream, layout.Batch * layout.Heads * layout.QueryLength,
                    q.View, ViewOr(k, standIn), ViewOr(v, standIn), o.View, lse.View, maskView, layout);
            }
        }
        else
        {
            var forward = gpu.GetKernel("Attention.Forward", static acc =>
                acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, Layout>(ForwardKernel));
            int group = Math.Min(GroupRows, gpu.MaxGroupSize);
            layout.Blocks = DivUp(layout.QueryLength, group);
            int groups = layout.Batch * layout.Heads * layout.Blocks;
            lock (gpu.SyncRoot)
            {
                forward(gpu.Accelerator.DefaultStream, new KernelConfig(groups, group), q.View, ViewOr(k, standIn), ViewOr(v, standIn), o.View, lse.View, maskView, layout);
            }
        }

        if (probabilities is not null && probabilities.Length > 0)
        {
            var capture = gpu.GetKernel("Attention.Probabilities", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, Layout>(ProbabilitiesKernel));
            lock (gpu.SyncRoot)
            {
                capture(gpu.Accelerator.DefaultStream, (int)probabilities.Length, q.View, k.View, lse.View, maskView, probabilities.View, layout);
            }
        }
    }

    private static void BackwardIlgpu(IlgpuDevice gpu, Operands t, Layout layout)
    {
        var deltaKernel = gpu.GetKernel("Attention.Delta", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, Layout>(DeltaKernel));
        var dqKernel = gpu.GetKernel("Attention.BackwardQuery", static acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, Layout>(BackwardQueryKernel));
        var dkvKernel = gpu.GetKernel("Attention.BackwardKeyValue", static acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, Layout>(BackwardKeyValueKernel));
        int group = Math.Min(GroupRows, gpu.MaxGroupSize);
        int rows = layout.Batch * layout.Heads * layout.QueryLength;
        var stream = gpu.Accelerator.DefaultStream;
        lock (gpu.SyncRoot)
        {
            if (rows > 0)
            {
                // Without keys the query kernel reads no key, value or mask: stand-ins avoid empty views.
                var standIn = t.Q.View;
                deltaKernel(stream, rows, t.O.View, t.DOutput!.View, t.Delta!.View, layout);
                var queryLayout = layout;
                queryLayout.Blocks = DivUp(layout.QueryLength, group);
                dqKernel(
                    stream,
                    new KernelConfig(layout.Batch * layout.Heads * queryLayout.Blocks, group),
                    t.Q.View, ViewOr(t.K, standIn), ViewOr(t.V, standIn), t.DOutput.View, t.Lse.View, t.Delta.View, ViewOr(t.Mask, standIn.Cast<int>()), t.Dq!.View, queryLayout);
            }

            if (layout.KeyLength > 0)
            {
                // Without queries the key kernel reads no query-side view: it writes zeros.
                var standIn = t.K.View;
                var keyLayout = layout;
                keyLayout.Blocks = DivUp(layout.KeyLength, group);
                dkvKernel(
                    stream,
                    new KernelConfig(layout.Batch * layout.Heads * keyLayout.Blocks, group),
                    ViewOr(t.Q, standIn), t.K.View, t.V.View, ViewOr(t.DOutput, standIn), ViewOr(t.Lse, standIn), ViewOr(t.Delta, standIn),
                    ViewOr(t.Mask, standIn.Cast<int>()), t.Dk!.View, t.Dv!.View, keyLayout);
            }
        }
    }

    // The tensor's view, or a stand-in when the tensor is absent or empty (ILGPU rejects empty sub-views).
    private static ArrayView<T> ViewOr<T>(Tensor<T>? tensor, ArrayView<T> standIn)
        where T : unmanaged
    {
        return tensor is null || tensor.Length == 0 ? standIn : tensor.View;
    }

    // One group per (batch, head, block of queries), one thread per query row; K and V tiles staged in
    // shared memory. q, k, v [batch, seq, width] -> o [batch, query, width], lse [batch, heads, query]
    private static void ForwardKernel(
        ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o, ArrayView<float> lse, ArrayView<int> mask, Layout p)
    {
        var kTile = SharedMemory.Allocate<float>(TileRows * MaxHeadDim);
        var vTile = SharedMemory.Allocate<float>(TileRows * MaxHeadDim);
        var visible = SharedMemory.Allocate<int>(TileRows);
        var qRow = LocalMemory.Allocate1D<float>(MaxHeadDim);
        var acc = LocalMemory.Allocate1D<float>(MaxHeadDim);
        var scores = LocalMemory.Allocate1D<float>(TileRows);

        int dim = p.HeadDim;
        int block = Grid.IdxX % p.Blocks;
        int bh = Grid.IdxX / p.Blocks;
        int h = bh % p.Heads;
        int b = bh / p.Heads;
        int first = block * Group.DimX;
        int i = first + Group.IdxX;
        bool active = i < p.QueryLength;
        if (active)
        {
            int qBase = (((b * p.QueryLength) + i) * p.QStride) + p.QColumn + (h * dim);
            for (int d = 0; d < dim; d++)
            {
                qRow[d] = q[qBase + d] * p.Scale;
                acc[d] = 0f;
            }
        }

        // Keys this group needs: all of them, or (causal) up to the last query's limit.
        int last = (first + Group.DimX < p.QueryLength ? first + Group.DimX : p.QueryLength) - 1;
        int keyEnd = p.KeyLength;
        if (p.Causal != 0)
        {
            int limit = last + p.CausalOffset + 1;
            keyEnd = limit < 0 ? 0 : limit < keyEnd ? limit : keyEnd;
        }

        float m = float.NegativeInfinity;
        float l = 0f;
        for (int tile = 0; tile < keyEnd; tile += TileRows)
        {
            int n = keyEnd - tile < TileRows ? keyEnd - tile : TileRows;
            LoadKeyTiles(k, v, mask, p, b, h, tile, n, kTile, vTile, visible);
            Group.Barrier();
            if (active)
            {
                float tileMax = float.NegativeInfinity;
                for (int jj = 0; jj < n; jj++)
                {
                    int j = tile + jj;
                    float s = float.NegativeInfinity;
                    if (visible[jj] != 0 && (p.Causal == 0 || j <= i + p.CausalOffset))
                    {
                        s = 0f;
                        for (int d = 0; d < dim; d++)
                        {
                            s += qRow[d] * kTile[(jj * dim) + d];
                        }

                        tileMax = XMath.Max(tileMax, s);
                    }

                    scores[jj] = s;
                }

                if (tileMax > float.NegativeInfinity)
                {
                    float mNew = XMath.Max(m, tileMax);
                    float alpha = XMath.Exp(m - mNew);
                    l *= alpha;
                    for (int d = 0; d < dim; d++)
                    {
                        acc[d] *= alpha;
                    }

                    for (int jj = 0; jj < n; jj++)
                    {
                        float pj = XMath.Exp(scores[jj] - mNew);
                        l += pj;
                        for (int d = 0; d < dim; d++)
                        {
                            acc[d] += pj * vTile[(jj * dim) + d];
                        }
                    }

                    m = mNew;
                }
            }

            Group.Barrier();
        }

        if (active)
        {
            int oBase = (((b * p.QueryLength) + i) * p.OStride) + p.OColumn + (h * dim);
            float inv = l > 0f ? 1f / l : 0f;
            for (int d = 0; d < dim; d++)
            {
                o[oBase + d] = acc[d] * inv;
            }

            lse[(bh * p.QueryLength) + i] = l > 0f ? m + XMath.Log(l) : float.PositiveInfinity;
        }
    }

    // One thread per (batch, head, query row), with no shared memory and no barriers (for ILGPU's CPU
    // accelerator): ForwardKernel's tile-by-tile online softmax with keys and values read in place.
    // q, k, v [batch, seq, width] -> o [batch, query, width], lse [batch, heads, query]
    private static void ForwardPerThreadKernel(
        Index1D index, ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o, ArrayView<float> lse, ArrayView<int> mask, Layout p)
    {
        var qRow = LocalMemory.Allocate1D<float>(MaxHeadDim);
        var acc = LocalMemory.Allocate1D<float>(MaxHeadDim);
        var scores = LocalMemory.Allocate1D<float>(TileRows);

        int dim = p.HeadDim;
        int i = index % p.QueryLength;
        int bh = index / p.QueryLength;
        int h = bh % p.Heads;
        int b = bh / p.Heads;
        int qBase = (((b * p.QueryLength) + i) * p.QStride) + p.QColumn + (h * dim);
        for (int d = 0; d < dim; d++)
        {
            qRow[d] = q[qBase + d] * p.Scale;
            acc[d] = 0f;
        }

        int keyEnd = p.KeyLength;
        if (p.Causal != 0)
        {
            int limit = i + p.CausalOffset + 1;
            keyEnd = limit < 0 ? 0 : limit < keyEnd ? limit : keyEnd;
        }

        float m = float.NegativeInfinity;
        float l = 0f;
        for (int tile = 0; tile < keyEnd; tile += TileRows)
        {
            int n = keyEnd - tile < TileRows ? keyEnd - tile : TileRows;
            float tileMax = float.NegativeInfinity;
            for (int jj = 0; jj < n; jj++)
            {
                int j = tile + jj;
                float s = float.NegativeInfinity;
                if (p.HasMask == 0 || mask[(b * p.KeyLength) + j] != 0)
                {
                    int kBase = (((b * p.KeyLength) + j) * p.KStride) + p.KColumn + (h * dim);
                    s = 0f;
                    for (int d = 0; d < dim; d++)
                    {
                        s += qRow[d] * k[kBase + d];
                    }

                    tileMax = XMath.Max(tileMax, s);
                }

                scores[jj] = s;
            }

            if (tileMax > float.NegativeInfinity)
            {
                float mNew = XMath.Max(m, tileMax);
                float alpha = XMath.Exp(m - mNew);
                l *= alpha;
                for (int d = 0; d < dim; d++)
                {
                    acc[d] *= alpha;
                }

                for (int jj = 0; jj < n; jj++)
                {
                    float pj = XMath.Exp(scores[jj] - mNew);
                    l += pj;
                    int vBase = (((b * p.KeyLength) + tile + jj) * p.VStride) + p.VColumn + (h * dim);
                    for (int d = 0; d < dim; d++)
                    {
                        acc[d] += pj * v[vBase + d];
                    }
                }

                m = mNew;
            }
        }

        int oBase = (((b * p.QueryLength) + i) * p.OStride) + p.OColumn + (h * dim);
        float inv = l > 0f ? 1f / l : 0f;
        for (int d = 0; d < dim; d++)
        {
            o[oBase + d] = acc[d] * inv;
        }

        lse[(bh * p.QueryLength) + i] = l > 0f ? m + XMath.Log(l) : float.PositiveInfinity;
    }

    // Stages keys [tile, tile + n) of (b, h): K and V rows [n, dim] and whether each key is unmasked.
    private static void LoadKeyTiles(
        ArrayView<float> k, ArrayView<float> v, ArrayView<int> mask, Layout p, int b, int h, int tile, int n, ArrayView<float> kTile, ArrayView<float> vTile, ArrayView<int> visible)
    {
        int dim = p.HeadDim;
        for (int e = Group.IdxX; e < n * dim; e += Group.DimX)
        {
            int jj = e / dim;
            int d = e - (jj * dim);
            int row = (b * p.KeyLength) + tile + jj;
            kTile[e] = k[(row * p.KStride) + p.KColumn + (h * dim) + d];
            vTile[e] = v[(row * p.VStride) + p.VColumn + (h * dim) + d];
        }

        for (int jj = Group.IdxX; jj < n; jj += Group.DimX)
        {
            visible[jj] = p.HasMask == 0 || mask[(b * p.KeyLength) + tile + jj] != 0 ? 1 : 0;
        }
    }

    // One thread per probability: q, k [batch, seq, width], lse [batch, heads, query] -> probabilities [batch, heads, query, key]
    private static void ProbabilitiesKernel(
        Index1D index, ArrayView<float> q, ArrayView<float> k, ArrayView<float> lse, ArrayView<int> mask, ArrayView<float> probabilities, Layout p)
    {
        int j = index % p.KeyLength;
        int row = index / p.KeyLength; // (b·heads + h)·query + i
        int i = row % p.QueryLength;
        int bh = row / p.QueryLength;
        int h = bh % p.Heads;
        int b = bh / p.Heads;
        float value = 0f;
        float l = lse[row];
        bool visible = (p.HasMask == 0 || mask[(b * p.KeyLength) + j] != 0) && (p.Causal == 0 || j <= i + p.CausalOffset);
        if (visible && l < float.PositiveInfinity)
        {
            int dim = p.HeadDim;
            int qBase = (((b * p.QueryLength) + i) * p.QStride) + p.QColumn + (h * dim);
            int kBase = (((b * p.KeyLength) + j) * p.KStride) + p.KColumn + (h * dim);
            float s = 0f;
            for (int d = 0; d < dim; d++)
            {
                s += (q[qBase + d] * p.Scale) * k[kBase + d];
            }

            value = XMath.Exp(s - l);
        }

        probabilities[index] = value;
    }

    // D = rowsum(dO∘O): o, dO [batch, query, width] -> delta [batch, heads, query]
    private static void DeltaKernel(Index1D index, ArrayView<float> o, ArrayView<float> dO, ArrayView<float> delta, Layout p)
    {
        int i = index % p.QueryLength;
        int bh = index / p.QueryLength;
        int h = bh % p.Heads;
        int b = bh / p.Heads;
        int dim = p.HeadDim;
        int oBase = (((b * p.QueryLength) + i) * p.OStride) + p.OColumn + (h * dim);
        int gBase = (((b * p.QueryLength) + i) * p.GStride) + p.GColumn + (h * dim);
        float sum = 0f;
        for (int d = 0; d < dim; d++)
        {
            sum += o[oBase + d] * dO[gBase + d];
        }

        delta[index] = sum;
    }

    // dQ = scale·Σⱼ P∘(dP − D)·kⱼ, one thread per query row, K and V tiles in shared memory.
    // q, k, v, dO [batch, seq, width], lse, delta [batch, heads, query] -> dq [batch, query, width]
    private static void BackwardQueryKernel(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dq,
        Layout p)
    {
        var kTile = SharedMemory.Allocate<float>(TileRows * MaxHeadDim);
        var vTile = SharedMemory.Allocate<float>(TileRows * MaxHeadDim);
        var visible = SharedMemory.Allocate<int>(TileRows);
        var qRow = LocalMemory.Allocate1D<float>(MaxHeadDim);
        var gRow = LocalMemory.Allocate1D<float>(MaxHeadDim);
        var acc = LocalMemory.Allocate1D<float>(MaxHeadDim);

        int dim = p.HeadDim;
        int block = Grid.IdxX % p.Blocks;
        int bh = Grid.IdxX / p.Blocks;
        int h = bh % p.Heads;
        int b = bh / p.Heads;
        int first = block * Group.DimX;
        int i = first + Group.IdxX;
        bool active = i < p.QueryLength;
        float rowLse = float.PositiveInfinity;
        float rowDelta = 0f;
        if (active)
        {
            int qBase = (((b * p.QueryLength) + i) * p.QStride) + p.QColumn + (h * dim);
            int gBase = (((b * p.QueryLength) + i) * p.GStride) + p.GColumn + (h * dim);
            for (int d = 0; d < dim; d++)
            {
                qRow[d] = q[qBase + d] * p.Scale;
                gRow[d] = dO[gBase + d];
                acc[d] = 0f;
            }

            rowLse = lse[(bh * p.QueryLength) + i];
            rowDelta = delta[(bh * p.QueryLength) + i];
        }

        int last = (first + Group.DimX < p.QueryLength ? first + Group.DimX : p.QueryLength) - 1;
        int keyEnd = p.KeyLength;
        if (p.Causal != 0)
        {
            int limit = last + p.CausalOffset + 1;
            keyEnd = limit < 0 ? 0 : limit < keyEnd ? limit : keyEnd;
        }

        for (int tile = 0; tile < keyEnd; tile += TileRows)
        {
            int n = keyEnd - tile < TileRows ? keyEnd - tile : TileRows;
            LoadKeyTiles(k, v, mask, p, b, h, tile, n, kTile, vTile, visible);
            Group.Barrier();
            if (active)
            {
                for (int jj = 0; jj < n; jj++)
                {
                    if (visible[jj] != 0 && (p.Causal == 0 || tile + jj <= i + p.CausalOffset))
                    {
                        float s = 0f;
                        float dp = 0f;
                        for (int d = 0; d < dim; d++)
                        {
                            s += qRow[d] * kTile[(jj * dim) + d];
                            dp += gRow[d] * vTile[(jj * dim) + d];
                        }

                        float ds = XMath.Exp(s - rowLse) * (dp - rowDelta);
                        for (int d = 0; d < dim; d++)
                        {
                            acc[d] += ds * kTile[(jj * dim) + d];
                        }
                    }
                }
            }

            Group.Barrier();
        }

        if (active)
        {
            int dqBase = (((b * p.QueryLength) + i) * p.DqStride) + p.DqColumn + (h * dim);
            for (int d = 0; d < dim; d++)
            {
                dq[dqBase + d] = acc[d] * p.Scale;
            }
        }
    }

    // dV = Σᵢ Pᵢⱼ·dOᵢ and dK = Σᵢ dSᵢⱼ·(scale·qᵢ), one thread per key row, Q and dO tiles in shared memory.
    // q, k, v, dO [batch, seq, width], lse, delta [batch, heads, query] -> dk, dv [batch, key, width]
    private static void BackwardKeyValueKernel(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dk,
        ArrayView<float> dv,
        Layout p)
    {
        var qTile = SharedMemory.Allocate<float>(TileRows * MaxHeadDim);
        var gTile = SharedMemory.Allocate<float>(TileRows * MaxHeadDim);
        var lseTile = SharedMemory.Allocate<float>(TileRows);
        var deltaTile = SharedMemory.Allocate<float>(TileRows);
        var kRow = LocalMemory.Allocate1D<float>(MaxHeadDim);
        var vRow = LocalMemory.Allocate1D<float>(MaxHeadDim);
        var dkAcc = LocalMemory.Allocate1D<float>(MaxHeadDim);
        var dvAcc = LocalMemory.Allocate1D<float>(MaxHeadDim);

        int dim = p.HeadDim;
        int block = Grid.IdxX % p.Blocks;
        int bh = Grid.IdxX / p.Blocks;
        int h = bh % p.Heads;
        int b = bh / p.Heads;
        int first = block * Group.DimX;
        int j = first + Group.IdxX;
        bool inRange = j < p.KeyLength;
        bool active = inRange && (p.HasMask == 0 || mask[(b * p.KeyLength) + j] != 0);
        for (int d = 0; d < dim; d++)
        {
            dkAcc[d] = 0f;
            dvAcc[d] = 0f;
        }

        if (active)
        {
            int kBase = (((b * p.KeyLength) + j) * p.KStride) + p.KColumn + (h * dim);
            int vBase = (((b * p.KeyLength) + j) * p.VStride) + p.VColumn + (h * dim);
            for (int d = 0; d < dim; d++)
            {
                kRow[d] = k[kBase + d];
                vRow[d] = v[vBase + d];
            }
        }

        // Causal: query i sees key j only when i ≥ j − offset, so earlier queries are skipped.
        int queryBegin = 0;
        if (p.Causal != 0)
        {
            int begin = first - p.CausalOffset;
            queryBegin = begin < 0 ? 0 : begin;
        }

        for (int tile = queryBegin; tile < p.QueryLength; tile += TileRows)
        {
            int n = p.QueryLength - tile < TileRows ? p.QueryLength - tile : TileRows;
            for (int e = Group.IdxX; e < n * dim; e += Group.DimX)
            {
                int r = e / dim;
                int d = e - (r * dim);
                int row = (b * p.QueryLength) + tile + r;
                qTile[e] = q[(row * p.QStride) + p.QColumn + (h * dim) + d] * p.Scale;
                gTile[e] = dO[(row * p.GStride) + p.GColumn + (h * dim) + d];
            }

            for (int r = Group.IdxX; r < n; r += Group.DimX)
            {
                lseTile[r] = lse[(bh * p.QueryLength) + tile + r];
                deltaTile[r] = delta[(bh * p.QueryLength) + tile + r];
            }

            Group.Barrier();
            if (active)
            {
                for (int r = 0; r < n; r++)
                {
                    if (p.Causal == 0 || j <= tile + r + p.CausalOffset)
                    {
                        float s = 0f;
                        float dp = 0f;
                        for (int d = 0; d < dim; d++)
                        {
                            s += qTile[(r * dim) + d] * kRow[d];
                            dp += gTile[(r * dim) + d] * vRow[d];
                        }

                        float pr = XMath.Exp(s - lseTile[r]);
                        float ds = pr * (dp - deltaTile[r]);
                        for (int d = 0; d < dim; d++)
                        {
                            dvAcc[d] += pr * gTile[(r * dim) + d];
                            dkAcc[d] += ds * qTile[(r * dim) + d];
                        }
                    }
                }
            }

            Group.Barrier();
        }

        if (inRange)
        {
            int dkBase = (((b * p.KeyLength) + j) * p.DkStride) + p.DkColumn + (h * dim);
            int dvBase = (((b * p.KeyLength) + j) * p.DvStride) + p.DvColumn + (h * dim);
            for (int d = 0; d < dim; d++)
            {
                dk[dkBase + d] = dkAcc[d];
                dv[dvBase + d] = dvAcc[d];
            }
        }
    }

    #endregion

    #region Managed SIMD

    private static unsafe void ForwardManaged(CpuDevice cpu, Tensor<float> q, Tensor<float> k, Tensor<float> v, Tensor<float> o,
        Tensor<float> lse, Tensor<int>? mask, Tensor<float>? probabilities, Layout p)
    {
        int pairs = p.Batch * p.Heads;

        // Split queries into chunks only when (batch, head) pairs alone cannot keep the workers busy.
        int chunks = 1;
        if (pairs < 2 * cpu.Threads)
        {
            chunks = Math.Clamp(DivUp(2 * cpu.Threads, pairs), 1, DivUp(p.QueryLength, QueryBlock));
        }

        int chunkRows = DivUp(DivUp(p.QueryLength, chunks), QueryBlock) * QueryBlock;
        chunks = DivUp(p.QueryLength, chunkRows);
        int items = pairs * chunks;
        long work = (long)items * chunkRows * Math.Max(p.KeyLength, 1) * p.HeadDim;
        fixed (float* pq = q.HostSpan, pk = k.HostSpan, pv = v.HostSpan, po = o.HostSpan, plse = lse.HostSpan)
        fixed (float* probs = probabilities is null ? default : probabilities.HostSpan)
        fixed (int* pmask = mask is null ? default : mask.HostSpan)
        {
            var job = new ForwardJob
            {
                Q = pq, K = pk, V = pv, O = po, Lse = plse, Probabilities = probs, Mask = pmask,
                P = p, Chunks = chunks, ChunkRows = chunkRows,
            };
            if (items == 1 || work < (1 << 16))
            {
                for (int item = 0; item < items; item++)
                {
                    job.Execute(item);
                }
            }
            else
            {
                cpu.Workers.Run(ref job, items);
            }
        }
    }

    /// <summary>The forward pass's operands as pinned pointers; item = (batch·heads + head)·chunks + chunk of query rows.</summary>
    private unsafe struct ForwardJob : ICpuJob
    {
        public float* Q;
        public float* K;
        public float* V;
        public float* O;
        public float* Lse;
        public float* Probabilities;
        public int* Mask;
        public Layout P;
        public int Chunks;
        public int ChunkRows;

        public readonly void Execute(int item) => ForwardItem(this, item / Chunks, (item % Chunks) * ChunkRows, ChunkRows);
    }

    // One (batch, head) pair, query rows [rowStart, rowStart + rowCount): online softmax over key blocks.
    [SkipLocalsInit]
    private static unsafe void ForwardItem(in ForwardJob t, int bh, int rowStart, int rowCount)
    {
        var p = t.P;
        int b = bh / p.Heads;
        int h = bh % p.Heads;
        int dim = p.HeadDim;
        int rowEnd = Math.Min(p.QueryLength, rowStart + rowCount);
        int keyEnd = KeyEnd(p, rowEnd - 1);
        int keyPad = RoundUp(keyEnd, Lane);
        int dimPad = RoundUp(dim, Lane);

        var scratch = Scratch.For(
            [dim * keyPad, keyPad * dimPad, keyPad, QueryBlock * dim, QueryBlock * KeyBlock, QueryBlock * dimPad, QueryBlock, QueryBlock]);
        float* kT = (float*)scratch[0];     // [dim, keyPad]: keys transposed, zero past keyEnd
        float* vPad = (float*)scratch[1];   // [keyPad, dimPad]: values, zero past dim
        float* bias = (float*)scratch[2];   // [keyPad]: 0 for a visible key, −∞ for a masked one
        float* qs = (float*)scratch[3];     // [QueryBlock, dim]: scale·q
        float* s = (float*)scratch[4];      // [QueryBlock, KeyBlock]: scores, then exp(score − m)
        float* acc = (float*)scratch[5];    // [QueryBlock, dimPad]: unnormalised output
        float* rowMax = (float*)scratch[6]; // [QueryBlock]: m
        float* rowSum = (float*)scratch[7]; // [QueryBlock]: ℓ

        float* q = t.Q, k = t.K, v = t.V, o = t.O, lse = t.Lse, probs = t.Probabilities;
        int* mask = t.Mask;
        {
            StageKeys(p, k + (b * p.KeyLength * p.KStride) + p.KColumn + (h * dim), p.KStride, keyEnd, keyPad, kT);
            StageRows(v + (b * p.KeyLength * p.VStride) + p.VColumn + (h * dim), p.VStride, keyEnd, dim, dimPad, vPad);
            StageBias(p, mask, b, keyEnd, keyPad, bias);

            for (int qb = rowStart; qb < rowEnd; qb += QueryBlock)
            {
                int rows = Math.Min(QueryBlock, rowEnd - qb);
                for (int r = 0; r < rows; r++)
                {
                    ScaleRow(q + (((b * p.QueryLength) + qb + r) * p.QStride) + p.QColumn + (h * dim), p.Scale, qs + (r * dim), dim);
                    rowMax[r] = float.NegativeInfinity;
                    rowSum[r] = 0f;
                }

                new Span<float>(acc, rows * dimPad).Clear();
                int blockKeyEnd = KeyEnd(p, qb + rows - 1);
                for (int kb = 0; kb < blockKeyEnd; kb += KeyBlock)
                {
                    int kn = Math.Min(KeyBlock, blockKeyEnd - kb);
                    int knPad = RoundUp(kn, Lane);

                    // s [rows, knPad] = qs [rows, dim] · kT[:, kb..]
                    MultiplyAdd(s, KeyBlock, qs, dim, 1, kT + kb, keyPad, rows, dim, knPad, accumulate: false);
                    for (int r = 0; r < rows; r++)
                    {
                        int i = qb + r;
                        float* row = s + (r * KeyBlock);
                        float blockMax = BiasMax(row, bias + kb, VisibleKeys(p, i, kb, kn), knPad);
                        if (probs != null)
                        {
                            new ReadOnlySpan<float>(row, kn).CopyTo(new Span<float>(probs + ((((bh * p.QueryLength) + i) * p.KeyLength) + kb), kn));
                        }

                        if (blockMax == float.NegativeInfinity)
                        {
                            new Span<float>(row, knPad).Clear();
                            continue;
                        }

                        float mOld = rowMax[r];
                        if (blockMax > mOld)
                        {
                            // The first visible block finds acc and ℓ still zero: nothing to rescale.
                            if (mOld != float.NegativeInfinity)
                            {
                                float alpha = MathF.Exp(mOld - blockMax);
                                rowSum[r] *= alpha;
                                ScaleRow(acc + (r * dimPad), alpha, acc + (r * dimPad), dimPad);
                            }

                            rowMax[r] = blockMax;
                        }

                        rowSum[r] += ExpSum(row, rowMax[r], knPad);
                    }

                    // acc [rows, dimPad] += s [rows, kn] · vPad[kb.., :]
                    MultiplyAdd(acc, dimPad, s, KeyBlock, 1, vPad + (kb * dimPad), dimPad, rows, kn, dimPad, accumulate: true);
                }

                for (int r = 0; r < rows; r++)
                {
                    int i = qb + r;
                    float* dst = o + (((b * p.QueryLength) + i) * p.OStride) + p.OColumn + (h * dim);
                    float l = rowSum[r];
                    float logSumExp = l > 0f ? rowMax[r] + MathF.Log(l) : float.PositiveInfinity;
                    ScaleRow(acc + (r * dimPad), l > 0f ? 1f / l : 0f, dst, dim);

                    lse[(bh * p.QueryLength) + i] = logSumExp;
                    if (probs != null)
                    {
                        // The stored scores become P = exp(S − L); masked scores are −∞ and give exactly 0.
                        var prow = new Span<float>(probs + (((bh * p.QueryLength) + i) * p.KeyLength), p.KeyLength);
                        int visible = l > 0f ? VisibleKeys(p, i, 0, p.KeyLength) : 0;
                        TensorPrimitives.Subtract(prow[..visible], logSumExp, prow[..visible]);
                        TensorPrimitives.Exp(prow[..visible], prow[..visible]);
                        prow[visible..].Clear();
                    }
                }
            }
        }
    }

    private static unsafe void BackwardManaged(CpuDevice cpu, Tensor<float> tq, Tensor<float> tk, Tensor<float> tv, Tensor<float> to,
        Tensor<float> tdO, Tensor<float> tlse, Tensor<int>? tmask, Tensor<float> tdq, Tensor<float> tdk, Tensor<float> tdv, Tensor<float> tdelta, Layout p)
    {
        int pairs = p.Batch * p.Heads;
        long work = (long)pairs * Math.Max(p.QueryLength, 1) * Math.Max(p.KeyLength, 1) * p.HeadDim;
        fixed (float* q = tq.HostSpan, k = tk.HostSpan, v = tv.HostSpan, o = to.HostSpan, lse = tlse.HostSpan)
        fixed (float* dO = tdO.HostSpan, dq = tdq.HostSpan, dk = tdk.HostSpan, dv = tdv.HostSpan, delta = tdelta.HostSpan)
        fixed (int* mask = tmask is null ? default : tmask.HostSpan)
        {
            var job = new BackwardJob
            {
                Q = q, K = k, V = v, O = o, Lse = lse, Mask = mask, DOutput = dO, Dq = dq, Dk = dk, Dv = dv, Delta = delta, P = p,
            };
            if (pairs == 1 || work < (1 << 16))
            {
                for (int bh = 0; bh < pairs; bh++)
                {
                    job.Execute(bh);
                }
            }
            else
            {
                cpu.Workers.Run(ref job, pairs);
            }
        }
    }

    /// <summary>The backward pass's operands as pinned pointers; item = batch·heads + head.</summary>
    private unsafe struct BackwardJob : ICpuJob
    {
        public float* Q;
        public float* K;
        public float* V;
        public float* O;
        public float* Lse;
        public int* Mask;
        public float* DOutput;
        public float* Dq;
        public float* Dk;
        public float* Dv;
        public float* Delta;
        public Layout P;

        public readonly void Execute(int item) => BackwardItem(this, item);
    }

    // One (batch, head) pair: recompute P block by block, accumulate dK and dV over all query blocks.
    [SkipLocalsInit]
    private static unsafe void BackwardItem(in BackwardJob t, int bh)
    {
        var p = t.P;
        int b = bh / p.Heads;
        int h = bh % p.Heads;
        int dim = p.HeadDim;
        int keyEnd = p.QueryLength == 0 ? 0 : KeyEnd(p, p.QueryLength - 1);
        int keyPad = RoundUp(keyEnd, Lane);
        int dimPad = RoundUp(dim, Lane);

        var scratch = Scratch.For([
            dim * keyPad, dim * keyPad, keyPad * dimPad, keyPad, keyPad * dimPad, keyPad * dimPad,
            QueryBlock * dimPad, QueryBlock * dimPad, QueryBlock * KeyBlock, QueryBlock * KeyBlock, QueryBlock * dimPad, QueryBlock, QueryBlock]);
        float* kT = (float*)scratch[0];       // [dim, keyPad]
        float* vT = (float*)scratch[1];       // [dim, keyPad]
        float* kPad = (float*)scratch[2];     // [keyPad, dimPad]
        float* bias = (float*)scratch[3];     // [keyPad]
        float* dkAcc = (float*)scratch[4];    // [keyPad, dimPad]: Σ dSᵀ·(scale·Q)
        float* dvAcc = (float*)scratch[5];    // [keyPad, dimPad]: Σ Pᵀ·dO
        float* qs = (float*)scratch[6];       // [QueryBlock, dimPad]: scale·q, zero past dim
        float* g = (float*)scratch[7];        // [QueryBlock, dimPad]: dO, zero past dim
        float* pb = (float*)scratch[8];       // [QueryBlock, KeyBlock]: P
        float* ds = (float*)scratch[9];       // [QueryBlock, KeyBlock]: dP, then dS
        float* dqAcc = (float*)scratch[10];   // [QueryBlock, dimPad]
        float* rowLse = (float*)scratch[11];  // [QueryBlock]
        float* rowDelta = (float*)scratch[12]; // [QueryBlock]

        float* q = t.Q, k = t.K, v = t.V, o = t.O, lse = t.Lse;
        float* dO = t.DOutput, dq = t.Dq, dk = t.Dk, dv = t.Dv, delta = t.Delta;
        int* mask = t.Mask;
        {
            float* kHead = k + (b * p.KeyLength * p.KStride) + p.KColumn + (h * dim);
            StageKeys(p, kHead, p.KStride, keyEnd, keyPad, kT);
            StageKeys(p, v + (b * p.KeyLength * p.VStride) + p.VColumn + (h * dim), p.VStride, keyEnd, keyPad, vT);
            StageRows(kHead, p.KStride, keyEnd, dim, dimPad, kPad);
            StageBias(p, mask, b, keyEnd, keyPad, bias);
            new Span<float>(dkAcc, keyPad * dimPad).Clear();
            new Span<float>(dvAcc, keyPad * dimPad).Clear();

            for (int qb = 0; qb < p.QueryLength; qb += QueryBlock)
            {
                int rows = Math.Min(QueryBlock, p.QueryLength - qb);
                for (int r = 0; r < rows; r++)
                {
                    int token = (b * p.QueryLength) + qb + r;
                    var qRow = new ReadOnlySpan<float>(q + (token * p.QStride) + p.QColumn + (h * dim), dim);
                    var gRow = new ReadOnlySpan<float>(dO + (token * p.GStride) + p.GColumn + (h * dim), dim);
                    var oRow = new ReadOnlySpan<float>(o + (token * p.OStride) + p.OColumn + (h * dim), dim);
                    var qsRow = new Span<float>(qs + (r * dimPad), dimPad);
                    var gPadRow = new Span<float>(g + (r * dimPad), dimPad);
                    TensorPrimitives.Multiply(qRow, p.Scale, qsRow);
                    qsRow[dim..].Clear();
                    gRow.CopyTo(gPadRow);
                    gPadRow[dim..].Clear();
                    float d = TensorPrimitives.Dot(gRow, oRow);
                    delta[(bh * p.QueryLength) + qb + r] = d;
                    rowDelta[r] = d;
                    rowLse[r] = lse[(bh * p.QueryLength) + qb + r];
                }

                new Span<float>(dqAcc, rows * dimPad).Clear();
                int blockKeyEnd = KeyEnd(p, qb + rows - 1);
                for (int kb = 0; kb < blockKeyEnd; kb += KeyBlock)
                {
                    int kn = Math.Min(KeyBlock, blockKeyEnd - kb);
                    int knPad = RoundUp(kn, Lane);

                    // P = exp(qs·kᵀ + bias − L), 0 where masked or (L = +∞) where the row sees no key.
                    MultiplyAdd(pb, KeyBlock, qs, dimPad, 1, kT + kb, keyPad, rows, dim, knPad, accumulate: false);
                    for (int r = 0; r < rows; r++)
                    {
                        float* row = pb + (r * KeyBlock);
                        BiasMax(row, bias + kb, VisibleKeys(p, qb + r, kb, kn), knPad);
                        ExpSum(row, rowLse[r], knPad);
                    }

                    // dP = dO·vᵀ, then dS = P∘(dP − D)
                    MultiplyAdd(ds, KeyBlock, g, dimPad, 1, vT + kb, keyPad, rows, dim, knPad, accumulate: false);
                    for (int r = 0; r < rows; r++)
                    {
                        SoftmaxGradient(ds + (r * KeyBlock), pb + (r * KeyBlock), rowDelta[r], knPad);
                    }

                    // dV[kb..] += Pᵀ·dO, dK[kb..] += dSᵀ·qs, dQ += dS·K
                    MultiplyAdd(dvAcc + (kb * dimPad), dimPad, pb, 1, KeyBlock, g, dimPad, kn, rows, dimPad, accumulate: true);
                    MultiplyAdd(dkAcc + (kb * dimPad), dimPad, ds, 1, KeyBlock, qs, dimPad, kn, rows, dimPad, accumulate: true);
                    MultiplyAdd(dqAcc, dimPad, ds, KeyBlock, 1, kPad + (kb * dimPad), dimPad, rows, kn, dimPad, accumulate: true);
                }

                for (int r = 0; r < rows; r++)
                {
                    int token = (b * p.QueryLength) + qb + r;
                    TensorPrimitives.Multiply(
                        new ReadOnlySpan<float>(dqAcc + (r * dimPad), dim), p.Scale, new Span<float>(dq + (token * p.DqStride) + p.DqColumn + (h * dim), dim));
                }
            }

            for (int j = 0; j < p.KeyLength; j++)
            {
                int token = (b * p.KeyLength) + j;
                var dkRow = new Span<float>(dk + (token * p.DkStride) + p.DkColumn + (h * dim), dim);
                var dvRow = new Span<float>(dv + (token * p.DvStride) + p.DvColumn + (h * dim), dim);
                if (j < keyEnd)
                {
                    new ReadOnlySpan<float>(dkAcc + (j * dimPad), dim).CopyTo(dkRow);
                    new ReadOnlySpan<float>(dvAcc + (j * dimPad), dim).CopyTo(dvRow);
                }
                else
                {
                    dkRow.Clear();
                    dvRow.Clear();
                }
            }
        }
    }

    // Keys [0, result) that any query up to row `last` may see (all keys unless causal).
    private static int KeyEnd(Layout p, int last)
    {
        return p.Causal == 0 ? p.KeyLength : Math.Clamp(last + p.CausalOffset + 1, 0, p.KeyLength);
    }

    // How many of keys [kb, kb + kn) query i may see by causality (masking is applied through the bias).
    private static int VisibleKeys(Layout p, int i, int kb, int kn)
    {
        return p.Causal == 0 ? kn : Math.Clamp(i + p.CausalOffset + 1 - kb, 0, kn);
    }

    // rows [count, dim] at `stride` -> transposed [dim, pad] with zeros in columns [count, pad); 8×8 blocks
    // are transposed in registers, the edges one by one.
    private static unsafe void StageKeys(Layout p, float* source, int stride, int count, int pad, float* transposed)
    {
        int dim = p.HeadDim;
        for (int d = 0; d < dim; d++)
        {
            new Span<float>(transposed + (d * pad) + count, pad - count).Clear();
        }

        int j0 = 0;
        int d0 = dim & ~7;
        if (System.Runtime.Intrinsics.X86.Avx.IsSupported)
        {
            for (; j0 + 8 <= count; j0 += 8)
            {
                for (int d = 0; d < d0; d += 8)
                {
                    GemmCpu.Transpose8x8(source + (j0 * stride) + d, stride, transposed + (d * pad) + j0, pad);
                }
            }
        }

        for (int j = 0; j < count; j++)
        {
            float* row = source + (j * stride);
            for (int d = j < j0 ? d0 : 0; d < dim; d++)
            {
                transposed[(d * pad) + j] = row[d];
            }
        }
    }

    // dst [n] = scale · src [n]; dst may be src.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void ScaleRow(float* src, float scale, float* dst, int n)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var f = Vector512.Create(scale);
            for (; j + 16 <= n; j += 16)
            {
                (Vector512.Load(src + j) * f).Store(dst + j);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var f = Vector256.Create(scale);
            for (; j + 8 <= n; j += 8)
            {
                (Vector256.Load(src + j) * f).Store(dst + j);
            }
        }

        for (; j < n; j++)
        {
            dst[j] = scale * src[j];
        }
    }

    // rows [count, dim] at `stride` -> [count, dimPad] with zeros in columns [dim, dimPad)
    private static unsafe void StageRows(float* source, int stride, int count, int dim, int dimPad, float* destination)
    {
        for (int j = 0; j < count; j++)
        {
            var row = new Span<float>(destination + (j * dimPad), dimPad);
            new ReadOnlySpan<float>(source + (j * stride), dim).CopyTo(row);
            row[dim..].Clear();
        }
    }

    private static unsafe void StageBias(Layout p, int* mask, int b, int count, int pad, float* bias)
    {
        for (int j = 0; j < pad; j++)
        {
            bias[j] = j < count && (mask == null || mask[(b * p.KeyLength) + j] != 0) ? 0f : float.NegativeInfinity;
        }
    }

    /// <summary>
    /// Adds the key bias to the first <paramref name="visible"/> scores of a row, sets the rest of its
    /// <paramref name="n"/> (a multiple of 16) to −∞, and returns the row's maximum.
    /// </summary>
    private static unsafe float BiasMax(float* row, float* bias, int visible, int n)
    {
        float max = float.NegativeInfinity;
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var best = Vector512.Create(float.NegativeInfinity);
            var lane = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            var limit = Vector512.Create(visible);
            for (; j < n; j += 16)
            {
                var keep = Vector512.LessThan(lane + Vector512.Create(j), limit).AsSingle();
                var x = Vector512.ConditionalSelect(keep, Vector512.Load(row + j) + Vector512.Load(bias + j), Vector512.Create(float.NegativeInfinity));
                x.Store(row + j);
                best = Vector512.Max(best, x);
            }

            for (int e = 0; e < Vector512<float>.Count; e++)
            {
                max = MathF.Max(max, best[e]);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var best = Vector256.Create(float.NegativeInfinity);
            var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
            var limit = Vector256.Create(visible);
            for (; j < n; j += 8)
            {
                var keep = Vector256.LessThan(lane + Vector256.Create(j), limit).AsSingle();
                var x = Vector256.ConditionalSelect(keep, Vector256.Load(row + j) + Vector256.Load(bias + j), Vector256.Create(float.NegativeInfinity));
                x.Store(row + j);
                best = Vector256.Max(best, x);
            }

            for (int e = 0; e < Vector256<float>.Count; e++)
            {
                max = MathF.Max(max, best[e]);
            }
        }

        for (; j < n; j++)
        {
            row[j] = j < visible ? row[j] + bias[j] : float.NegativeInfinity;
            max = MathF.Max(max, row[j]);
        }

        return max;
    }

    /// <summary><c>row = exp(row − shift)</c> over <paramref name="n"/> entries (−∞ gives 0); returns the sum.</summary>
    private static unsafe float ExpSum(float* row, float shift, int n)
    {
        float sum = 0f;
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var total = Vector512<float>.Zero;
            var m = Vector512.Create(shift);
            for (; j < n; j += 16)
            {
                var e = Softmax.Exp(Vector512.Load(row + j) - m);
                e.Store(row + j);
                total += e;
            }

            sum = Vector512.Sum(total);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var total = Vector256<float>.Zero;
            var m = Vector256.Create(shift);
            for (; j < n; j += 8)
            {
                var e = Vector256.Exp(Vector256.Load(row + j) - m);
                e.Store(row + j);
                total += e;
            }

            sum = Vector256.Sum(total);
        }

        for (; j < n; j++)
        {
            row[j] = MathF.Exp(row[j] - shift);
            sum += row[j];
        }

        return sum;
    }

    /// <summary><c>dS = P∘(dP − D)</c> in place over <paramref name="n"/> entries of a row.</summary>
    private static unsafe void SoftmaxGradient(float* ds, float* probabilities, float delta, int n)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var d = Vector512.Create(delta);
            for (; j < n; j += 16)
            {
                ((Vector512.Load(ds + j) - d) * Vector512.Load(probabilities + j)).Store(ds + j);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var d = Vector256.Create(delta);
            for (; j < n; j += 8)
            {
                ((Vector256.Load(ds + j) - d) * Vector256.Load(probabilities + j)).Store(ds + j);
            }
        }

        for (; j < n; j++)
        {
            ds[j] = (ds[j] - delta) * probabilities[j];
        }
    }

    /// <summary>
    /// <c>c[r, 0..n) (+)= Σ_t a[r·aRow + t·aCol] · b[t·bRow + 0..n)</c> for <c>r &lt; rows</c>, <c>t &lt; depth</c>;
    /// <paramref name="n"/> is a multiple of 16. Strides let <c>a</c> be read transposed.
    /// </summary>
    private static unsafe void MultiplyAdd(float* c, int cRow, float* a, int aRow, int aCol, float* b, int bRow, int rows, int depth, int n, bool accumulate)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            // Blocks of eight rows (16 accumulators: more multiply-adds per load), then fours for the rest.
            int eights = rows >= 8 ? rows & ~7 : 0;
            if (eights > 0)
            {
                MultiplyAdd512x8(c, cRow, a, aRow, aCol, b, bRow, eights, depth, n, accumulate);
            }

            if (rows > eights)
            {
                MultiplyAdd512(c + (eights * cRow), cRow, a + (eights * aRow), aRow, aCol, b, bRow, rows - eights, depth, n, accumulate);
            }
        }
        else
        {
            MultiplyAdd256(c, cRow, a, aRow, aCol, b, bRow, rows, depth, n, accumulate);
        }
    }

    // Eight rows (a multiple of 8) at a time, 32 columns per step: 16 accumulators per pass over depth.
    [SkipLocalsInit]
    private static unsafe void MultiplyAdd512x8(float* c, int cRow, float* a, int aRow, int aCol, float* b, int bRow, int rows, int depth, int n, bool accumulate)
    {
        for (int r = 0; r < rows; r += 8)
        {
            float* a0 = a + (r * aRow);
            float* c0 = c + (r * cRow);
            int j = 0;
            for (; j + 32 <= n; j += 32)
            {
                Vector512<float> x00, x01, x10, x11, x20, x21, x30, x31, x40, x41, x50, x51, x60, x61, x70, x71;
                if (accumulate)
                {
                    x00 = Vector512.Load(c0 + j);
                    x01 = Vector512.Load(c0 + j + 16);
                    x10 = Vector512.Load(c0 + cRow + j);
                    x11 = Vector512.Load(c0 + cRow + j + 16);
                    x20 = Vector512.Load(c0 + (2 * cRow) + j);
                    x21 = Vector512.Load(c0 + (2 * cRow) + j + 16);
                    x30 = Vector512.Load(c0 + (3 * cRow) + j);
                    x31 = Vector512.Load(c0 + (3 * cRow) + j + 16);
                    x40 = Vector512.Load(c0 + (4 * cRow) + j);
                    x41 = Vector512.Load(c0 + (4 * cRow) + j + 16);
                    x50 = Vector512.Load(c0 + (5 * cRow) + j);
                    x51 = Vector512.Load(c0 + (5 * cRow) + j + 16);
                    x60 = Vector512.Load(c0 + (6 * cRow) + j);
                    x61 = Vector512.Load(c0 + (6 * cRow) + j + 16);
                    x70 = Vector512.Load(c0 + (7 * cRow) + j);
                    x71 = Vector512.Load(c0 + (7 * cRow) + j + 16);
                }
                else
                {
                    x00 = x01 = x10 = x11 = x20 = x21 = x30 = x31 = Vector512<float>.Zero;
                    x40 = x41 = x50 = x51 = x60 = x61 = x70 = x71 = Vector512<float>.Zero;
                }

                float* bp = b + j;
                float* ap = a0;
                for (int t = 0; t < depth; t++, bp += bRow, ap += aCol)
                {
                    var b0 = Vector512.Load(bp);
                    var b1 = Vector512.Load(bp + 16);
                    var s = Vector512.Create(ap[0]);
                    x00 = Vector512.FusedMultiplyAdd(s, b0, x00);
                    x01 = Vector512.FusedMultiplyAdd(s, b1, x01);
                    s = Vector512.Create(ap[aRow]);
                    x10 = Vector512.FusedMultiplyAdd(s, b0, x10);
                    x11 = Vector512.FusedMultiplyAdd(s, b1, x11);
                    s = Vector512.Create(ap[2 * aRow]);
                    x20 = Vector512.FusedMultiplyAdd(s, b0, x20);
                    x21 = Vector512.FusedMultiplyAdd(s, b1, x21);
                    s = Vector512.Create(ap[3 * aRow]);
                    x30 = Vector512.FusedMultiplyAdd(s, b0, x30);
                    x31 = Vector512.FusedMultiplyAdd(s, b1, x31);
                    s = Vector512.Create(ap[4 * aRow]);
                    x40 = Vector512.FusedMultiplyAdd(s, b0, x40);
                    x41 = Vector512.FusedMultiplyAdd(s, b1, x41);
                    s = Vector512.Create(ap[5 * aRow]);
                    x50 = Vector512.FusedMultiplyAdd(s, b0, x50);
                    x51 = Vector512.FusedMultiplyAdd(s, b1, x51);
                    s = Vector512.Create(ap[6 * aRow]);
                    x60 = Vector512.FusedMultiplyAdd(s, b0, x60);
                    x61 = Vector512.FusedMultiplyAdd(s, b1, x61);
                    s = Vector512.Create(ap[7 * aRow]);
                    x70 = Vector512.FusedMultiplyAdd(s, b0, x70);
                    x71 = Vector512.FusedMultiplyAdd(s, b1, x71);
                }

                x00.Store(c0 + j);
                x01.Store(c0 + j + 16);
                x10.Store(c0 + cRow + j);
                x11.Store(c0 + cRow + j + 16);
                x20.Store(c0 + (2 * cRow) + j);
                x21.Store(c0 + (2 * cRow) + j + 16);
                x30.Store(c0 + (3 * cRow) + j);
                x31.Store(c0 + (3 * cRow) + j + 16);
                x40.Store(c0 + (4 * cRow) + j);
                x41.Store(c0 + (4 * cRow) + j + 16);
                x50.Store(c0 + (5 * cRow) + j);
                x51.Store(c0 + (5 * cRow) + j + 16);
                x60.Store(c0 + (6 * cRow) + j);
                x61.Store(c0 + (6 * cRow) + j + 16);
                x70.Store(c0 + (7 * cRow) + j);
                x71.Store(c0 + (7 * cRow) + j + 16);
            }

            if (j < n)
            {
                // A last 16 columns: the four-row kernel twice.
                MultiplyAdd512(c0 + j, cRow, a0, aRow, aCol, b + j, bRow, 8, depth, n - j, accumulate);
            }
        }
    }

    // Four rows at a time; rows past the end repeat the last row, which computes and stores the same values twice.
    [SkipLocalsInit]
    private static unsafe void MultiplyAdd512(float* c, int cRow, float* a, int aRow, int aCol, float* b, int bRow, int rows, int depth, int n, bool accumulate)
    {
        for (int r = 0; r < rows; r += 4)
        {
            int last = rows - 1;
            float* a0 = a + (r * aRow);
            float* a1 = a + (Math.Min(r + 1, last) * aRow);
            float* a2 = a + (Math.Min(r + 2, last) * aRow);
            float* a3 = a + (Math.Min(r + 3, last) * aRow);
            float* c0 = c + (r * cRow);
            float* c1 = c + (Math.Min(r + 1, last) * cRow);
            float* c2 = c + (Math.Min(r + 2, last) * cRow);
            float* c3 = c + (Math.Min(r + 3, last) * cRow);
            int j = 0;
            for (; j + 32 <= n; j += 32)
            {
                Vector512<float> x00, x01, x10, x11, x20, x21, x30, x31;
                if (accumulate)
                {
                    x00 = Vector512.Load(c0 + j);
                    x01 = Vector512.Load(c0 + j + 16);
                    x10 = Vector512.Load(c1 + j);
                    x11 = Vector512.Load(c1 + j + 16);
                    x20 = Vector512.Load(c2 + j);
                    x21 = Vector512.Load(c2 + j + 16);
                    x30 = Vector512.Load(c3 + j);
                    x31 = Vector512.Load(c3 + j + 16);
                }
                else
                {
                    x00 = x01 = x10 = x11 = x20 = x21 = x30 = x31 = Vector512<float>.Zero;
                }

                float* bp = b + j;
                for (int t = 0; t < depth; t++, bp += bRow)
                {
                    var b0 = Vector512.Load(bp);
                    var b1 = Vector512.Load(bp + 16);
                    int at = t * aCol;
                    var s0 = Vector512.Create(a0[at]);
                    var s1 = Vector512.Create(a1[at]);
                    var s2 = Vector512.Create(a2[at]);
                    var s3 = Vector512.Create(a3[at]);
                    x00 = Vector512.FusedMultiplyAdd(s0, b0, x00);
                    x01 = Vector512.FusedMultiplyAdd(s0, b1, x01);
                    x10 = Vector512.FusedMultiplyAdd(s1, b0, x10);
                    x11 = Vector512.FusedMultiplyAdd(s1, b1, x11);
                    x20 = Vector512.FusedMultiplyAdd(s2, b0, x20);
                    x21 = Vector512.FusedMultiplyAdd(s2, b1, x21);
                    x30 = Vector512.FusedMultiplyAdd(s3, b0, x30);
                    x31 = Vector512.FusedMultiplyAdd(s3, b1, x31);
                }

                x00.Store(c0 + j);
                x01.Store(c0 + j + 16);
                x10.Store(c1 + j);
                x11.Store(c1 + j + 16);
                x20.Store(c2 + j);
                x21.Store(c2 + j + 16);
                x30.Store(c3 + j);
                x31.Store(c3 + j + 16);
            }

            for (; j < n; j += 16)
            {
                Vector512<float> x0, x1, x2, x3;
                if (accumulate)
                {
                    x0 = Vector512.Load(c0 + j);
                    x1 = Vector512.Load(c1 + j);
                    x2 = Vector512.Load(c2 + j);
                    x3 = Vector512.Load(c3 + j);
                }
                else
                {
                    x0 = x1 = x2 = x3 = Vector512<float>.Zero;
                }

                float* bp = b + j;
                for (int t = 0; t < depth; t++, bp += bRow)
                {
                    var b0 = Vector512.Load(bp);
                    int at = t * aCol;
                    x0 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[at]), b0, x0);
                    x1 = Vector512.FusedMultiplyAdd(Vector512.Create(a1[at]), b0, x1);
                    x2 = Vector512.FusedMultiplyAdd(Vector512.Create(a2[at]), b0, x2);
                    x3 = Vector512.FusedMultiplyAdd(Vector512.Create(a3[at]), b0, x3);
                }

                x0.Store(c0 + j);
                x1.Store(c1 + j);
                x2.Store(c2 + j);
                x3.Store(c3 + j);
            }
        }
    }

    // The same with 8-float vectors for machines without AVX-512; 16 columns per step.
    [SkipLocalsInit]
    private static unsafe void MultiplyAdd256(float* c, int cRow, float* a, int aRow, int aCol, float* b, int bRow, int rows, int depth, int n, bool accumulate)
    {
        for (int r = 0; r < rows; r += 4)
        {
            int last = rows - 1;
            float* a0 = a + (r * aRow);
            float* a1 = a + (Math.Min(r + 1, last) * aRow);
            float* a2 = a + (Math.Min(r + 2, last) * aRow);
            float* a3 = a + (Math.Min(r + 3, last) * aRow);
            float* c0 = c + (r * cRow);
            float* c1 = c + (Math.Min(r + 1, last) * cRow);
            float* c2 = c + (Math.Min(r + 2, last) * cRow);
            float* c3 = c + (Math.Min(r + 3, last) * cRow);
            for (int j = 0; j < n; j += 16)
            {
                Vector256<float> x00, x01, x10, x11, x20, x21, x30, x31;
                if (accumulate)
                {
                    x00 = Vector256.Load(c0 + j);
                    x01 = Vector256.Load(c0 + j + 8);
                    x10 = Vector256.Load(c1 + j);
                    x11 = Vector256.Load(c1 + j + 8);
                    x20 = Vector256.Load(c2 + j);
                    x21 = Vector256.Load(c2 + j + 8);
                    x30 = Vector256.Load(c3 + j);
                    x31 = Vector256.Load(c3 + j + 8);
                }
                else
                {
                    x00 = x01 = x10 = x11 = x20 = x21 = x30 = x31 = Vector256<float>.Zero;
                }

                float* bp = b + j;
                for (int t = 0; t < depth; t++, bp += bRow)
                {
                    var b0 = Vector256.Load(bp);
                    var b1 = Vector256.Load(bp + 8);
                    int at = t * aCol;
                    var s0 = Vector256.Create(a0[at]);
                    var s1 = Vector256.Create(a1[at]);
                    var s2 = Vector256.Create(a2[at]);
                    var s3 = Vector256.Create(a3[at]);
                    x00 = Vector256.MultiplyAddEstimate(s0, b0, x00);
                    x01 = Vector256.MultiplyAddEstimate(s0, b1, x01);
                    x10 = Vector256.MultiplyAddEstimate(s1, b0, x10);
                    x11 = Vector256.MultiplyAddEstimate(s1, b1, x11);
                    x20 = Vector256.MultiplyAddEstimate(s2, b0, x20);
                    x21 = Vector256.MultiplyAddEstimate(s2, b1, x21);
                    x30 = Vector256.MultiplyAddEstimate(s3, b0, x30);
                    x31 = Vector256.MultiplyAddEstimate(s3, b1, x31);
                }

                x00.Store(c0 + j);
                x01.Store(c0 + j + 8);
                x10.Store(c1 + j);
                x11.Store(c1 + j + 8);
                x20.Store(c2 + j);
                x21.Store(c2 + j + 8);
                x30.Store(c3 + j);
                x31.Store(c3 + j + 8);
            }
        }
    }

    /// <summary>Per-thread pinned scratch, grown on demand and reused by every later call on that thread.</summary>
    private static unsafe class Scratch
    {
        [ThreadStatic]
        private static float[]? buffer;

        // Carves the thread's buffer into regions of the given lengths, each starting on a 64-byte boundary.
        public static Regions For(ReadOnlySpan<int> lengths)
        {
            long total = Lane;
            foreach (int length in lengths)
            {
                total += RoundUp(length, Lane);
            }

            if (buffer is null || buffer.Length < total)
            {
                buffer = GC.AllocateUninitializedArray<float>((int)Math.Max(total, 2L * (buffer?.Length ?? 0)), pinned: true);
            }

            float* start = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
            start += (Lane - ((nint)start / sizeof(float) % Lane)) % Lane;
            var regions = new Regions();
            for (int i = 0; i < lengths.Length; i++)
            {
                regions[i] = (nint)start;
                start += RoundUp(lengths[i], Lane);
            }

            return regions;
        }
    }

    /// <summary>Up to 16 scratch region addresses.</summary>
    [InlineArray(16)]
    private struct Regions
    {
        private nint element;
    }

    #endregion

    private static int DivUp(int value, int divisor) => (value + divisor - 1) / divisor;

    private static int RoundUp(int value, int multiple) => DivUp(value, multiple) * multiple;
}
