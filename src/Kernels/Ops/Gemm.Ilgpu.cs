using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>
/// GEMM on ILGPU: a register-blocked kernel with double-buffered shared tiles on GPUs (split over k, with a
/// deterministic second pass, when the output has too few tiles to fill the device), and a barrier-free
/// kernel for ILGPU's CPU accelerator beyond tiny problems.
/// </summary>
internal sealed partial class IlgpuBackend
{
    internal override void GemmRun(Tensor<float> a, Tensor<float> b, Tensor<float> c, Tensor<float>? bias, Tensor<float>? pre,
        GemmDims d, GemmIsa isa, PackedWeight? packed, GemmKernel kernel)
    {
        // Absent optional operands are never read or written (HasBias/HasPre), nor are empty a or b
        // (k = 0); ILGPU has no view of an empty buffer, so c's view stands in for them.
        var cView = c.View;
        var aView = a.Length == 0 ? cView : a.View;
        var bView = b.Length == 0 ? cView : b.View;
        var biasView = bias?.View ?? cView;
        var preView = pre?.View ?? cView;
        if (kernel == GemmKernel.Auto)
        {
            // ILGPU's CPU accelerator runs each thread of a group on its own OS thread and every barrier
            // synchronises them all: beyond tiny problems the tiled kernel spends its time in barriers.
            long work = (long)d.M * d.N * Math.Max(d.K, 1) * d.Batch * Math.Max(d.Reduce, 1);
            kernel = IsSimulator && work > Gemm.SimulatorTiledWork ? GemmKernel.PerThread : GemmKernel.Tiled;
        }

        if (kernel == GemmKernel.PerThread)
        {
            using var direct = Launch("Gemm.PerThread", static acc => acc.LoadAutoGroupedKernel<
                Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmDims>(Gemm.PerThreadKernel));
            d.MTiles = (d.M + Gemm.BlockM - 1) / Gemm.BlockM;
            d.NTiles = (d.N + Gemm.BlockN - 1) / Gemm.BlockN;
            int threads = checked(d.MTiles * d.NTiles * d.Batch);
            direct.Kernel(direct.Stream, threads, aView, bView, cView, biasView, preView, d);
            return;
        }

        if (MaxGroupSize < Gemm.GroupThreads)
        {
            throw new NotSupportedException(
                $"Gemm: device '{Accelerator.Name}' runs at most {MaxGroupSize} threads per group; the tiled kernel needs {Gemm.GroupThreads}.");
        }

        var tiled = Kernel("Gemm.Tiled", static acc => acc.LoadKernel<
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmDims, GemmTiling>(Gemm.TiledKernel));
        d.MTiles = (d.M + Gemm.TileM - 1) / Gemm.TileM;
        d.NTiles = (d.N + Gemm.TileN - 1) / Gemm.TileN;
        int tiles = checked(d.MTiles * d.NTiles * d.Batch);
        var t = new GemmTiling
        {
            Splits = 1,
            KChunk = Math.Max(d.K, 1),
            VectorA = Gemm.QuadsAligned(a, d.TransA == 0 ? d.K : d.M, d.ABatchStride, d.AReduceStride) ? 1 : 0,
            VectorB = Gemm.QuadsAligned(b, d.TransB != 0 ? d.K : d.N, d.BBatchStride, d.BReduceStride) ? 1 : 0,
        };
        int splits = Gemm.SplitCount(tiles, d.K, Accelerator.NumMultiprocessors, (long)d.Batch * d.CBatchStride);
        using (Enter())
        {
            if (splits <= 1)
            {
                tiled(Stream, new KernelConfig(tiles, Gemm.GroupThreads), aView, bView, cView, biasView, preView, d, t);
                return;
            }

            // Split-K: each split's raw sums go to its slice of the workspace [split, batch, m, n]; the second
            // pass adds them in order and applies alpha, beta, bias and the activation.
            t.Splits = splits;
            t.KChunk = Gemm.SplitChunk(d.K, splits);
            t.SplitStride = d.Batch * d.CBatchStride;
            var work = GemmWorkspace((long)splits * t.SplitStride);
            var raw = d;
            raw.Alpha = 1f;
            raw.Beta = 0f;
            raw.HasBias = 0;
            raw.HasPre = 0;
            raw.Activation = 0;
            tiled(Stream, new KernelConfig(tiles * splits, Gemm.GroupThreads), aView, bView, work, biasView, preView, raw, t);
            var reduce = Kernel("Gemm.SplitReduce", static acc => acc.LoadAutoGroupedKernel<
                Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmDims, GemmTiling>(Gemm.SplitReduceKernel));
            reduce(Stream, t.SplitStride, work, cView, biasView, preView, d, t);
        }
    }

