using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>Which register-blocked micro-kernel the CPU GEMM uses.</summary>
internal enum GemmIsa
{
    /// <summary>8×32 tiles in Vector512 registers (AVX-512).</summary>
    Vector512,

    /// <summary>6×16 tiles in Vector256 registers (AVX2 machines).</summary>
    Vector256,
}

/// <summary>
/// The managed CPU GEMM behind <see cref="Gemm"/>: panels of <c>op(a)</c> and <c>op(b)</c> are packed into
/// contiguous strips (transposes are absorbed there), a register-blocked FMA micro-kernel multiplies one
/// strip pair at a time, and the epilogue (alpha, beta, bias, GELU, pre-activation) is applied as each
/// micro-tile is stored. The Vector512 kernel skips both copies where the layout allows: it reads the rows
/// of a row-major <c>a</c> in place, and packs a row-major <c>b</c> while its first strip of rows reads it.
/// Blocking follows the caches of a Zen 4 core: a k-block of one A strip (≤ 16 KB) stays in L1 while it
/// meets every B strip of a packed B block (≤ 768 KB) held in L2. Work is split once, over threads, along
/// batches or along the larger of m and n.
/// </summary>
internal static unsafe partial class GemmCpu
{
    // Micro-tile sizes: rows of op(a) × columns of op(b).
    private const int Mr512 = 8;
    private const int Nr512 = 32;
    private const int Mr256 = 6;
    private const int Nr256 = 16;

    // Cache blocking (elements): kc × mr A strips in L1, kc × nc B blocks in L2, mc × kc A blocks in L3.
    private const int KcMax = 512;
    private const int NcMax = 384;
    private const int McMax = 1008; // a multiple of both micro-tile heights

    // Widest row-major b (elements per row) that the kernel packs as it reads: rows ≤ 2 KB apart.
    private const int PackAsReadMaxRowLength = 512;

    // Below these amounts of work, threads or packing cost more than they save.
    private const long ParallelFlops = 1L << 21;
    private const long BatchSplitFlops = 1L << 24;
    private const int DirectMaxRows = 7;
    private const int DirectMaxColumns = 7;

    /// <summary>The micro-kernel for this machine: Vector512 where it is accelerated, else Vector256.</summary>
    public static GemmIsa DefaultIsa => Vector512.IsHardwareAccelerated ? GemmIsa.Vector512 : GemmIsa.Vector256;

    /// <summary>Rows of op(a) × columns of op(b) of one micro-tile.</summary>
    public static (int Mr, int Nr) TileOf(GemmIsa isa) => isa == GemmIsa.Vector512 ? (Mr512, Nr512) : (Mr256, Nr256);

    /// <summary>The k-block length the packed path uses for a depth of <paramref name="k"/>: even splits of at most <see cref="KcMax"/>.</summary>
    public static int KBlock(int k) => k == 0 ? 1 : Ceiling(k, Ceiling(k, KcMax));

    /// <summary>
    /// Runs one validated problem; spans are the whole tensors (bias and pre empty when absent). With
    /// <paramref name="packed"/> (packed for <paramref name="isa"/>), the packed path reads its strips of b
    /// instead of packing b on every call.
    /// </summary>
    public static void Run(CpuDevice device, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c,
        ReadOnlySpan<float> bias, Span<float> pre, in GemmDims d, GemmIsa isa, PackedWeight? packed = null)
    {
        fixed (float* pa = a, pb = b, pc = c, pbias = bias, ppre = pre)
        {
            var job = new Job
            {
                A = pa,
                B = pb,
                C = pc,
                Bias = d.HasBias != 0 ? pbias : null,
                Pre = d.HasPre != 0 ? ppre : null,
                PackedB = packed is not null && packed.Isa == isa ? packed.Strips : null,
                D = d,
                Isa = isa,
                Parts = 1,
            };

            long flopsPerBatch = 2L * d.M * d.N * d.K * Math.Max(d.Reduce, 1);
            int threads = device.Threads;
            if (threads == 1 || flopsPerBatch * d.Batch < ParallelFlops)
            {
                for (int batch = 0; batch < d.Batch; batch++)
                {
                    job.Execute(batch);
                }

                return;
            }

            if (d.Batch >= 2 && (flopsPerBatch < BatchSplitFlops || d.Batch >= 4 * threads))
            {
                // Many small products (attention heads): each worker takes whole batches.
                device.Workers.Run(ref job, d.Batch);
                return;
            }

            // One large product per batch: split it along the dimension that duplicates less packing (rows on a tie:
            // measured slightly faster at 512³). With b packed once, splitting rows duplicates nothing.
            bool direct = IsDirect(d);
            var (mr, nr) = TileOf(isa);
            bool splitRows = direct ? d.M > DirectMaxRows : job.PackedB != null || d.M >= d.N;
            int units = splitRows ? Ceiling(d.M, mr) : Ceiling(d.N, nr);
            if (!direct && units < threads)
            {
                splitRows = !splitRows;
                units = splitRows ? Ceiling(d.M, mr) : Ceiling(d.N, nr);
            }

            // One share per thread: more shares would pack the unsplit operand again for each (measured slower).
            job.Parts = Math.Clamp(units, 1, threads);
            job.SplitRows = splitRows;
            device.Workers.Run(ref job, d.Batch * job.Parts);
        }
    }

