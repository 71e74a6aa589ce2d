using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>Attention on ILGPU: the forward, probability and backward kernels launched through <see cref="Launch{TKernel}"/>.</summary>
internal sealed partial class IlgpuBackend
{
    internal override void AttentionForward(
        Tensor<float> q, Tensor<float> k, Tensor<float> v, Tensor<float> o, Tensor<float> lse, Tensor<int>? mask, Tensor<float>? probabilities,
        Attention.Layout layout, bool? perThread)
    {
        // Without keys (or a mask) the kernels never read those views; stand-ins avoid empty views.
        var standIn = q.View;
        var maskView = Attention.ViewOr(mask, standIn.Cast<int>());

        // ILGPU's CPU accelerator synchronises a group's OS threads at every barrier: beyond tiny problems a
        // thread per query row, reading keys and values in place, is far faster there.
        long work = (long)layout.Batch * layout.Heads * layout.QueryLength * layout.KeyLength * layout.HeadDim;
        if ((perThread ?? (IsSimulator && work > Attention.SimulatorTiledWork)) || MaxGroupSize < Attention.TileThreads)
        {
            using var launch = Launch("Attention.ForwardPerThread", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, Attention.Layout>(
                    Attention.ForwardPerThreadKernel));
            launch.Kernel(launch.Stream, layout.Batch * layout.Heads * layout.QueryLength,
                q.View, Attention.ViewOr(k, standIn), Attention.ViewOr(v, standIn), o.View, lse.View, maskView, layout);
        }
        else
        {
            // The register-tiled kernel for the head dimension: 32 query rows per group of 128 threads.
            layout.Blocks = Attention.DivUp(layout.QueryLength, Attention.TileSize);
            var config = new KernelConfig(layout.Batch * layout.Heads * layout.Blocks, Attention.TileThreads);
            var kv = (K: Attention.ViewOr(k, standIn), V: Attention.ViewOr(v, standIn));
            switch (Attention.TileChunks(layout.HeadDim))
            {
                case 1:
                    {
                        using var launch = Launch("Attention.Forward32", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, Attention.Layout>(Attention.Forward32Kernel));
                        launch.Kernel(launch.Stream, config, q.View, kv.K, kv.V, o.View, lse.View, maskView, layout);
                        break;
                    }

                case 2:
                    {
                        using var launch = Launch("Attention.Forward64", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, Attention.Layout>(Attention.Forward64Kernel));
                        launch.Kernel(launch.Stream, config, q.View, kv.K, kv.V, o.View, lse.View, maskView, layout);
                        break;
                    }

                case 3:
                    {
                        using var launch = Launch("Attention.Forward96", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, Attention.Layout>(Attention.Forward96Kernel));
                        launch.Kernel(launch.Stream, config, q.View, kv.K, kv.V, o.View, lse.View, maskView, layout);
                        break;
                    }

                default:
                    {
                        using var launch = Launch("Attention.Forward128", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, Attention.Layout>(Attention.Forward128Kernel));
                        launch.Kernel(launch.Stream, config, q.View, kv.K, kv.V, o.View, lse.View, maskView, layout);
                        break;
                    }
            }
        }

        if (probabilities is not null && probabilities.Length > 0)
        {
            using var launch = Launch("Attention.Probabilities", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, Attention.Layout>(Attention.ProbabilitiesKernel));
            launch.Kernel(launch.Stream, (int)probabilities.Length, q.View, k.View, lse.View, maskView, probabilities.View, layout);
        }
    }

