using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

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
    private const long StreamingParallelWeights = 1L << 16;
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
    public static void Run(CpuWorkers workers, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c,
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
            int threads = workers.Threads;
            // A product of a few rows streams its weight from memory: worth both cores from a much smaller size.
            bool streams = d.Batch == 1 && d.M <= DirectMaxRows && d.Reduce == 1 && (long)d.K * d.N >= StreamingParallelWeights;
            if (threads == 1 || (flopsPerBatch * d.Batch < ParallelFlops && !streams))
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
                workers.Run(ref job, d.Batch);
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
            workers.Run(ref job, d.Batch * job.Parts);
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
}
