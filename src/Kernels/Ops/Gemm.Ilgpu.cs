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

    // Float4s from a thread's first fragment of a k-tile to just past its last (kk = 7, second half).
    internal const int FragmentSpan = ((TileK - 1) * SharedPitch4) + 16 + 1;

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
        // Per thread and hoisted: where its quad starts at k = 0 (origin), how far one step of k moves it, and
        // how many of its 4 floats lie inside m or n (edge; along k only 0 or 4, k is tested per tile).
        bool aAlongK = p.TransA == 0;
        bool bAlongK = p.TransB != 0;
        int aLane = aAlongK ? tid >> 1 : (tid & 31) * 4;     // row (or column) in the tile
        int aKk = aAlongK ? (tid & 1) * 4 : tid >> 5;        // kk in the tile
        int bLane = bAlongK ? tid >> 1 : (tid & 31) * 4;
        int bKk = bAlongK ? (tid & 1) * 4 : tid >> 5;
        int aKStride = aAlongK ? 1 : p.M;
        int bKStride = bAlongK ? 1 : p.N;
        int aOrigin = (batch * p.ABatchStride) + (aAlongK ? (row0 + aLane) * p.K : row0 + aLane);
        int bOrigin = (batch * p.BBatchStride) + (bAlongK ? (col0 + bLane) * p.K : col0 + bLane);
        int aEdge = aAlongK ? (row0 + aLane < p.M ? 4 : 0) : XMath.Clamp(p.M - (row0 + aLane), 0, 4);
        int bEdge = bAlongK ? (col0 + bLane < p.N ? 4 : 0) : XMath.Clamp(p.N - (col0 + bLane), 0, 4);
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
        int k0 = kStart;
        var ra = default(GemmFloat4);
        var rb = default(GemmFloat4);
        if (steps > 0)
        {
            ra = LoadQuad(a, a4, t.VectorA, aAlongK, aOrigin, aKStride, aEdge, kStart + aKk, kEnd);
            rb = LoadQuad(b, b4, t.VectorB, bAlongK, bOrigin, bKStride, bEdge, kStart + bKk, kEnd);
            StoreQuad(sa, sa4, aAlongK, 0, aStore, ra);
            StoreQuad(sb, sb4, bAlongK, 0, bStore, rb);
        }

        Group.Barrier();
        for (int step = 0; step < steps; step++)
        {
            int cur = step & 1;

            // Fetch the next k-tile into registers while this one is multiplied out of shared memory.
            // Past the chunk's last k-tile the next reduction step starts again at kStart.
            int next = step + 1;
            if (next < steps)
            {
                k0 += TileK;
                if (k0 >= kEnd)
                {
                    k0 = kStart;
                    aOrigin += p.AReduceStride;
                    bOrigin += p.BReduceStride;
                }

                ra = LoadQuad(a, a4, t.VectorA, aAlongK, aOrigin, aKStride, aEdge, k0 + aKk, kEnd);
                rb = LoadQuad(b, b4, t.VectorB, bAlongK, bOrigin, bKStride, bEdge, k0 + bKk, kEnd);
            }

            // The whole k-tile unrolled; reading through views that start at this thread's fragments gives every
            // shared read a constant offset (an immediate in the load) instead of an address computed per read.
            var fa = sa4.SubView((cur * (TileK * SharedPitch4)) + aRead, FragmentSpan);
            var fb = sb4.SubView((cur * (TileK * SharedPitch4)) + bRead, FragmentSpan);
            var a00 = fa[0];
            var a01 = fa[16];
            var b00 = fb[0];
            var b01 = fb[16];
            c00 += a00.X * b00.X; c01 += a00.X * b00.Y; c02 += a00.X * b00.Z; c03 += a00.X * b00.W; c04 += a00.X * b01.X; c05 += a00.X * b01.Y; c06 += a00.X * b01.Z; c07 += a00.X * b01.W;
            c10 += a00.Y * b00.X; c11 += a00.Y * b00.Y; c12 += a00.Y * b00.Z; c13 += a00.Y * b00.W; c14 += a00.Y * b01.X; c15 += a00.Y * b01.Y; c16 += a00.Y * b01.Z; c17 += a00.Y * b01.W;
            c20 += a00.Z * b00.X; c21 += a00.Z * b00.Y; c22 += a00.Z * b00.Z; c23 += a00.Z * b00.W; c24 += a00.Z * b01.X; c25 += a00.Z * b01.Y; c26 += a00.Z * b01.Z; c27 += a00.Z * b01.W;
            c30 += a00.W * b00.X; c31 += a00.W * b00.Y; c32 += a00.W * b00.Z; c33 += a00.W * b00.W; c34 += a00.W * b01.X; c35 += a00.W * b01.Y; c36 += a00.W * b01.Z; c37 += a00.W * b01.W;
            c40 += a01.X * b00.X; c41 += a01.X * b00.Y; c42 += a01.X * b00.Z; c43 += a01.X * b00.W; c44 += a01.X * b01.X; c45 += a01.X * b01.Y; c46 += a01.X * b01.Z; c47 += a01.X * b01.W;
            c50 += a01.Y * b00.X; c51 += a01.Y * b00.Y; c52 += a01.Y * b00.Z; c53 += a01.Y * b00.W; c54 += a01.Y * b01.X; c55 += a01.Y * b01.Y; c56 += a01.Y * b01.Z; c57 += a01.Y * b01.W;
            c60 += a01.Z * b00.X; c61 += a01.Z * b00.Y; c62 += a01.Z * b00.Z; c63 += a01.Z * b00.W; c64 += a01.Z * b01.X; c65 += a01.Z * b01.Y; c66 += a01.Z * b01.Z; c67 += a01.Z * b01.W;
            c70 += a01.W * b00.X; c71 += a01.W * b00.Y; c72 += a01.W * b00.Z; c73 += a01.W * b00.W; c74 += a01.W * b01.X; c75 += a01.W * b01.Y; c76 += a01.W * b01.Z; c77 += a01.W * b01.W;
            var a10 = fa[33];
            var a11 = fa[49];
            var b10 = fb[33];
            var b11 = fb[49];
            c00 += a10.X * b10.X; c01 += a10.X * b10.Y; c02 += a10.X * b10.Z; c03 += a10.X * b10.W; c04 += a10.X * b11.X; c05 += a10.X * b11.Y; c06 += a10.X * b11.Z; c07 += a10.X * b11.W;
            c10 += a10.Y * b10.X; c11 += a10.Y * b10.Y; c12 += a10.Y * b10.Z; c13 += a10.Y * b10.W; c14 += a10.Y * b11.X; c15 += a10.Y * b11.Y; c16 += a10.Y * b11.Z; c17 += a10.Y * b11.W;
            c20 += a10.Z * b10.X; c21 += a10.Z * b10.Y; c22 += a10.Z * b10.Z; c23 += a10.Z * b10.W; c24 += a10.Z * b11.X; c25 += a10.Z * b11.Y; c26 += a10.Z * b11.Z; c27 += a10.Z * b11.W;
            c30 += a10.W * b10.X; c31 += a10.W * b10.Y; c32 += a10.W * b10.Z; c33 += a10.W * b10.W; c34 += a10.W * b11.X; c35 += a10.W * b11.Y; c36 += a10.W * b11.Z; c37 += a10.W * b11.W;
            c40 += a11.X * b10.X; c41 += a11.X * b10.Y; c42 += a11.X * b10.Z; c43 += a11.X * b10.W; c44 += a11.X * b11.X; c45 += a11.X * b11.Y; c46 += a11.X * b11.Z; c47 += a11.X * b11.W;
            c50 += a11.Y * b10.X; c51 += a11.Y * b10.Y; c52 += a11.Y * b10.Z; c53 += a11.Y * b10.W; c54 += a11.Y * b11.X; c55 += a11.Y * b11.Y; c56 += a11.Y * b11.Z; c57 += a11.Y * b11.W;
            c60 += a11.Z * b10.X; c61 += a11.Z * b10.Y; c62 += a11.Z * b10.Z; c63 += a11.Z * b10.W; c64 += a11.Z * b11.X; c65 += a11.Z * b11.Y; c66 += a11.Z * b11.Z; c67 += a11.Z * b11.W;
            c70 += a11.W * b10.X; c71 += a11.W * b10.Y; c72 += a11.W * b10.Z; c73 += a11.W * b10.W; c74 += a11.W * b11.X; c75 += a11.W * b11.Y; c76 += a11.W * b11.Z; c77 += a11.W * b11.W;
            var a20 = fa[66];
            var a21 = fa[82];
            var b20 = fb[66];
            var b21 = fb[82];
            c00 += a20.X * b20.X; c01 += a20.X * b20.Y; c02 += a20.X * b20.Z; c03 += a20.X * b20.W; c04 += a20.X * b21.X; c05 += a20.X * b21.Y; c06 += a20.X * b21.Z; c07 += a20.X * b21.W;
            c10 += a20.Y * b20.X; c11 += a20.Y * b20.Y; c12 += a20.Y * b20.Z; c13 += a20.Y * b20.W; c14 += a20.Y * b21.X; c15 += a20.Y * b21.Y; c16 += a20.Y * b21.Z; c17 += a20.Y * b21.W;
            c20 += a20.Z * b20.X; c21 += a20.Z * b20.Y; c22 += a20.Z * b20.Z; c23 += a20.Z * b20.W; c24 += a20.Z * b21.X; c25 += a20.Z * b21.Y; c26 += a20.Z * b21.Z; c27 += a20.Z * b21.W;
            c30 += a20.W * b20.X; c31 += a20.W * b20.Y; c32 += a20.W * b20.Z; c33 += a20.W * b20.W; c34 += a20.W * b21.X; c35 += a20.W * b21.Y; c36 += a20.W * b21.Z; c37 += a20.W * b21.W;
            c40 += a21.X * b20.X; c41 += a21.X * b20.Y; c42 += a21.X * b20.Z; c43 += a21.X * b20.W; c44 += a21.X * b21.X; c45 += a21.X * b21.Y; c46 += a21.X * b21.Z; c47 += a21.X * b21.W;
            c50 += a21.Y * b20.X; c51 += a21.Y * b20.Y; c52 += a21.Y * b20.Z; c53 += a21.Y * b20.W; c54 += a21.Y * b21.X; c55 += a21.Y * b21.Y; c56 += a21.Y * b21.Z; c57 += a21.Y * b21.W;
            c60 += a21.Z * b20.X; c61 += a21.Z * b20.Y; c62 += a21.Z * b20.Z; c63 += a21.Z * b20.W; c64 += a21.Z * b21.X; c65 += a21.Z * b21.Y; c66 += a21.Z * b21.Z; c67 += a21.Z * b21.W;
            c70 += a21.W * b20.X; c71 += a21.W * b20.Y; c72 += a21.W * b20.Z; c73 += a21.W * b20.W; c74 += a21.W * b21.X; c75 += a21.W * b21.Y; c76 += a21.W * b21.Z; c77 += a21.W * b21.W;
            var a30 = fa[99];
            var a31 = fa[115];
            var b30 = fb[99];
            var b31 = fb[115];
            c00 += a30.X * b30.X; c01 += a30.X * b30.Y; c02 += a30.X * b30.Z; c03 += a30.X * b30.W; c04 += a30.X * b31.X; c05 += a30.X * b31.Y; c06 += a30.X * b31.Z; c07 += a30.X * b31.W;
            c10 += a30.Y * b30.X; c11 += a30.Y * b30.Y; c12 += a30.Y * b30.Z; c13 += a30.Y * b30.W; c14 += a30.Y * b31.X; c15 += a30.Y * b31.Y; c16 += a30.Y * b31.Z; c17 += a30.Y * b31.W;
            c20 += a30.Z * b30.X; c21 += a30.Z * b30.Y; c22 += a30.Z * b30.Z; c23 += a30.Z * b30.W; c24 += a30.Z * b31.X; c25 += a30.Z * b31.Y; c26 += a30.Z * b31.Z; c27 += a30.Z * b31.W;
            c30 += a30.W * b30.X; c31 += a30.W * b30.Y; c32 += a30.W * b30.Z; c33 += a30.W * b30.W; c34 += a30.W * b31.X; c35 += a30.W * b31.Y; c36 += a30.W * b31.Z; c37 += a30.W * b31.W;
            c40 += a31.X * b30.X; c41 += a31.X * b30.Y; c42 += a31.X * b30.Z; c43 += a31.X * b30.W; c44 += a31.X * b31.X; c45 += a31.X * b31.Y; c46 += a31.X * b31.Z; c47 += a31.X * b31.W;
            c50 += a31.Y * b30.X; c51 += a31.Y * b30.Y; c52 += a31.Y * b30.Z; c53 += a31.Y * b30.W; c54 += a31.Y * b31.X; c55 += a31.Y * b31.Y; c56 += a31.Y * b31.Z; c57 += a31.Y * b31.W;
            c60 += a31.Z * b30.X; c61 += a31.Z * b30.Y; c62 += a31.Z * b30.Z; c63 += a31.Z * b30.W; c64 += a31.Z * b31.X; c65 += a31.Z * b31.Y; c66 += a31.Z * b31.Z; c67 += a31.Z * b31.W;
            c70 += a31.W * b30.X; c71 += a31.W * b30.Y; c72 += a31.W * b30.Z; c73 += a31.W * b30.W; c74 += a31.W * b31.X; c75 += a31.W * b31.Y; c76 += a31.W * b31.Z; c77 += a31.W * b31.W;
            var a40 = fa[132];
            var a41 = fa[148];
            var b40 = fb[132];
            var b41 = fb[148];
            c00 += a40.X * b40.X; c01 += a40.X * b40.Y; c02 += a40.X * b40.Z; c03 += a40.X * b40.W; c04 += a40.X * b41.X; c05 += a40.X * b41.Y; c06 += a40.X * b41.Z; c07 += a40.X * b41.W;
            c10 += a40.Y * b40.X; c11 += a40.Y * b40.Y; c12 += a40.Y * b40.Z; c13 += a40.Y * b40.W; c14 += a40.Y * b41.X; c15 += a40.Y * b41.Y; c16 += a40.Y * b41.Z; c17 += a40.Y * b41.W;
            c20 += a40.Z * b40.X; c21 += a40.Z * b40.Y; c22 += a40.Z * b40.Z; c23 += a40.Z * b40.W; c24 += a40.Z * b41.X; c25 += a40.Z * b41.Y; c26 += a40.Z * b41.Z; c27 += a40.Z * b41.W;
            c30 += a40.W * b40.X; c31 += a40.W * b40.Y; c32 += a40.W * b40.Z; c33 += a40.W * b40.W; c34 += a40.W * b41.X; c35 += a40.W * b41.Y; c36 += a40.W * b41.Z; c37 += a40.W * b41.W;
            c40 += a41.X * b40.X; c41 += a41.X * b40.Y; c42 += a41.X * b40.Z; c43 += a41.X * b40.W; c44 += a41.X * b41.X; c45 += a41.X * b41.Y; c46 += a41.X * b41.Z; c47 += a41.X * b41.W;
            c50 += a41.Y * b40.X; c51 += a41.Y * b40.Y; c52 += a41.Y * b40.Z; c53 += a41.Y * b40.W; c54 += a41.Y * b41.X; c55 += a41.Y * b41.Y; c56 += a41.Y * b41.Z; c57 += a41.Y * b41.W;
            c60 += a41.Z * b40.X; c61 += a41.Z * b40.Y; c62 += a41.Z * b40.Z; c63 += a41.Z * b40.W; c64 += a41.Z * b41.X; c65 += a41.Z * b41.Y; c66 += a41.Z * b41.Z; c67 += a41.Z * b41.W;
            c70 += a41.W * b40.X; c71 += a41.W * b40.Y; c72 += a41.W * b40.Z; c73 += a41.W * b40.W; c74 += a41.W * b41.X; c75 += a41.W * b41.Y; c76 += a41.W * b41.Z; c77 += a41.W * b41.W;
            var a50 = fa[165];
            var a51 = fa[181];
            var b50 = fb[165];
            var b51 = fb[181];
            c00 += a50.X * b50.X; c01 += a50.X * b50.Y; c02 += a50.X * b50.Z; c03 += a50.X * b50.W; c04 += a50.X * b51.X; c05 += a50.X * b51.Y; c06 += a50.X * b51.Z; c07 += a50.X * b51.W;
            c10 += a50.Y * b50.X; c11 += a50.Y * b50.Y; c12 += a50.Y * b50.Z; c13 += a50.Y * b50.W; c14 += a50.Y * b51.X; c15 += a50.Y * b51.Y; c16 += a50.Y * b51.Z; c17 += a50.Y * b51.W;
            c20 += a50.Z * b50.X; c21 += a50.Z * b50.Y; c22 += a50.Z * b50.Z; c23 += a50.Z * b50.W; c24 += a50.Z * b51.X; c25 += a50.Z * b51.Y; c26 += a50.Z * b51.Z; c27 += a50.Z * b51.W;
            c30 += a50.W * b50.X; c31 += a50.W * b50.Y; c32 += a50.W * b50.Z; c33 += a50.W * b50.W; c34 += a50.W * b51.X; c35 += a50.W * b51.Y; c36 += a50.W * b51.Z; c37 += a50.W * b51.W;
            c40 += a51.X * b50.X; c41 += a51.X * b50.Y; c42 += a51.X * b50.Z; c43 += a51.X * b50.W; c44 += a51.X * b51.X; c45 += a51.X * b51.Y; c46 += a51.X * b51.Z; c47 += a51.X * b51.W;
            c50 += a51.Y * b50.X; c51 += a51.Y * b50.Y; c52 += a51.Y * b50.Z; c53 += a51.Y * b50.W; c54 += a51.Y * b51.X; c55 += a51.Y * b51.Y; c56 += a51.Y * b51.Z; c57 += a51.Y * b51.W;
            c60 += a51.Z * b50.X; c61 += a51.Z * b50.Y; c62 += a51.Z * b50.Z; c63 += a51.Z * b50.W; c64 += a51.Z * b51.X; c65 += a51.Z * b51.Y; c66 += a51.Z * b51.Z; c67 += a51.Z * b51.W;
            c70 += a51.W * b50.X; c71 += a51.W * b50.Y; c72 += a51.W * b50.Z; c73 += a51.W * b50.W; c74 += a51.W * b51.X; c75 += a51.W * b51.Y; c76 += a51.W * b51.Z; c77 += a51.W * b51.W;
            var a60 = fa[198];
            var a61 = fa[214];
            var b60 = fb[198];
            var b61 = fb[214];
            c00 += a60.X * b60.X; c01 += a60.X * b60.Y; c02 += a60.X * b60.Z; c03 += a60.X * b60.W; c04 += a60.X * b61.X; c05 += a60.X * b61.Y; c06 += a60.X * b61.Z; c07 += a60.X * b61.W;
            c10 += a60.Y * b60.X; c11 += a60.Y * b60.Y; c12 += a60.Y * b60.Z; c13 += a60.Y * b60.W; c14 += a60.Y * b61.X; c15 += a60.Y * b61.Y; c16 += a60.Y * b61.Z; c17 += a60.Y * b61.W;
            c20 += a60.Z * b60.X; c21 += a60.Z * b60.Y; c22 += a60.Z * b60.Z; c23 += a60.Z * b60.W; c24 += a60.Z * b61.X; c25 += a60.Z * b61.Y; c26 += a60.Z * b61.Z; c27 += a60.Z * b61.W;
            c30 += a60.W * b60.X; c31 += a60.W * b60.Y; c32 += a60.W * b60.Z; c33 += a60.W * b60.W; c34 += a60.W * b61.X; c35 += a60.W * b61.Y; c36 += a60.W * b61.Z; c37 += a60.W * b61.W;
            c40 += a61.X * b60.X; c41 += a61.X * b60.Y; c42 += a61.X * b60.Z; c43 += a61.X * b60.W; c44 += a61.X * b61.X; c45 += a61.X * b61.Y; c46 += a61.X * b61.Z; c47 += a61.X * b61.W;
            c50 += a61.Y * b60.X; c51 += a61.Y * b60.Y; c52 += a61.Y * b60.Z; c53 += a61.Y * b60.W; c54 += a61.Y * b61.X; c55 += a61.Y * b61.Y; c56 += a61.Y * b61.Z; c57 += a61.Y * b61.W;
            c60 += a61.Z * b60.X; c61 += a61.Z * b60.Y; c62 += a61.Z * b60.Z; c63 += a61.Z * b60.W; c64 += a61.Z * b61.X; c65 += a61.Z * b61.Y; c66 += a61.Z * b61.Z; c67 += a61.Z * b61.W;
            c70 += a61.W * b60.X; c71 += a61.W * b60.Y; c72 += a61.W * b60.Z; c73 += a61.W * b60.W; c74 += a61.W * b61.X; c75 += a61.W * b61.Y; c76 += a61.W * b61.Z; c77 += a61.W * b61.W;
            var a70 = fa[231];
            var a71 = fa[247];
            var b70 = fb[231];
            var b71 = fb[247];
            c00 += a70.X * b70.X; c01 += a70.X * b70.Y; c02 += a70.X * b70.Z; c03 += a70.X * b70.W; c04 += a70.X * b71.X; c05 += a70.X * b71.Y; c06 += a70.X * b71.Z; c07 += a70.X * b71.W;
            c10 += a70.Y * b70.X; c11 += a70.Y * b70.Y; c12 += a70.Y * b70.Z; c13 += a70.Y * b70.W; c14 += a70.Y * b71.X; c15 += a70.Y * b71.Y; c16 += a70.Y * b71.Z; c17 += a70.Y * b71.W;
            c20 += a70.Z * b70.X; c21 += a70.Z * b70.Y; c22 += a70.Z * b70.Z; c23 += a70.Z * b70.W; c24 += a70.Z * b71.X; c25 += a70.Z * b71.Y; c26 += a70.Z * b71.Z; c27 += a70.Z * b71.W;
            c30 += a70.W * b70.X; c31 += a70.W * b70.Y; c32 += a70.W * b70.Z; c33 += a70.W * b70.W; c34 += a70.W * b71.X; c35 += a70.W * b71.Y; c36 += a70.W * b71.Z; c37 += a70.W * b71.W;
            c40 += a71.X * b70.X; c41 += a71.X * b70.Y; c42 += a71.X * b70.Z; c43 += a71.X * b70.W; c44 += a71.X * b71.X; c45 += a71.X * b71.Y; c46 += a71.X * b71.Z; c47 += a71.X * b71.W;
            c50 += a71.Y * b70.X; c51 += a71.Y * b70.Y; c52 += a71.Y * b70.Z; c53 += a71.Y * b70.W; c54 += a71.Y * b71.X; c55 += a71.Y * b71.Y; c56 += a71.Y * b71.Z; c57 += a71.Y * b71.W;
            c60 += a71.Z * b70.X; c61 += a71.Z * b70.Y; c62 += a71.Z * b70.Z; c63 += a71.Z * b70.W; c64 += a71.Z * b71.X; c65 += a71.Z * b71.Y; c66 += a71.Z * b71.Z; c67 += a71.Z * b71.W;
            c70 += a71.W * b70.X; c71 += a71.W * b70.Y; c72 += a71.W * b70.Z; c73 += a71.W * b70.W; c74 += a71.W * b71.X; c75 += a71.W * b71.Y; c76 += a71.W * b71.Z; c77 += a71.W * b71.W;

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

    // One quad of op(a) or op(b) at k (its first float's k when alongK): 4 consecutive floats from
    // origin + k·kStride, of which `edge` lie inside m or n; zeros past the edges. With vector set the host
    // has checked that every quad is 16-byte aligned and wholly inside or outside, so one Float4 load covers it.
    private static GemmFloat4 LoadQuad(ArrayView<float> x, ArrayView<GemmFloat4> x4, int vector, bool alongK,
        int origin, int kStride, int edge, int k, int kEnd)
    {
        int count = alongK ? XMath.Min(kEnd - k, edge) : (k < kEnd ? edge : 0);
        int index = origin + (k * kStride);
        var v = default(GemmFloat4);
        if (vector != 0)
        {
            if (count > 0)
            {
                v = x4[index >> 2];
            }

            return v;
        }

        v.X = count > 0 ? x[index] : 0f;
        v.Y = count > 1 ? x[index + 1] : 0f;
        v.Z = count > 2 ? x[index + 2] : 0f;
        v.W = count > 3 ? x[index + 3] : 0f;
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