    internal override void AttentionBackward(
        Tensor<float> q, Tensor<float> k, Tensor<float> v, Tensor<float> o, Tensor<float> dO, Tensor<float> lse, Tensor<int>? mask,
        Tensor<float> dq, Tensor<float> dk, Tensor<float> dv, Tensor<float> delta, Attention.Layout layout)
    {
        var deltaKernel = Kernel("Attention.Delta", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, Attention.Layout>(Attention.DeltaKernel));

        // The register-tiled kernels for the head dimension (32 rows per group up to 64 dims, 16 beyond); the
        // row-per-thread ones only where groups of 128 threads are not available.
        bool tiled = MaxGroupSize >= Attention.TileThreads;
        int chunks = Attention.TileChunks(layout.HeadDim);
        var dqKernel = !tiled
            ? Kernel("Attention.BackwardQuery", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, Attention.Layout>(Attention.BackwardQueryKernel))
            : chunks switch
            {
                1 => Kernel("Attention.BackwardQuery32", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, Attention.Layout>(Attention.BackwardQuery32Kernel)),
                2 => Kernel("Attention.BackwardQuery64", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, Attention.Layout>(Attention.BackwardQuery64Kernel)),
                3 => Kernel("Attention.BackwardQuery96", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, Attention.Layout>(Attention.BackwardQuery96Kernel)),
                _ => Kernel("Attention.BackwardQuery128", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, Attention.Layout>(Attention.BackwardQuery128Kernel)),
            };
        var dkvKernel = !tiled
            ? Kernel("Attention.BackwardKeyValue", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, Attention.Layout>(Attention.BackwardKeyValueKernel))
            : chunks switch
            {
                1 => Kernel("Attention.BackwardKeyValue32", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, Attention.Layout>(Attention.BackwardKeyValue32Kernel)),
                2 => Kernel("Attention.BackwardKeyValue64", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, Attention.Layout>(Attention.BackwardKeyValue64Kernel)),
                3 => Kernel("Attention.BackwardKeyValue96", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, Attention.Layout>(Attention.BackwardKeyValue96Kernel)),
                _ => Kernel("Attention.BackwardKeyValue128", static acc => acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, Attention.Layout>(Attention.BackwardKeyValue128Kernel)),
            };
        int group = tiled ? Attention.TileThreads : Math.Min(Attention.GroupRows, MaxGroupSize);
        int rowsPerGroup = !tiled ? group : layout.HeadDim <= Attention.TiledBackwardMaxDim ? Attention.TileSize : Attention.WideTileSize;
        int rows = layout.Batch * layout.Heads * layout.QueryLength;
        var stream = Stream;
        using (Enter())
        {
            if (rows > 0)
            {
                // Without keys the query kernel reads no key, value or mask: stand-ins avoid empty views.
                var standIn = q.View;
                deltaKernel(stream, rows, o.View, dO.View, delta.View, layout);
                var queryLayout = layout;
                queryLayout.Blocks = Attention.DivUp(layout.QueryLength, rowsPerGroup);
                dqKernel(
                    stream,
                    new KernelConfig(layout.Batch * layout.Heads * queryLayout.Blocks, group),
                    q.View, Attention.ViewOr(k, standIn), Attention.ViewOr(v, standIn), o.View, dO.View, lse.View, delta.View, Attention.ViewOr(mask, standIn.Cast<int>()), dq.View, queryLayout);
            }

            if (layout.KeyLength > 0)
            {
                // One group per (batch, key/value head, block of keys), summing over the group's query heads.
                // Without queries the key kernel reads no query-side view: it writes zeros.
                var standIn = k.View;
                var keyLayout = layout;
                keyLayout.Blocks = Attention.DivUp(layout.KeyLength, rowsPerGroup);
                dkvKernel(
                    stream,
                    new KernelConfig(layout.Batch * layout.KvHeads * keyLayout.Blocks, group),
                    Attention.ViewOr(q, standIn), k.View, v.View, Attention.ViewOr(o, standIn), Attention.ViewOr(dO, standIn), Attention.ViewOr(lse, standIn), Attention.ViewOr(delta, standIn),
                    Attention.ViewOr(mask, standIn.Cast<int>()), dk.View, dv.View, keyLayout);
            }
        }
    }

    internal override bool AttentionSharesMemory(Tensor<float> a, Tensor<float> b)
    {
        IContiguousArrayView va = a.View;
        IContiguousArrayView vb = b.View;
        return ReferenceEquals(va.Buffer, vb.Buffer) && va.Index < vb.Index + vb.Length && vb.Index < va.Index + va.Length;
    }
}

/// <summary>
/// Attention's row-per-thread ILGPU kernels: the simulator's forward, and the backward where groups of
/// <see cref="TileThreads"/> are not available (one thread per query or key row, K and V or Q and dO tiles in shared memory).
/// The register-tiled kernels are in Attention.Tiled.Ilgpu.cs.
/// </summary>
public static partial class Attention
{
    // The row-per-thread backward kernels: threads per group (one query or key row each) and rows per shared-memory tile.
    internal const int GroupRows = 64;
    internal const int TileRows = 32;

    // On ILGPU's CPU accelerator, problems up to this many multiply-adds per score pass keep the tiled kernel (so
    // tests of tiny shapes still run it there); larger ones take the barrier-free kernel.
    internal const long SimulatorTiledWork = 1 << 14;

    // The tensor's view, or a stand-in when the tensor is absent or empty (ILGPU rejects empty sub-views).
    internal static ArrayView<T> ViewOr<T>(Tensor<T>? tensor, ArrayView<T> standIn)
        where T : unmanaged
    {
        return tensor is null || tensor.Length == 0 ? standIn : tensor.View;
    }