    // Split-K's partial sums, kept between calls and grown when a problem needs more (used under the launch lock).
    private MemoryBuffer1D<float, Stride1D.Dense>? gemmWorkspace;

    private ArrayView<float> GemmWorkspace(long length)
    {
        if (gemmWorkspace is null || gemmWorkspace.Length < length)
        {
            gemmWorkspace?.Dispose();
            gemmWorkspace = null;
            gemmWorkspace = Accelerator.Allocate1D<float>(length);
        }

        return gemmWorkspace.View.SubView(0, length);
    }

    // Nothing to pack: the kernels read the weight as it is.
    internal override void GemmPrepack(PackedWeight weight)
    {
    }
}

/// <summary>GEMM's ILGPU kernels.</summary>
public static partial class Gemm
{
    // ILGPU tiling: a group of 16×16 threads computes a 128×128 tile of c, each thread an 8×8 block made of
    // four 4×4 quarters (rows 4·ty and 64 + 4·ty, columns 4·tx and 64 + 4·tx), so that every shared read
    // is one 16-byte vector and neighbouring threads touch neighbouring columns; K advances 8 at a time.
    internal const int TileM = 128;
    internal const int TileN = 128;
    internal const int TileK = 8;
    internal const int GroupThreads = 256;

    // Row pitch of the shared tiles in floats: 132 keeps each row 16-byte aligned for vector reads, and
    // 132·4 ≡ 16 (mod 32 banks) keeps the transposing stores of the k-contiguous loads free of conflicts.
    internal const int SharedPitch = 132;
    internal const int SharedPitch4 = SharedPitch / 4;

    // Floats of one shared buffer (one k-tile of op(a) or op(b)); two of each are double-buffered.
    internal const int SharedTile = TileK * SharedPitch;

    // Split-K: each split covers at least this much of k, and there are at most MaxSplits of them.
    internal const int MinSplitK = 128;
    internal const int MaxSplits = 16;

    // The barrier-free kernel: one thread per 4×4 block of c.
    internal const int BlockM = 4;
    internal const int BlockN = 4;

    // On ILGPU's CPU accelerator, problems up to this many multiply-adds keep the tiled kernel (so tests of tiny
    // shapes still run it there); larger ones take the barrier-free kernel.
    internal const long SimulatorTiledWork = 1 << 15;

    // True when an operand can be read in aligned quads: its memory rows (rowLength floats), batch and
    // reduction strides and its offset in its buffer are all multiples of 4 floats.
    internal static bool QuadsAligned(Tensor<float> x, int rowLength, int batchStride, int reduceStride)
        => x.Length > 0 && rowLength % 4 == 0 && batchStride % 4 == 0 && reduceStride % 4 == 0 && x.Offset % 4 == 0;

    // Split-K when the output has fewer tiles than the device keeps resident (two groups of 256 threads
    // per multiprocessor at the kernel's register use) and k is long enough for every split to be worth
    // a pass: as many splits as fill the device, each covering at least MinSplitK of k.
    internal static int SplitCount(int tiles, int k, int multiprocessors, long outputLength)
    {
        long resident = 2L * Math.Max(multiprocessors, 1);
        if (tiles >= resident || k < 2 * MinSplitK)
        {
            return 1;
        }

        long splits = Math.Min(Math.Min((resident + tiles - 1) / tiles, k / MinSplitK), MaxSplits);
        splits = Math.Min(splits, int.MaxValue / Math.Max(outputLength, 1));
        if (splits < 2)
        {
            return 1;
        }

        int chunk = SplitChunk(k, (int)splits);
        return (k + chunk - 1) / chunk;
    }