    private static int Ceiling(int x, int y) => (x + y - 1) / y;

    // Too few rows or columns to fill a micro-tile: dot products or row updates without packing do better.
    private static bool IsDirect(in GemmDims d) => d.Reduce == 1 && (d.M <= DirectMaxRows || d.N <= DirectMaxColumns);

    /// <summary>
    /// Packs <c>op(b)</c> (<c>[k, n]</c>, or <c>[n, k]</c> transposed) whole into the packed path's layout: for each
    /// k-block (<see cref="KBlock"/>) starting at row <c>p0</c>, at offset <c>p0·nPad</c>, the strips of <c>nr</c>
    /// columns, each <c>[kc][nr]</c>, zero-padded to <c>nPad</c> = n rounded up to <c>nr</c>.
    /// </summary>
    public static void PackWhole(ReadOnlySpan<float> b, int k, int n, bool transposed, GemmIsa isa, float* dst)
    {
        int nr = TileOf(isa).Nr;
        int nPad = Ceiling(n, nr) * nr;
        int kc0 = KBlock(k);
        fixed (float* pb = b)
        {
            for (int p0 = 0; p0 < k; p0 += kc0)
            {
                PackB(pb, transposed ? k : n, transposed, p0, Math.Min(kc0, k - p0), 0, n, nr, dst + ((long)p0 * nPad));
            }
        }
    }

    /// <summary>One call's operands and its split into tasks: an unmanaged struct the workers run by address.</summary>
    private struct Job : ICpuJob
    {
        public float* A;
        public float* B;
        public float* C;
        public float* Bias;
        public float* Pre;
        public float* PackedB;
        public GemmDims D;
        public GemmIsa Isa;
        public int Parts;
        public bool SplitRows;

        // Task t: batch t / parts, the (t % parts)-th share of its rows or columns.
        public readonly void Execute(int task)
        {
            var d = D;
            int batch = task / Parts;
            int part = task % Parts;
            int r0 = 0, r1 = d.M, c0 = 0, c1 = d.N;
            if (Parts > 1)
            {
                var (mr, nr) = TileOf(Isa);
                int unit = SplitRows ? mr : nr;
                int extent = SplitRows ? d.M : d.N;
                int units = Ceiling(extent, unit);
                int start = Math.Min(extent, part * units / Parts * unit);
                int end = Math.Min(extent, (part + 1) * units / Parts * unit);
                if (SplitRows)
                {
                    (r0, r1) = (start, end);
                }
                else
                {
                    (c0, c1) = (start, end);
                }
            }

            if (r0 >= r1 || c0 >= c1)
            {
                return;
            }

            var block = new Block(
                A + ((long)batch * d.ABatchStride),
                B + ((long)batch * d.BBatchStride),
                C + ((long)batch * d.CBatchStride),
                Pre == null ? null : Pre + ((long)batch * d.CBatchStride),
                Bias);
            if (d.K == 0 || d.Reduce == 0)
            {
                EpilogueOnly(block, d, r0, r1, c0, c1);
            }
            else if (IsDirect(d))
            {
                Direct(block, d, r0, r1, c0, c1);
            }
            else
            {
                // Packed strips of b exist only for a b shared by every batch (a weight).
                Packed(block, d, Isa, r0, r1, c0, c1, d.BBatchStride == 0 && d.Reduce == 1 ? PackedB : null);
            }
        }
    }

    /// <summary>One batch's operands.</summary>
    private readonly struct Block(float* a, float* b, float* c, float* pre, float* bias)
    {
        public float* A { get; } = a;

        public float* B { get; } = b;

        public float* C { get; } = c;

        public float* Pre { get; } = pre;

        public float* Bias { get; } = bias;
    }

    /// <summary>Per-thread pack buffers, pinned and 64-byte aligned, allocated once and reused.</summary>
    private sealed class Workspace
    {
        [ThreadStatic]
        private static Workspace? current;

        private readonly float[] packA = GC.AllocateUninitializedArray<float>(((McMax + 16) * KcMax) + 16, pinned: true);
        private readonly float[] packB = GC.AllocateUninitializedArray<float>((KcMax * NcMax) + 16, pinned: true);
        private readonly float[] tile = GC.AllocateUninitializedArray<float>((Mr512 * Nr512) + 16, pinned: true);
        private float[] rows = [];

        public static Workspace Get() => current ??= new Workspace();

        public float* PackA => Align(packA);

        public float* PackB => Align(packB);

        public float* Tile => Align(tile);

