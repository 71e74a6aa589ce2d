using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>GEMM on ILGPU: a shared-memory tiled kernel on GPUs, a barrier-free kernel for ILGPU's CPU accelerator.</summary>
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

        using var tiled = Launch("Gemm.Tiled", static acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmDims>(Gemm.TiledKernel));
        d.MTiles = (d.M + Gemm.TileM - 1) / Gemm.TileM;
        d.NTiles = (d.N + Gemm.TileN - 1) / Gemm.TileN;
        int groups = checked(d.MTiles * d.NTiles * d.Batch);
        tiled.Kernel(tiled.Stream, new KernelConfig(groups, Gemm.GroupThreads), aView, bView, cView, biasView, preView, d);
    }

    // Nothing to pack: the kernels read the weight as it is.
    internal override void GemmPrepack(PackedWeight weight)
    {
    }
}

/// <summary>GEMM's ILGPU kernels.</summary>
public static partial class Gemm
{
    // ILGPU tiling: a group of 16×16 threads computes a 64×64 tile of c, each thread a 4×4 block
    // strided by 16 so that neighbouring threads touch neighbouring columns; K advances 16 at a time.
    internal const int TileM = 64;
    internal const int TileN = 64;
    internal const int TileK = 16;
    internal const int GroupThreads = 256;

    // Row pitch of the shared tiles: 66 ≡ 2 (mod 32 banks) keeps the transposing tile stores free of bank conflicts.
    internal const int SharedPitch = 66;

    // The barrier-free kernel: one thread per 4×4 block of c.
    internal const int BlockM = 4;
    internal const int BlockN = 4;

    // On ILGPU's CPU accelerator, problems up to this many multiply-adds keep the tiled kernel (so tests of tiny
    // shapes still run it there); larger ones take the barrier-free kernel.
    internal const long SimulatorTiledWork = 1 << 15;

    // One group per 64×64 tile of one batch's c: a, b, c as described by p, bias [n], pre like c.
    internal static void TiledKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias, ArrayView<float> pre, GemmDims p)
    {
        var sa = SharedMemory.Allocate<float>(TileK * SharedPitch); // op(a) tile, [kk][row]
        var sb = SharedMemory.Allocate<float>(TileK * SharedPitch); // op(b) tile, [kk][col]
        int tid = Group.IdxX;
        int tx = tid % 16;
        int ty = tid / 16;
        int g = Grid.IdxX;
        int nTile = g % p.NTiles;
        int rest = g / p.NTiles;
        int mTile = rest % p.MTiles;
        int batch = rest / p.MTiles;
        int row0 = mTile * TileM;
        int col0 = nTile * TileN;

        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f;
        float c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f;
        float c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;

        for (int r = 0; r < p.Reduce; r++)
        {
            long aBase = ((long)batch * p.ABatchStride) + ((long)r * p.AReduceStride);
            long bBase = ((long)batch * p.BBatchStride) + ((long)r * p.BReduceStride);
            for (int k0 = 0; k0 < p.K; k0 += TileK)
            {
                // Each thread stages 4 elements of each tile; the index order follows memory so loads coalesce.
                for (int l = 0; l < 4; l++)
                {
                    int idx = tid + (l * GroupThreads);
                    int rr;
                    int kk;
                    if (p.TransA == 0)
                    {
                        rr = idx / TileK; // a [m, k]: consecutive threads walk k
                        kk = idx % TileK;
                    }
                    else
                    {
                        kk = idx / TileM; // a [k, m]: consecutive threads walk m
                        rr = idx % TileM;
                    }

                    int gi = row0 + rr;
                    int gk = k0 + kk;
                    float v = 0f;
                    if (gi < p.M && gk < p.K)
                    {
                        v = p.TransA == 0 ? a[aBase + ((long)gi * p.K) + gk] : a[aBase + ((long)gk * p.M) + gi];
                    }

                    sa[(kk * SharedPitch) + rr] = v;

                    int cc;
                    if (p.TransB == 0)
                    {
                        kk = idx / TileN; // b [k, n]: consecutive threads walk n
                        cc = idx % TileN;
                    }
                    else
                    {
                        cc = idx / TileK; // b [n, k]: consecutive threads walk k
                        kk = idx % TileK;
                    }

                    int gj = col0 + cc;
                    gk = k0 + kk;
                    float w = 0f;
                    if (gj < p.N && gk < p.K)
                    {
                        w = p.TransB == 0 ? b[bBase + ((long)gk * p.N) + gj] : b[bBase + ((long)gj * p.K) + gk];
                    }

                    sb[(kk * SharedPitch) + cc] = w;
                }

                Group.Barrier();
                for (int kk = 0; kk < TileK; kk++)
                {
                    int ra = (kk * SharedPitch) + ty;
                    int rb = (kk * SharedPitch) + tx;
                    float a0 = sa[ra];
                    float a1 = sa[ra + 16];
                    float a2 = sa[ra + 32];
                    float a3 = sa[ra + 48];
                    float b0 = sb[rb];
                    float b1 = sb[rb + 16];
                    float b2 = sb[rb + 32];
                    float b3 = sb[rb + 48];
                    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
                }

                Group.Barrier();
            }
        }

        long cBase = (long)batch * p.CBatchStride;
        int r0 = row0 + ty;
        int j0 = col0 + tx;
        Store(c, bias, pre, p, cBase, r0, j0, c00, c01, c02, c03);
        Store(c, bias, pre, p, cBase, r0 + 16, j0, c10, c11, c12, c13);
        Store(c, bias, pre, p, cBase, r0 + 32, j0, c20, c21, c22, c23);
        Store(c, bias, pre, p, cBase, r0 + 48, j0, c30, c31, c32, c33);
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

    // One row of a thread's 4×4 block: columns j0, j0 + 16, j0 + 32, j0 + 48.
    private static void Store(ArrayView<float> c, ArrayView<float> bias, ArrayView<float> pre, GemmDims p,
        long cBase, int row, int j0, float v0, float v1, float v2, float v3)
    {
        if (row >= p.M)
        {
            return;
        }

        long rowBase = cBase + ((long)row * p.N);
        StoreOne(c, bias, pre, p, rowBase, j0, v0);
        StoreOne(c, bias, pre, p, rowBase, j0 + 16, v1);
        StoreOne(c, bias, pre, p, rowBase, j0 + 32, v2);
        StoreOne(c, bias, pre, p, rowBase, j0 + 48, v3);
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