    // The k each of `splits` splits covers: a whole number of k-tiles, so quads stay aligned.
    internal static int SplitChunk(int k, int splits)
    {
        int chunk = (k + splits - 1) / splits;
        return (chunk + TileK - 1) / TileK * TileK;
    }

    // One group per 128×128 tile of one batch's c (and one k-range of it with split-K): a, b, c as described
    // by p, bias [n], pre like c; t says how k is split and which operands may be read as 16-byte vectors.
    // With split-K, c is the workspace [split, batch, m, n] and p's epilogue is off (SplitReduceKernel applies it).
    internal static void TiledKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias, ArrayView<float> pre, GemmDims p, GemmTiling t)
    {
        // op(a) tiles [buffer][kk][row], op(b) tiles [buffer][kk][col], read as Float4 and written as either.
        var sa4 = SharedMemory.Allocate<GemmFloat4>(2 * TileK * SharedPitch4);
        var sb4 = SharedMemory.Allocate<GemmFloat4>(2 * TileK * SharedPitch4);
        var sa = sa4.Cast<float>();
        var sb = sb4.Cast<float>();
        var a4 = a.Cast<GemmFloat4>();
        var b4 = b.Cast<GemmFloat4>();
        int tid = Group.IdxX;
        int tx = tid & 15;
        int ty = tid >> 4;
        int g = Grid.IdxX;
        int nTile = g % p.NTiles;
        int rest = g / p.NTiles;
        int mTile = rest % p.MTiles;
        rest /= p.MTiles;
        int batch = rest % p.Batch;
        int split = rest / p.Batch;
        int row0 = mTile * TileM;
        int col0 = nTile * TileN;
        int kStart = split * t.KChunk;
        int kEnd = XMath.Min(p.K, kStart + t.KChunk);
        int kTiles = kEnd > kStart ? (kEnd - kStart + TileK - 1) / TileK : 0;
        int steps = p.Reduce * kTiles;

        // Each thread stages one quad of 4 consecutive floats of each operand per k-tile. A row-major operand
        // (a [m, k], b [n, k]) is read along k: thread → (row tid/2, k 4·(tid%2)) and stored transposed; a
        // k-major one (a [k, m], b [k, n]) along m or n: thread → (k tid/32, column 4·(tid%32)), stored as it is.
        // "outer" is the coordinate that selects the memory row, "inner" the one that walks it.
        bool aAlongK = p.TransA == 0;
        bool bAlongK = p.TransB != 0;
        int aRows = aAlongK ? p.K : p.M;                     // memory row length of a
        int bRows = bAlongK ? p.K : p.N;                     // memory row length of b
        int aLane = aAlongK ? tid >> 1 : (tid & 31) * 4;     // row (or column) in the tile
        int aKk = aAlongK ? (tid & 1) * 4 : tid >> 5;        // kk in the tile
        int bLane = bAlongK ? tid >> 1 : (tid & 31) * 4;
        int bKk = bAlongK ? (tid & 1) * 4 : tid >> 5;
        int aOuter = aAlongK ? row0 + aLane : aKk;           // k part added per tile when !aAlongK
        int aInner = aAlongK ? aKk : row0 + aLane;
        int bOuter = bAlongK ? col0 + bLane : bKk;
        int bInner = bAlongK ? bKk : col0 + bLane;
        int aOuterLimit = aAlongK ? p.M : kEnd;
        int aInnerLimit = aAlongK ? kEnd : p.M;
        int bOuterLimit = bAlongK ? p.N : kEnd;
        int bInnerLimit = bAlongK ? kEnd : p.N;
        int aStore = aAlongK ? (aKk * SharedPitch) + aLane : (aKk * SharedPitch4) + (aLane >> 2);
        int bStore = bAlongK ? (bKk * SharedPitch) + bLane : (bKk * SharedPitch4) + (bLane >> 2);
        int aRead = ty;
        int bRead = tx;

        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f, c04 = 0f, c05 = 0f, c06 = 0f, c07 = 0f;
        float c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f, c14 = 0f, c15 = 0f, c16 = 0f, c17 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f, c24 = 0f, c25 = 0f, c26 = 0f, c27 = 0f;
        float c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f, c34 = 0f, c35 = 0f, c36 = 0f, c37 = 0f;
        float c40 = 0f, c41 = 0f, c42 = 0f, c43 = 0f, c44 = 0f, c45 = 0f, c46 = 0f, c47 = 0f;
        float c50 = 0f, c51 = 0f, c52 = 0f, c53 = 0f, c54 = 0f, c55 = 0f, c56 = 0f, c57 = 0f;
        float c60 = 0f, c61 = 0f, c62 = 0f, c63 = 0f, c64 = 0f, c65 = 0f, c66 = 0f, c67 = 0f;
        float c70 = 0f, c71 = 0f, c72 = 0f, c73 = 0f, c74 = 0f, c75 = 0f, c76 = 0f, c77 = 0f;

        // No steps (k = 0, or an empty sum over batches) reads nothing: a and b may be stand-ins then.
        var ra = default(GemmFloat4);
        var rb = default(GemmFloat4);
        if (steps > 0)
        {
            ra = LoadQuad(a, a4, t.VectorA, p.ABatchStride, p.AReduceStride, aRows, aAlongK, aOuter, aInner, aOuterLimit, aInnerLimit, batch, 0, kStart);
            rb = LoadQuad(b, b4, t.VectorB, p.BBatchStride, p.BReduceStride, bRows, bAlongK, bOuter, bInner, bOuterLimit, bInnerLimit, batch, 0, kStart);
            StoreQuad(sa, sa4, aAlongK, 0, aStore, ra);
            StoreQuad(sb, sb4, bAlongK, 0, bStore, rb);
        }

        Group.Barrier();
        for (int step = 0; step < steps; step++)
        {
            int cur = step & 1;

            // Fetch the next k-tile into registers while this one is multiplied out of shared memory.
            int next = step + 1;
            if (next < steps)
            {
                int r = next / kTiles;
                int k0 = kStart + ((next - (r * kTiles)) * TileK);
                ra = LoadQuad(a, a4, t.VectorA, p.ABatchStride, p.AReduceStride, aRows, aAlongK, aOuter, aInner, aOuterLimit, aInnerLimit, batch, r, k0);
                rb = LoadQuad(b, b4, t.VectorB, p.BBatchStride, p.BReduceStride, bRows, bAlongK, bOuter, bInner, bOuterLimit, bInnerLimit, batch, r, k0);
            }

            int s4 = cur * (TileK * SharedPitch4);
            // Two k steps per pass: the second pair of fragment loads overlaps the first 64 multiply-adds.
            for (int kk = 0; kk < TileK; kk += 2)
            {
                int ia = s4 + (kk * SharedPitch4) + aRead;
                int ib = s4 + (kk * SharedPitch4) + bRead;
                var a0 = sa4[ia];
                var a1 = sa4[ia + 16];
                var b0 = sb4[ib];
                var b1 = sb4[ib + 16];
                var a2 = sa4[ia + SharedPitch4];
                var a3 = sa4[ia + SharedPitch4 + 16];
                var b2 = sb4[ib + SharedPitch4];
                var b3 = sb4[ib + SharedPitch4 + 16];
                c00 += a0.X * b0.X; c01 += a0.X * b0.Y; c02 += a0.X * b0.Z; c03 += a0.X * b0.W; c04 += a0.X * b1.X; c05 += a0.X * b1.Y; c06 += a0.X * b1.Z; c07 += a0.X * b1.W;
                c10 += a0.Y * b0.X; c11 += a0.Y * b0.Y; c12 += a0.Y * b0.Z; c13 += a0.Y * b0.W; c14 += a0.Y * b1.X; c15 += a0.Y * b1.Y; c16 += a0.Y * b1.Z; c17 += a0.Y * b1.W;
                c20 += a0.Z * b0.X; c21 += a0.Z * b0.Y; c22 += a0.Z * b0.Z; c23 += a0.Z * b0.W; c24 += a0.Z * b1.X; c25 += a0.Z * b1.Y; c26 += a0.Z * b1.Z; c27 += a0.Z * b1.W;
                c30 += a0.W * b0.X; c31 += a0.W * b0.Y; c32 += a0.W * b0.Z; c33 += a0.W * b0.W; c34 += a0.W * b1.X; c35 += a0.W * b1.Y; c36 += a0.W * b1.Z; c37 += a0.W * b1.W;
                c40 += a1.X * b0.X; c41 += a1.X * b0.Y; c42 += a1.X * b0.Z; c43 += a1.X * b0.W; c44 += a1.X * b1.X; c45 += a1.X * b1.Y; c46 += a1.X * b1.Z; c47 += a1.X * b1.W;
                c50 += a1.Y * b0.X; c51 += a1.Y * b0.Y; c52 += a1.Y * b0.Z; c53 += a1.Y * b0.W; c54 += a1.Y * b1.X; c55 += a1.Y * b1.Y; c56 += a1.Y * b1.Z; c57 += a1.Y * b1.W;
                c60 += a1.Z * b0.X; c61 += a1.Z * b0.Y; c62 += a1.Z * b0.Z; c63 += a1.Z * b0.W; c64 += a1.Z * b1.X; c65 += a1.Z * b1.Y; c66 += a1.Z * b1.Z; c67 += a1.Z * b1.W;
                c70 += a1.W * b0.X; c71 += a1.W * b0.Y; c72 += a1.W * b0.Z; c73 += a1.W * b0.W; c74 += a1.W * b1.X; c75 += a1.W * b1.Y; c76 += a1.W * b1.Z; c77 += a1.W * b1.W;
                c00 += a2.X * b2.X; c01 += a2.X * b2.Y; c02 += a2.X * b2.Z; c03 += a2.X * b2.W; c04 += a2.X * b3.X; c05 += a2.X * b3.Y; c06 += a2.X * b3.Z; c07 += a2.X * b3.W;
                c10 += a2.Y * b2.X; c11 += a2.Y * b2.Y; c12 += a2.Y * b2.Z; c13 += a2.Y * b2.W; c14 += a2.Y * b3.X; c15 += a2.Y * b3.Y; c16 += a2.Y * b3.Z; c17 += a2.Y * b3.W;
                c20 += a2.Z * b2.X; c21 += a2.Z * b2.Y; c22 += a2.Z * b2.Z; c23 += a2.Z * b2.W; c24 += a2.Z * b3.X; c25 += a2.Z * b3.Y; c26 += a2.Z * b3.Z; c27 += a2.Z * b3.W;
                c30 += a2.W * b2.X; c31 += a2.W * b2.Y; c32 += a2.W * b2.Z; c33 += a2.W * b2.W; c34 += a2.W * b3.X; c35 += a2.W * b3.Y; c36 += a2.W * b3.Z; c37 += a2.W * b3.W;
                c40 += a3.X * b2.X; c41 += a3.X * b2.Y; c42 += a3.X * b2.Z; c43 += a3.X * b2.W; c44 += a3.X * b3.X; c45 += a3.X * b3.Y; c46 += a3.X * b3.Z; c47 += a3.X * b3.W;
                c50 += a3.Y * b2.X; c51 += a3.Y * b2.Y; c52 += a3.Y * b2.Z; c53 += a3.Y * b2.W; c54 += a3.Y * b3.X; c55 += a3.Y * b3.Y; c56 += a3.Y * b3.Z; c57 += a3.Y * b3.W;
                c60 += a3.Z * b2.X; c61 += a3.Z * b2.Y; c62 += a3.Z * b2.Z; c63 += a3.Z * b2.W; c64 += a3.Z * b3.X; c65 += a3.Z * b3.Y; c66 += a3.Z * b3.Z; c67 += a3.Z * b3.W;
                c70 += a3.W * b2.X; c71 += a3.W * b2.Y; c72 += a3.W * b2.Z; c73 += a3.W * b2.W; c74 += a3.W * b3.X; c75 += a3.W * b3.Y; c76 += a3.W * b3.Z; c77 += a3.W * b3.W;
            }

            if (next < steps)
            {
                StoreQuad(sa, sa4, aAlongK, cur ^ 1, aStore, ra);
                StoreQuad(sb, sb4, bAlongK, cur ^ 1, bStore, rb);
            }

            Group.Barrier();
        }

        int cBase = (split * t.SplitStride) + (batch * p.CBatchStride);
        int rowA = row0 + (ty * 4);
        int colA = col0 + (tx * 4);
        StoreRow(c, bias, pre, p, cBase, rowA + 0, colA, c00, c01, c02, c03, c04, c05, c06, c07);
        StoreRow(c, bias, pre, p, cBase, rowA + 1, colA, c10, c11, c12, c13, c14, c15, c16, c17);
        StoreRow(c, bias, pre, p, cBase, rowA + 2, colA, c20, c21, c22, c23, c24, c25, c26, c27);
        StoreRow(c, bias, pre, p, cBase, rowA + 3, colA, c30, c31, c32, c33, c34, c35, c36, c37);
        StoreRow(c, bias, pre, p, cBase, rowA + 64, colA, c40, c41, c42, c43, c44, c45, c46, c47);
        StoreRow(c, bias, pre, p, cBase, rowA + 65, colA, c50, c51, c52, c53, c54, c55, c56, c57);
        StoreRow(c, bias, pre, p, cBase, rowA + 66, colA, c60, c61, c62, c63, c64, c65, c66, c67);
        StoreRow(c, bias, pre, p, cBase, rowA + 67, colA, c70, c71, c72, c73, c74, c75, c76, c77);
    }

    // One quad of op(a) or op(b) for the k-tile at k0 of reduction step r: 4 consecutive floats of memory row
    // `outer` (plus k0 when the rows are k) from column `inner` (plus k0 when the columns are k); zeros past
    // the edges. With vector set the host has checked that every quad is 16-byte aligned and wholly inside or
    // outside, so one Float4 load (and one test) covers it.
    private static GemmFloat4 LoadQuad(ArrayView<float> x, ArrayView<GemmFloat4> x4, int vector, int batchStride, int reduceStride,
        int rowLength, bool alongK, int outer, int inner, int outerLimit, int innerLimit, int batch, int r, int k0)
    {
        int o = alongK ? outer : outer + k0;
        int i = alongK ? inner + k0 : inner;
        var v = default(GemmFloat4);
        if (o >= outerLimit)
        {
            return v;
        }

        int index = (batch * batchStride) + (r * reduceStride) + (o * rowLength) + i;
        if (vector != 0)
        {
            if (i < innerLimit)
            {
                v = x4[index >> 2];
            }

            return v;
        }

        v.X = i < innerLimit ? x[index] : 0f;
        v.Y = i + 1 < innerLimit ? x[index + 1] : 0f;
        v.Z = i + 2 < innerLimit ? x[index + 2] : 0f;
        v.W = i + 3 < innerLimit ? x[index + 3] : 0f;
        return v;
    }

    // A quad into shared buffer `buffer`: along k it becomes 4 rows of one column (index in floats), otherwise
    // one 16-byte store (index in Float4s).
    private static void StoreQuad(ArrayView<float> s, ArrayView<GemmFloat4> s4, bool alongK, int buffer, int index, GemmFloat4 v)
    {
        if (alongK)
        {
            index += buffer * SharedTile;
            s[index] = v.X;
            s[index + SharedPitch] = v.Y;
            s[index + (2 * SharedPitch)] = v.Z;
            s[index + (3 * SharedPitch)] = v.W;
        }
        else
        {
            s4[index + (buffer * (SharedTile / 4))] = v;
        }
    }

    // Split-K's second pass, one thread per element i of c [batch, m, n]: the splits' partial sums added in
    // order (deterministic), then the epilogue. work [split, batch, m, n].
    internal static void SplitReduceKernel(Index1D i, ArrayView<float> work, ArrayView<float> c,
        ArrayView<float> bias, ArrayView<float> pre, GemmDims p, GemmTiling t)
    {
        float sum = 0f;
        for (int s = 0; s < t.Splits; s++)
        {
            sum += work[(s * t.SplitStride) + i];
        }

        Finish(c, bias, pre, p, i, i % p.N, sum);
    }

    // One row of a thread's 8×8 block: columns col .. col + 3 and col + 64 .. col + 67.
    private static void StoreRow(ArrayView<float> c, ArrayView<float> bias, ArrayView<float> pre, GemmDims p,
        int cBase, int row, int col, float v0, float v1, float v2, float v3, float v4, float v5, float v6, float v7)
    {
        if (row >= p.M)
        {
            return;
        }

        int rowBase = cBase + (row * p.N);
        StoreAt(c, bias, pre, p, rowBase, col, v0);
        StoreAt(c, bias, pre, p, rowBase, col + 1, v1);
        StoreAt(c, bias, pre, p, rowBase, col + 2, v2);
        StoreAt(c, bias, pre, p, rowBase, col + 3, v3);
        StoreAt(c, bias, pre, p, rowBase, col + 64, v4);
        StoreAt(c, bias, pre, p, rowBase, col + 65, v5);
        StoreAt(c, bias, pre, p, rowBase, col + 66, v6);
        StoreAt(c, bias, pre, p, rowBase, col + 67, v7);
    }

    private static void StoreAt(ArrayView<float> c, ArrayView<float> bias, ArrayView<float> pre, GemmDims p, int rowBase, int col, float acc)
    {
        if (col < p.N)
        {
            Finish(c, bias, pre, p, rowBase + col, col, acc);
        }
    }

    // c[i] = act(alpha·acc + beta·c[i] + bias[col]); beta = 0 never reads c, which may hold NaN.
    private static void Finish(ArrayView<float> c, ArrayView<float> bias, ArrayView<float> pre, GemmDims p, int i, int col, float acc)
    {
        float v = p.Alpha * acc;
        if (p.Beta != 0f)
        {
            v += p.Beta * c[i];
        }

        if (p.HasBias != 0)
        {
            v += bias[col];
        }

        if (p.HasPre != 0)
        {
            pre[i] = v;
        }

        if (p.Activation != 0)
        {
            v = Gelu.Value(v, p.Activation - 1);
        }

        c[i] = v;
    }

    // One thread per 4×4 block of one batch's c, with no shared memory and no barriers (for ILGPU's CPU
    // accelerator, which simulates barriers with OS threads). a, b, c as described by p; bias [n], pre like c.
    // Rows and columns past the edge are clamped to the last one: they are computed, never stored.
    internal static void PerThreadKernel(Index1D index, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias, ArrayView<float> pre, GemmDims p)
    {
        int jBlock = index % p.NTiles;
        int rest = index / p.NTiles;
        int iBlock = rest % p.MTiles;
        int batch = rest / p.MTiles;
        int i0 = iBlock * BlockM;
        int j0 = jBlock * BlockN;

        // op(a)[i, k] = a[i·aRow + k·aStep], op(b)[k, j] = b[j·bCol + k·bStep] (plus the batch offsets).
        long aRow = p.TransA == 0 ? p.K : 1;
        long aStep = p.TransA == 0 ? 1 : p.M;
        long bCol = p.TransB == 0 ? 1 : p.K;
        long bStep = p.TransB == 0 ? p.N : 1;
        long ra0 = XMath.Min(i0, p.M - 1) * aRow;
        long ra1 = XMath.Min(i0 + 1, p.M - 1) * aRow;
        long ra2 = XMath.Min(i0 + 2, p.M - 1) * aRow;
        long ra3 = XMath.Min(i0 + 3, p.M - 1) * aRow;
        long cb0 = XMath.Min(j0, p.N - 1) * bCol;
        long cb1 = XMath.Min(j0 + 1, p.N - 1) * bCol;
        long cb2 = XMath.Min(j0 + 2, p.N - 1) * bCol;
        long cb3 = XMath.Min(j0 + 3, p.N - 1) * bCol;

        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f;
        float c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f;
        float c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;
        for (int r = 0; r < p.Reduce; r++)
        {
            long aBase = ((long)batch * p.ABatchStride) + ((long)r * p.AReduceStride);
            long bBase = ((long)batch * p.BBatchStride) + ((long)r * p.BReduceStride);
            for (int k = 0; k < p.K; k++)
            {
                long ak = aBase + (k * aStep);
                long bk = bBase + (k * bStep);
                float a0 = a[ak + ra0];
                float a1 = a[ak + ra1];
                float a2 = a[ak + ra2];
                float a3 = a[ak + ra3];
                float b0 = b[bk + cb0];
                float b1 = b[bk + cb1];
                float b2 = b[bk + cb2];
                float b3 = b[bk + cb3];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
        }

        long cBase = (long)batch * p.CBatchStride;
        StoreBlockRow(c, bias, pre, p, cBase, i0, j0, c00, c01, c02, c03);
        StoreBlockRow(c, bias, pre, p, cBase, i0 + 1, j0, c10, c11, c12, c13);
        StoreBlockRow(c, bias, pre, p, cBase, i0 + 2, j0, c20, c21, c22, c23);
        StoreBlockRow(c, bias, pre, p, cBase, i0 + 3, j0, c30, c31, c32, c33);
    }

    // One row of a 4×4 block: columns j0 to j0 + 3.
    private static void StoreBlockRow(ArrayView<float> c, ArrayView<float> bias, ArrayView<float> pre, GemmDims p,
        long cBase, int row, int j0, float v0, float v1, float v2, float v3)
    {
        if (row >= p.M)
        {
            return;
        }

        long rowBase = cBase + ((long)row * p.N);
        StoreOne(c, bias, pre, p, rowBase, j0, v0);
        StoreOne(c, bias, pre, p, rowBase, j0 + 1, v1);
        StoreOne(c, bias, pre, p, rowBase, j0 + 2, v2);
        StoreOne(c, bias, pre, p, rowBase, j0 + 3, v3);
    }

    // c = act(alpha·acc + beta·c + bias); beta = 0 never reads c, which may hold NaN.
    private static void StoreOne(ArrayView<float> c, ArrayView<float> bias, ArrayView<float> pre, GemmDims p, long rowBase, int col, float acc)
    {
        if (col >= p.N)
        {
            return;
        }

        long i = rowBase + col;
        float v = p.Alpha * acc;
        if (p.Beta != 0f)
        {
            v += p.Beta * c[i];
        }

        if (p.HasBias != 0)
        {
            v += bias[col];
        }

        if (p.HasPre != 0)
        {
            pre[i] = v;
        }

        if (p.Activation != 0)
        {
            v = Gelu.Value(v, p.Activation - 1);
        }

        c[i] = v;
    }
}

/// <summary>How the tiled GEMM kernel is launched: the k-split and which operands it may read as 16-byte vectors.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GemmTiling
{
    /// <summary>Slices of k, each summed by its own groups (1: no split-K).</summary>
    public int Splits;

    /// <summary>The length of k each split covers, a multiple of <see cref="Gemm.TileK"/> when split.</summary>
    public int KChunk;

    /// <summary>Floats between two splits' partial sums in the workspace (batch·m·n); 0 without a split.</summary>
    public int SplitStride;

    /// <summary>1 when every quad of a the kernel reads is 16-byte aligned and wholly in or out of bounds.</summary>
    public int VectorA;

    /// <summary>As <see cref="VectorA"/>, for b.</summary>
    public int VectorB;
}

/// <summary>Four floats, the element type of the views the tiled GEMM kernel reads as 16-byte vectors.</summary>
[StructLayout(LayoutKind.Sequential, Size = 16)]
internal struct GemmFloat4
{
    public float X;
    public float Y;
    public float Z;
    public float W;
}