    // One thread per (batch, head, query row), with no shared memory and no barriers (for ILGPU's CPU
    // accelerator): the tiled kernels' online softmax, tile by tile, with keys and values read in place.
    // q, k, v [batch, seq, width] -> o [batch, query, width], lse [batch, heads, query]
    internal static void ForwardPerThreadKernel(
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
        int kvHead = h / p.Group;
        int qBase = (((b * p.QueryLength) + i) * p.QStride) + p.QColumn + (h * dim);
        for (int d = 0; d < dim; d++)
        {
            qRow[d] = q[qBase + d] * p.Scale;
            acc[d] = 0f;
        }

        int keyEnd = KeyEnd(p, i);

        var row = new RunningSoftmax { Max = float.NegativeInfinity, Sum = 0f };
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
                    int kBase = (((b * p.KeyLength) + j) * p.KStride) + p.KColumn + (kvHead * dim);
                    s = 0f;
                    for (int d = 0; d < dim; d++)
                    {
                        s += qRow[d] * k[kBase + d];
                    }

                    tileMax = XMath.Max(tileMax, s);
                }

                scores[jj] = s;
            }

            row = FoldTile(row, tileMax, scores, n, acc, dim, v, (((b * p.KeyLength) + tile) * p.VStride) + p.VColumn + (kvHead * dim), p.VStride);
        }

        StoreOutputRow(row, acc, o, lse, p, bh, i);
    }

    /// <summary>One query row's online softmax so far: the largest score m and ℓ = Σ exp(score − m).</summary>
    private struct RunningSoftmax
    {
        public float Max;
        public float Sum;
    }

    // The per-thread kernel's step: folds a tile of n scores (−∞ where masked, tileMax the largest) into the row's
    // softmax and its unnormalised output acc [dim]. Both are rescaled by exp(m − m'), then acc += exp(s − m')·v
    // with value row jj at values[vBase + jj·vStride].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static RunningSoftmax FoldTile(
        RunningSoftmax row, float tileMax, ArrayView<float> scores, int n, ArrayView<float> acc, int dim, ArrayView<float> values, int vBase, int vStride)
    {
        if (tileMax > float.NegativeInfinity)
        {
            float mNew = XMath.Max(row.Max, tileMax);
            float alpha = XMath.Exp(row.Max - mNew);
            row.Sum *= alpha;
            for (int d = 0; d < dim; d++)
            {
                acc[d] *= alpha;
            }

            for (int jj = 0; jj < n; jj++)
            {
                float pj = XMath.Exp(scores[jj] - mNew);
                row.Sum += pj;
                int vRow = vBase + (jj * vStride);
                for (int d = 0; d < dim; d++)
                {
                    acc[d] += pj * values[vRow + d];
                }
            }

            row.Max = mNew;
        }

        return row;
    }

    // o [batch, query, width] row i of pair bh = acc/ℓ (0 when the row sees no key); lse = m + log ℓ (+∞ then).
    private static void StoreOutputRow(RunningSoftmax row, ArrayView<float> acc, ArrayView<float> o, ArrayView<float> lse, Layout p, int bh, int i)
    {
        int dim = p.HeadDim;
        int h = bh % p.Heads;
        int b = bh / p.Heads;
        int oBase = (((b * p.QueryLength) + i) * p.OStride) + p.OColumn + (h * dim);
        float l = row.Sum;
        float inv = l > 0f ? 1f / l : 0f;
        for (int d = 0; d < dim; d++)
        {
            o[oBase + d] = acc[d] * inv;
        }

        lse[(bh * p.QueryLength) + i] = l > 0f ? row.Max + XMath.Log(l) : float.PositiveInfinity;
    }

    // Stages keys [tile, tile + n) of (b, key/value head g): K and V rows [n, dim] and whether each key is unmasked.
    private static void LoadKeyTiles(
        ArrayView<float> k, ArrayView<float> v, ArrayView<int> mask, Layout p, int b, int g, int tile, int n, ArrayView<float> kTile, ArrayView<float> vTile, ArrayView<int> visible)
    {
        int dim = p.HeadDim;
        for (int e = Group.IdxX; e < n * dim; e += Group.DimX)
        {
            int jj = e / dim;
            int d = e - (jj * dim);
            int row = (b * p.KeyLength) + tile + jj;
            kTile[e] = k[(row * p.KStride) + p.KColumn + (g * dim) + d];
            vTile[e] = v[(row * p.VStride) + p.VColumn + (g * dim) + d];
        }

        for (int jj = Group.IdxX; jj < n; jj += Group.DimX)
        {
            visible[jj] = p.HasMask == 0 || mask[(b * p.KeyLength) + tile + jj] != 0 ? 1 : 0;
        }
    }

    // One thread per probability: q, k [batch, seq, width], lse [batch, heads, query] -> probabilities [batch, heads, query, key]
    internal static void ProbabilitiesKernel(
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
            int kBase = (((b * p.KeyLength) + j) * p.KStride) + p.KColumn + ((h / p.Group) * dim);
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
    internal static void DeltaKernel(Index1D index, ArrayView<float> o, ArrayView<float> dO, ArrayView<float> delta, Layout p)
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
            float od = o[oBase + d];
            sum += od * OutputSignal(dO[gBase + d], od, p);
        }

        delta[index] = sum;
    }

    // dQ = scale·Σⱼ P∘(dP − D)·kⱼ, one thread per query row, K and V tiles in shared memory.
    // q, k, v, dO [batch, seq, width], lse, delta [batch, heads, query] -> dq [batch, query, width]
    internal static void BackwardQueryKernel(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
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

        // CP-LRP sends nothing through the scores: dQ is 0. The rule is the same for every thread, so no barrier is skipped.
        if (p.Rule == RuleConservative)
        {
            if (active)
            {
                int zeroBase = (((b * p.QueryLength) + i) * p.DqStride) + p.DqColumn + (h * dim);
                for (int d = 0; d < dim; d++)
                {
                    dq[zeroBase + d] = 0f;
                }
            }

            return;
        }

        float rowLse = float.PositiveInfinity;
        float rowDelta = 0f;
        if (active)
        {
            int qBase = (((b * p.QueryLength) + i) * p.QStride) + p.QColumn + (h * dim);
            int oBase = (((b * p.QueryLength) + i) * p.OStride) + p.OColumn + (h * dim);
            int gBase = (((b * p.QueryLength) + i) * p.GStride) + p.GColumn + (h * dim);
            for (int d = 0; d < dim; d++)
            {
                qRow[d] = q[qBase + d] * p.Scale;
                gRow[d] = OutputSignal(dO[gBase + d], o[oBase + d], p);
                acc[d] = 0f;
            }

            rowLse = lse[(bh * p.QueryLength) + i];
            rowDelta = delta[(bh * p.QueryLength) + i];
        }

        int last = (first + Group.DimX < p.QueryLength ? first + Group.DimX : p.QueryLength) - 1;
        int keyEnd = KeyEnd(p, last);

        for (int tile = 0; tile < keyEnd; tile += TileRows)
        {
            int n = keyEnd - tile < TileRows ? keyEnd - tile : TileRows;
            LoadKeyTiles(k, v, mask, p, b, h / p.Group, tile, n, kTile, vTile, visible);
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

                        float ds = XMath.Exp(s - rowLse) * (dp - rowDelta) * ScoreShare(s, p);
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

    // dV = Σᵢ Pᵢⱼ·dOᵢ and dK = Σᵢ dSᵢⱼ·(scale·qᵢ) summed over the query heads of key/value head g, one thread per
    // key row, Q and dO tiles in shared memory.
    // q, k, v, dO [batch, seq, width], lse, delta [batch, heads, query] -> dk, dv [batch, key, width]
    internal static void BackwardKeyValueKernel(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
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
        int bg = Grid.IdxX / p.Blocks;
        int g = bg % p.KvHeads;
        int b = bg / p.KvHeads;
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
            int kBase = (((b * p.KeyLength) + j) * p.KStride) + p.KColumn + (g * dim);
            int vBase = (((b * p.KeyLength) + j) * p.VStride) + p.VColumn + (g * dim);
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

        // The group's query heads one after another, without atomics: dK and dV sum in a fixed order (deterministic).
        for (int member = 0; member < p.Group; member++)
        {
            int h = (g * p.Group) + member;
            int bh = (b * p.Heads) + h;
            for (int tile = queryBegin; tile < p.QueryLength; tile += TileRows)
            {
                int n = p.QueryLength - tile < TileRows ? p.QueryLength - tile : TileRows;
                for (int e = Group.IdxX; e < n * dim; e += Group.DimX)
                {
                    int r = e / dim;
                    int d = e - (r * dim);
                    int row = (b * p.QueryLength) + tile + r;
                    qTile[e] = q[(row * p.QStride) + p.QColumn + (h * dim) + d] * p.Scale;
                    gTile[e] = OutputSignal(dO[(row * p.GStride) + p.GColumn + (h * dim) + d], o[(row * p.OStride) + p.OColumn + (h * dim) + d], p);
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
                            float ds = pr * (dp - deltaTile[r]) * ScoreShare(s, p);
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
        }

        if (inRange)
        {
            int dkBase = (((b * p.KeyLength) + j) * p.DkStride) + p.DkColumn + (g * dim);
            int dvBase = (((b * p.KeyLength) + j) * p.DvStride) + p.DvColumn + (g * dim);
            for (int d = 0; d < dim; d++)
            {
                dk[dkBase + d] = dkAcc[d];
                dv[dvBase + d] = dvAcc[d];
            }
        }
    }
}