        /// <summary>A scratch buffer of at least <paramref name="length"/> floats; grows to the largest request, then stays.</summary>
        public float* Rows(int length)
        {
            if (rows.Length < length + 16)
            {
                rows = GC.AllocateUninitializedArray<float>(length + 16, pinned: true);
            }

            return Align(rows);
        }

        private static float* Align(float[] pinned)
        {
            nint address = (nint)Unsafe.AsPointer(ref pinned[0]);
            return (float*)((address + 63) & ~(nint)63);
        }
    }

    // c [m, n] block rows r0..r1, columns c0..c1 through packed strips; b's strips come from `prepacked`
    // (PackWhole's layout) when given, else are packed here block by block.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Packed(in Block blk, in GemmDims d, GemmIsa isa, int r0, int r1, int c0, int c1, float* prepacked)
    {
        var ws = Workspace.Get();
        float* packA = ws.PackA;
        float* packB = ws.PackB;
        float* tile = ws.Tile;
        bool wide = isa == GemmIsa.Vector512;
        int mr = wide ? Mr512 : Mr256;
        int nr = wide ? Nr512 : Nr256;
        int lda = d.TransA == 0 ? d.K : d.M;
        int ldb = d.TransB == 0 ? d.N : d.K;

        // Even splits avoid a thin last block: k = 600 becomes 300 + 300 rather than 512 + 88.
        int kc0 = KBlock(d.K);
        int nPad = Ceiling(d.N, nr) * nr;
        int nSteps = Ceiling(c1 - c0, NcMax);
        int nc0 = Ceiling(Ceiling(c1 - c0, nSteps), nr) * nr;

        // The Vector512 kernel reads full 8-row strips of a row-major a in place; only a ragged last strip is packed.
        // Not when a's rows are a multiple of 4 KB apart: all eight would then fall in the same L1 sets. Reading in
        // place needs no block of packed rows, so all rows form one block and each block of b is packed once.
        bool readsInPlace = wide && d.TransA == 0 && lda % 1024 != 0;
        int mSteps = readsInPlace ? 1 : Ceiling(r1 - r0, McMax);
        int mc0 = Ceiling(Ceiling(r1 - r0, mSteps), mr) * mr;

        for (int ic = r0; ic < r1; ic += mc0)
        {
            int mc = Math.Min(mc0, r1 - ic);
            int inPlaceRows = readsInPlace ? mc - (mc % mr) : 0;
            for (int rb = 0; rb < d.Reduce; rb++)
            {
                float* a = blk.A + ((long)rb * d.AReduceStride);
                float* b = blk.B + ((long)rb * d.BReduceStride);
                for (int pc = 0; pc < d.K; pc += kc0)
                {
                    int kc = Math.Min(kc0, d.K - pc);
                    bool first = rb == 0 && pc == 0;
                    bool last = rb == d.Reduce - 1 && pc + kc == d.K;
                    PackA(a, lda, d.TransA != 0, ic + inPlaceRows, mc - inPlaceRows, pc, kc, mr, packA);
                    for (int jc = c0; jc < c1; jc += nc0)
                    {
                        int nc = Math.Min(nc0, c1 - jc);
                        // A row-major b whose rows are close together is packed by the first strip of rows as the Vector512
                        // kernel reads it (the loads are needed anyway; the stores hide behind the FMAs); only a ragged last
                        // strip is packed first. With rows further apart each step of the strided read lands on a new page and
                        // the first strip stalls (measured 10–15% slower overall at 128×768×3072), so b is packed up front.
                        int packedAsRead = 0;
                        if (prepacked != null)
                        {
                            packB = prepacked + ((long)pc * nPad) + ((long)jc * kc);
                        }
                        else if (wide && d.TransB == 0 && ldb <= PackAsReadMaxRowLength)
                        {
                            packedAsRead = nc - (nc % nr);
                            PackB(b, ldb, false, pc, kc, jc + packedAsRead, nc - packedAsRead, nr, packB + ((long)packedAsRead * kc));
                        }
                        else
                        {
                            PackB(b, ldb, d.TransB != 0, pc, kc, jc, nc, nr, packB);
                        }

                        for (int ir = 0; ir < mc; ir += mr)
                        {
                            int rows = Math.Min(mr, mc - ir);
                            bool inPlace = ir < inPlaceRows;
                            float* aStrip = inPlace ? a + ((long)(ic + ir) * lda) + pc : packA + ((long)(ir - inPlaceRows) * kc);
                            long aRowStride = inPlace ? lda : 1;
                            long aStep = inPlace ? 1 : mr;
                            long rowOffset = (long)(ic + ir) * d.N;
                            for (int jr = 0; jr < nc; jr += nr)
                            {
                                int cols = Math.Min(nr, nc - jr);
                                int col = jc + jr;
                                float* bStrip = packB + ((long)jr * kc);
                                float* cTile = blk.C + rowOffset + col;
                                float* biasTile = blk.Bias == null ? null : blk.Bias + col;

                                // Full tiles without a beta term go straight from registers to c; on the last pass the
                                // Vector512 kernel also saves the pre-activation and applies GELU to the tile while in L1.
                                // Other tiles go through a scratch tile and the general epilogue.
                                bool plainLast = d.Activation == 0 && blk.Pre == null;
                                bool direct = rows == mr && cols == nr && (!first || d.Beta == 0f) && (!last || plainLast || wide);
                                float* dst = direct ? cTile : tile;
                                int ldd = direct ? d.N : nr;
                                bool add = direct && !first;
                                float alpha = direct ? d.Alpha : 1f;
                                float* tileBias = direct && last ? biasTile : null;
                                if (!wide)
                                {
                                    Kernel6x16(aStrip, bStrip, kc, dst, ldd, add, alpha, tileBias);
                                }
                                else if (ir == 0 && jr < packedAsRead)
                                {
                                    Kernel8x32<PacksB>(aStrip, aRowStride, aStep, b + ((long)pc * ldb) + col, ldb, bStrip, kc, dst, ldd, add, alpha, tileBias);
                                }
                                else
                                {
                                    Kernel8x32<ReadsPackedB>(aStrip, aRowStride, aStep, bStrip, nr, null, kc, dst, ldd, add, alpha, tileBias);
                                }

                                if (direct)
                                {
                                    if (wide && last && !plainLast)
                                    {
                                        FinishTile8x32(cTile, blk.Pre == null ? null : blk.Pre + rowOffset + col, d.N, d.Activation);
                                    }

                                    continue;
                                }

                                float* preTile = blk.Pre == null ? null : blk.Pre + rowOffset + col;
                                for (int r = 0; r < rows; r++)
                                {
                                    EpilogueRow(tile + (r * nr), cTile + ((long)r * d.N), preTile == null ? null : preTile + ((long)r * d.N),
                                        biasTile, cols, first, last, d);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // op(a) rows row0..row0+rows, k0..k0+kc -> strips of mr rows, each [kc][mr], the last zero-padded.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackA(float* a, int lda, bool transposed, int row0, int rows, int k0, int kc, int mr, float* dst)
    {
        for (int s = 0; s < rows; s += mr)
        {
            int h = Math.Min(mr, rows - s);
            float* strip = dst + ((long)s * kc);
            if (!transposed)
            {
                // a [m, k]: each row is contiguous in k; 8×8 blocks are transposed in registers, the rest scattered.
                int p0 = 0;
                if (h == 8 && mr == 8 && Avx.IsSupported)
                {
                    float* src = a + ((long)(row0 + s) * lda) + k0;
                    for (; p0 + 8 <= kc; p0 += 8)
                    {
                        Transpose8x8(src + p0, lda, strip + (p0 * 8), 8);
                    }
                }

                for (int r = 0; r < h; r++)
                {
                    float* src = a + ((long)(row0 + s + r) * lda) + k0;
                    float* o = strip + r;
                    for (int p = p0; p < kc; p++)
                    {
                        o[p * mr] = src[p];
                    }
                }

                for (int r = h; r < mr; r++)
                {
                    for (int p = 0; p < kc; p++)
                    {
                        strip[(p * mr) + r] = 0f;
                    }
                }
            }
            else
            {
                // a [k, m]: the strip's mr values at each k are already contiguous.
                for (int p = 0; p < kc; p++)
                {
                    float* src = a + ((long)(k0 + p) * lda) + row0 + s;
                    float* o = strip + (p * mr);
                    int r = 0;
                    for (; r < h; r++)
                    {
                        o[r] = src[r];
                    }

                    for (; r < mr; r++)
                    {
                        o[r] = 0f;
                    }
                }
            }
        }
    }

    // op(b) k0..k0+kc, columns col0..col0+cols -> strips of nr columns, each [kc][nr], the last zero-padded.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackB(float* b, int ldb, bool transposed, int k0, int kc, int col0, int cols, int nr, float* dst)
    {
        if (!transposed)
        {
            // b [k, n]: walk b's rows in memory order (prefetch-friendly), dealing each row out to the strips.
            int full = cols - (cols % nr);
            for (int p = 0; p < kc; p++)
            {
                float* src = b + ((long)(k0 + p) * ldb) + col0;
                float* o = dst + (p * nr);
                int s = 0;
                for (; s < full; s += nr)
                {
                    float* strip = o + ((long)s * kc);
                    if (Vector512.IsHardwareAccelerated)
                    {
                        for (int j = 0; j < nr; j += 16)
                        {
                            Vector512.Store(Vector512.Load(src + s + j), strip + j);
                        }
                    }
                    else
                    {
                        for (int j = 0; j < nr; j += 8)
                        {
                            Vector256.Store(Vector256.Load(src + s + j), strip + j);
                        }
                    }
                }

                if (s < cols)
                {
                    float* strip = o + ((long)s * kc);
                    int j = 0;
                    for (; s + j < cols; j++)
                    {
                        strip[j] = src[s + j];
                    }

                    for (; j < nr; j++)
                    {
                        strip[j] = 0f;
                    }
                }
            }

            return;
        }

        for (int s = 0; s < cols; s += nr)
        {
            int w = Math.Min(nr, cols - s);
            float* strip = dst + ((long)s * kc);

            // b [n, k]: each of the strip's columns is a contiguous row of b; transpose 8×8 blocks in registers.
            int j0 = 0;
            int p0 = kc & ~7;
            if (Avx.IsSupported)
            {
                for (; j0 + 8 <= w; j0 += 8)
                {
                    float* src = b + ((long)(col0 + s + j0) * ldb) + k0;
                    for (int p = 0; p < p0; p += 8)
                    {
                        Transpose8x8(src + p, ldb, strip + (p * nr) + j0, nr);
                    }
                }
            }

            for (int j = 0; j < w; j++)
            {
                float* src = b + ((long)(col0 + s + j) * ldb) + k0;
                float* o = strip + j;
                for (int p = j < j0 ? p0 : 0; p < kc; p++)
                {
                    o[p * nr] = src[p];
                }
            }

            for (int j = w; j < nr; j++)
            {
                for (int p = 0; p < kc; p++)
                {
                    strip[(p * nr) + j] = 0f;
                }
            }
        }
    }

    // dst[q * dstStride + r] = src[r * srcStride + q] for an 8×8 block.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(float* src, int srcStride, float* dst, int dstStride)
    {
        var r0 = Avx.LoadVector256(src);
        var r1 = Avx.LoadVector256(src + srcStride);
        var r2 = Avx.LoadVector256(src + (2 * srcStride));
        var r3 = Avx.LoadVector256(src + (3 * srcStride));
        var r4 = Avx.LoadVector256(src + (4 * srcStride));
        var r5 = Avx.LoadVector256(src + (5 * srcStride));
        var r6 = Avx.LoadVector256(src + (6 * srcStride));
        var r7 = Avx.LoadVector256(src + (7 * srcStride));

        // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var s0 = Avx.Shuffle(t0, t2, 0x44);
        var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44);
        var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44);
        var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44);
        var s7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(s0, s4, 0x20));
        Avx.Store(dst + dstStride, Avx.Permute2x128(s1, s5, 0x20));
        Avx.Store(dst + (2 * dstStride), Avx.Permute2x128(s2, s6, 0x20));
        Avx.Store(dst + (3 * dstStride), Avx.Permute2x128(s3, s7, 0x20));
        Avx.Store(dst + (4 * dstStride), Avx.Permute2x128(s0, s4, 0x31));
        Avx.Store(dst + (5 * dstStride), Avx.Permute2x128(s1, s5, 0x31));
        Avx.Store(dst + (6 * dstStride), Avx.Permute2x128(s2, s6, 0x31));
        Avx.Store(dst + (7 * dstStride), Avx.Permute2x128(s3, s7, 0x31));
    }

    /// <summary>Where the Vector512 kernel's b strip comes from (a type argument, so each case compiles to its own loop).</summary>
    private interface IStripSource
    {
        /// <summary>True when b is read from its source rows and each step's 32 values are stored to the packed strip as they go by.</summary>
        static abstract bool PacksAsRead { get; }
    }

    private struct ReadsPackedB : IStripSource
    {
        public static bool PacksAsRead => false;
    }

    private struct PacksB : IStripSource
    {
        public static bool PacksAsRead => true;
    }

    // dst [8, 32] (=|+=) alpha · a [8, kc] · b [kc, 32] (+ bias [32]): 16 accumulators, one broadcast of a per row.
    // a's element (r, p) is at a[r·rowStride + p·step]: a packed strip [kc][8] (rowStride 1, step 8) or eight rows of
    // a row-major a read in place (rowStride lda, step 1), which saves packing a when its rows are contiguous.
    // b's row p is at b + p·bStep: a packed strip (bStep 32) or b's own rows (bStep ldb), then copied to bCopy [kc][32].
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel8x32<TSource>(float* a, long rowStride, long step, float* b, long bStep, float* bCopy, int kc,
        float* dst, int ldd, bool add, float alpha, float* bias)
        where TSource : struct, IStripSource
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default;
        float* a0 = a;
        float* a1 = a + rowStride;
        float* a2 = a + (2 * rowStride);
        float* a3 = a + (3 * rowStride);
        float* a4 = a + (4 * rowStride);
        float* a5 = a + (5 * rowStride);
        float* a6 = a + (6 * rowStride);
        float* a7 = a + (7 * rowStride);
        long qEnd = kc * step;
        for (long q = 0; q < qEnd; q += step)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            if (TSource.PacksAsRead)
            {
                b0.Store(bCopy);
                b1.Store(bCopy + 16);
                bCopy += 32;
            }

            var x = Vector512.Create(a0[q]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00);
            c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a1[q]);
            c10 = Vector512.FusedMultiplyAdd(x, b0, c10);
            c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a2[q]);
            c20 = Vector512.FusedMultiplyAdd(x, b0, c20);
            c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a3[q]);
            c30 = Vector512.FusedMultiplyAdd(x, b0, c30);
            c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a4[q]);
            c40 = Vector512.FusedMultiplyAdd(x, b0, c40);
            c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a5[q]);
            c50 = Vector512.FusedMultiplyAdd(x, b0, c50);
            c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a6[q]);
            c60 = Vector512.FusedMultiplyAdd(x, b0, c60);
            c61 = Vector512.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a7[q]);
            c70 = Vector512.FusedMultiplyAdd(x, b0, c70);
            c71 = Vector512.FusedMultiplyAdd(x, b1, c71);
            b += bStep;
        }

        var va = Vector512.Create(alpha);
        var z0 = bias == null ? Vector512<float>.Zero : Vector512.Load(bias);
        var z1 = bias == null ? Vector512<float>.Zero : Vector512.Load(bias + 16);
        StoreRow(dst, c00, c01, va, z0, z1, add);
        StoreRow(dst + ldd, c10, c11, va, z0, z1, add);
        StoreRow(dst + (2 * ldd), c20, c21, va, z0, z1, add);
        StoreRow(dst + (3 * ldd), c30, c31, va, z0, z1, add);
        StoreRow(dst + (4 * ldd), c40, c41, va, z0, z1, add);
        StoreRow(dst + (5 * ldd), c50, c51, va, z0, z1, add);
        StoreRow(dst + (6 * ldd), c60, c61, va, z0, z1, add);
        StoreRow(dst + (7 * ldd), c70, c71, va, z0, z1, add);
    }

    // The last pass's tail for a full 8×32 tile already in c (and in L1): pre = c, then c = GELU(c).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FinishTile8x32(float* c, float* pre, int ldc, int activation)
    {
        var form = (GeluForm)(activation - 1);
        for (int r = 0; r < Mr512; r++)
        {
            float* row = c + ((long)r * ldc);
            var v0 = Vector512.Load(row);
            var v1 = Vector512.Load(row + 16);
            if (pre != null)
            {
                float* preRow = pre + ((long)r * ldc);
                v0.Store(preRow);
                v1.Store(preRow + 16);
            }

            if (activation != 0)
            {
                Gelu.ValueVector(v0, form).Store(row);
                Gelu.ValueVector(v1, form).Store(row + 16);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* dst, Vector512<float> x0, Vector512<float> x1, Vector512<float> alpha, Vector512<float> z0, Vector512<float> z1, bool add)
    {
        if (add)
        {
            z0 += Vector512.Load(dst);
            z1 += Vector512.Load(dst + 16);
        }

        Vector512.FusedMultiplyAdd(x0, alpha, z0).Store(dst);
        Vector512.FusedMultiplyAdd(x1, alpha, z1).Store(dst + 16);
    }

    // dst [6, 16] (=|+=) alpha · a strip [kc][6] · b strip [kc][16] (+ bias [16]): 12 of the 16 ymm registers hold accumulators.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x16(float* a, float* b, int kc, float* dst, int ldd, bool add, float alpha, float* bias)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector256<float> c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var x = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(x, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(x, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(x, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            x = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(x, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
            x = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(x, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
            a += 6;
            b += 16;
        }

        var va = Vector256.Create(alpha);
        var z0 = bias == null ? Vector256<float>.Zero : Vector256.Load(bias);
        var z1 = bias == null ? Vector256<float>.Zero : Vector256.Load(bias + 8);
        StoreRow(dst, c00, c01, va, z0, z1, add);
        StoreRow(dst + ldd, c10, c11, va, z0, z1, add);
        StoreRow(dst + (2 * ldd), c20, c21, va, z0, z1, add);
        StoreRow(dst + (3 * ldd), c30, c31, va, z0, z1, add);
        StoreRow(dst + (4 * ldd), c40, c41, va, z0, z1, add);
        StoreRow(dst + (5 * ldd), c50, c51, va, z0, z1, add);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* dst, Vector256<float> x0, Vector256<float> x1, Vector256<float> alpha, Vector256<float> z0, Vector256<float> z1, bool add)
    {
        if (add)
        {
            z0 += Vector256.Load(dst);
            z1 += Vector256.Load(dst + 8);
        }

        Vector256.FusedMultiplyAdd(x0, alpha, z0).Store(dst);
        Vector256.FusedMultiplyAdd(x1, alpha, z1).Store(dst + 8);
    }

    /// <summary>
    /// Stores one row of results: on the first pass over k, <c>c = alpha·acc (+ beta·c)</c>; on later passes
    /// <c>c += alpha·acc</c>; on the last pass, then bias, pre-activation and the activation. <paramref name="acc"/>
    /// null means zeros (k = 0).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void EpilogueRow(float* acc, float* c, float* pre, float* bias, int count, bool first, bool last, in GemmDims d)
    {
        float alpha = d.Alpha;
        float beta = d.Beta;
        bool useBeta = first && beta != 0f;
        int act = last ? d.Activation : 0;
        var form = (GeluForm)(act - 1);
        if (!last)
        {
            bias = null;
            pre = null;
        }

        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var va = Vector512.Create(alpha);
            var vb = Vector512.Create(beta);
            for (; j <= count - 16; j += 16)
            {
                var v = acc == null ? Vector512<float>.Zero : Vector512.Load(acc + j) * va;
                if (!first)
                {
                    v += Vector512.Load(c + j);
                }
                else if (useBeta)
                {
                    v = Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + j), v);
                }

                if (bias != null)
                {
                    v += Vector512.Load(bias + j);
                }

                if (pre != null)
                {
                    v.Store(pre + j);
                }

                if (act != 0)
                {
                    v = Gelu.ValueVector(v, form);
                }

                v.Store(c + j);
            }
        }

        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(alpha);
            var vb = Vector256.Create(beta);
            for (; j <= count - 8; j += 8)
            {
                var v = acc == null ? Vector256<float>.Zero : Vector256.Load(acc + j) * va;
                if (!first)
                {
                    v += Vector256.Load(c + j);
                }
                else if (useBeta)
                {
                    v = Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + j), v);
                }

                if (bias != null)
                {
                    v += Vector256.Load(bias + j);
                }

                if (pre != null)
                {
                    v.Store(pre + j);
                }

                if (act != 0)
                {
                    v = Gelu.ValueVector256(v, form);
                }

                v.Store(c + j);
            }
        }

        for (; j < count; j++)
        {
            float v = acc == null ? 0f : acc[j] * alpha;
            if (!first)
            {
                v += c[j];
            }
            else if (useBeta)
            {
                v += beta * c[j];
            }

            if (bias != null)
            {
                v += bias[j];
            }

            if (pre != null)
            {
                pre[j] = v;
            }

            if (act != 0)
            {
                v = Gelu.Value(v, (int)form);
            }

            c[j] = v;
        }
    }

    // k = 0 (or an empty sum over batches): c = act(beta·c + bias).
    private static void EpilogueOnly(in Block blk, in GemmDims d, int r0, int r1, int c0, int c1)
    {
        for (int i = r0; i < r1; i++)
        {
            long row = (long)i * d.N;
            EpilogueRow(null, blk.C + row + c0, blk.Pre == null ? null : blk.Pre + row + c0,
                blk.Bias == null ? null : blk.Bias + c0, c1 - c0, first: true, last: true, d);
        }
    }

    // Few rows or few columns: rows of c from dot products (b transposed, or few columns), or from up to
    // four rows of a at a time against b read in place (few rows), without packing the large operand.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Direct(in Block blk, in GemmDims d, int r0, int r1, int c0, int c1)
    {
        var ws = Workspace.Get();
        int k = d.K;
        int cols = c1 - c0;
        bool dots = d.TransB != 0 || cols <= DirectMaxColumns;
        if (!dots)
        {
            float* acc4 = ws.Rows((4 * cols) + (4 * k));
            float* rows4 = acc4 + (4 * cols);
            for (int i0 = r0; i0 < r1; i0 += 4)
            {
                int count = Math.Min(4, r1 - i0);
                float* x = blk.A + ((long)i0 * k);
                if (d.TransA != 0)
                {
                    for (int r = 0; r < count; r++)
                    {
                        for (int p = 0; p < k; p++)
                        {
                            rows4[(r * k) + p] = blk.A[((long)p * d.M) + i0 + r];
                        }
                    }

                    x = rows4;
                }

                RowsTimesB(x, k, count, blk.B + c0, d.N, k, acc4, cols);
                for (int r = 0; r < count; r++)
                {
                    long row = (long)(i0 + r) * d.N;
                    EpilogueRow(acc4 + (r * cols), blk.C + row + c0, blk.Pre == null ? null : blk.Pre + row + c0,
                        blk.Bias == null ? null : blk.Bias + c0, cols, first: true, last: true, d);
                }
            }

            return;
        }

        // Few rows: every row of b (a column of op(b)) is read once and meets all rows of a while in L1.
        int rowCount = r1 - r0;
        if (rowCount <= DirectMaxRows && d.TransB != 0)
        {
            float* accRows = ws.Rows((rowCount * cols) + (rowCount * k));
            float* xRows = accRows + (rowCount * cols);
            for (int r = 0; r < rowCount; r++)
            {
                for (int p = 0; p < k; p++)
                {
                    xRows[(r * k) + p] = d.TransA != 0 ? blk.A[((long)p * d.M) + r0 + r] : blk.A[((long)(r0 + r) * k) + p];
                }
            }

            for (int j = 0; j < cols; j++)
            {
                var bj = new ReadOnlySpan<float>(blk.B + ((long)(c0 + j) * k), k);
                for (int r = 0; r < rowCount; r++)
                {
                    accRows[(r * cols) + j] = TensorPrimitives.Dot(new ReadOnlySpan<float>(xRows + (r * k), k), bj);
                }
            }

            for (int r = 0; r < rowCount; r++)
            {
                long row = (long)(r0 + r) * d.N;
                EpilogueRow(accRows + (r * cols), blk.C + row + c0, blk.Pre == null ? null : blk.Pre + row + c0,
                    blk.Bias == null ? null : blk.Bias + c0, cols, first: true, last: true, d);
            }

            return;
        }

        // Few columns: gather them as rows (when b is [k, n]) and take one dot product per output.
        float* scratch = ws.Rows(cols + k + (d.TransB == 0 ? cols * k : 0));
        float* acc = scratch;
        float* aRow = scratch + cols;
        float* bT = aRow + k;
        if (d.TransB == 0)
        {
            for (int j = 0; j < cols; j++)
            {
                for (int p = 0; p < k; p++)
                {
                    bT[((long)j * k) + p] = blk.B[((long)p * d.N) + c0 + j];
                }
            }
        }

        float* rowsOfB = d.TransB != 0 ? blk.B + ((long)c0 * k) : bT;
        for (int i = r0; i < r1; i++)
        {
            float* x = blk.A + ((long)i * k);
            if (d.TransA != 0)
            {
                for (int p = 0; p < k; p++)
                {
                    aRow[p] = blk.A[((long)p * d.M) + i];
                }

                x = aRow;
            }

            var xs = new ReadOnlySpan<float>(x, k);
            for (int j = 0; j < cols; j++)
            {
                acc[j] = TensorPrimitives.Dot(xs, new ReadOnlySpan<float>(rowsOfB + ((long)j * k), k));
            }

            long row = (long)i * d.N;
            EpilogueRow(acc, blk.C + row + c0, blk.Pre == null ? null : blk.Pre + row + c0,
                blk.Bias == null ? null : blk.Bias + c0, cols, first: true, last: true, d);
        }
    }

    // acc [count, cols] = x [count, k] · b [k, cols] for count ≤ 4 rows of x (row stride ldx), b read in place
    // (row stride ldb) in memory order. Columns go in chunks of 512 so that the four rows of b in use and the
    // rows of acc stay in L1 while every row of x passes over them.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsTimesB(float* x, int ldx, int count, float* b, int ldb, int k, float* acc, int cols)
    {
        const int Chunk = 512;
        new Span<float>(acc, count * cols).Clear();
        for (int jc = 0; jc < cols; jc += Chunk)
        {
            int w = Math.Min(Chunk, cols - jc);
            int p = 0;
            for (; p + 4 <= k; p += 4)
            {
                float* bp = b + ((long)p * ldb) + jc;
                for (int r = 0; r < count; r++)
                {
                    float* xr = x + ((long)r * ldx) + p;
                    Axpy4(acc + (r * cols) + jc, bp, ldb, xr[0], xr[1], xr[2], xr[3], w);
                }
            }

            for (; p < k; p++)
            {
                for (int r = 0; r < count; r++)
                {
                    var row = new Span<float>(acc + (r * cols) + jc, w);
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(b + ((long)p * ldb) + jc, w), x[((long)r * ldx) + p], row, row);
                }
            }
        }
    }

    // acc [w] += x0·b[0, :] + x1·b[1, :] + x2·b[2, :] + x3·b[3, :] for four rows of b (row stride ldb).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy4(float* acc, float* b, int ldb, float x0, float x1, float x2, float x3, int w)
    {
        float* b1 = b + ldb;
        float* b2 = b1 + ldb;
        float* b3 = b2 + ldb;
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var v0 = Vector512.Create(x0);
            var v1 = Vector512.Create(x1);
            var v2 = Vector512.Create(x2);
            var v3 = Vector512.Create(x3);
            for (; j + 16 <= w; j += 16)
            {
                var s = Vector512.Load(acc + j);
                s = Vector512.FusedMultiplyAdd(v0, Vector512.Load(b + j), s);
                s = Vector512.FusedMultiplyAdd(v1, Vector512.Load(b1 + j), s);
                s = Vector512.FusedMultiplyAdd(v2, Vector512.Load(b2 + j), s);
                s = Vector512.FusedMultiplyAdd(v3, Vector512.Load(b3 + j), s);
                s.Store(acc + j);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var v0 = Vector256.Create(x0);
            var v1 = Vector256.Create(x1);
            var v2 = Vector256.Create(x2);
            var v3 = Vector256.Create(x3);
            for (; j + 8 <= w; j += 8)
            {
                var s = Vector256.Load(acc + j);
                s = Vector256.FusedMultiplyAdd(v0, Vector256.Load(b + j), s);
                s = Vector256.FusedMultiplyAdd(v1, Vector256.Load(b1 + j), s);
                s = Vector256.FusedMultiplyAdd(v2, Vector256.Load(b2 + j), s);
                s = Vector256.FusedMultiplyAdd(v3, Vector256.Load(b3 + j), s);
                s.Store(acc + j);
            }
        }

        for (; j < w; j++)
        {
            acc[j] += (x0 * b[j]) + (x1 * b1[j]) + (x2 * b2[j]) + (x3 * b3[j]);
        }
    }
}
