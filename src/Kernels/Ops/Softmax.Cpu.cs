using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>Softmax on the managed SIMD backend: ranges of rows over the device's workers.</summary>
internal sealed partial class CpuBackend
{
    internal override unsafe void SoftmaxForward(Tensor<float> x, Tensor<float> y, Tensor<int>? keyMask,
        int rows, int cols, int perBatch, int count, float scale, bool causal)
    {
        fixed (float* px = x.HostSpan, py = y.HostSpan)
        fixed (int* pmask = keyMask is null ? default : keyMask.HostSpan)
        {
            var job = new Softmax.RowJob
            {
                X = px, Y = py, Mask = keyMask is null ? null : pmask, Rows = rows, Cols = cols, PerBatch = perBatch, Scale = scale,
                Causal = causal, Count = count, RowsPerItem = Softmax.RowsPerItem(Workers, count, cols),
            };
            Workers.Run(ref job, (count + job.RowsPerItem - 1) / job.RowsPerItem);
        }
    }

    internal override unsafe void SoftmaxBackward(Tensor<float> y, Tensor<float> dy, Tensor<float> dx, int rows, int cols, float scale)
    {
        fixed (float* py = y.HostSpan, pdy = dy.HostSpan, pdx = dx.HostSpan)
        {
            var job = new Softmax.RowJob { X = py, Dy = pdy, Y = pdx, Cols = cols, Scale = scale, Count = rows, Backward = true, RowsPerItem = Softmax.RowsPerItem(Workers, rows, cols) };
            Workers.Run(ref job, (rows + job.RowsPerItem - 1) / job.RowsPerItem);
        }
    }

    internal override unsafe void SoftmaxRelevance(Tensor<float> x, Tensor<float> y, Tensor<float> relevance, Tensor<float> result, Tensor<int>? keyMask,
        int rows, int cols, int perBatch, int count, float scale, bool causal)
    {
        fixed (float* px = x.HostSpan, py = y.HostSpan, prel = relevance.HostSpan, pres = result.HostSpan)
        fixed (int* pmask = keyMask is null ? default : keyMask.HostSpan)
        {
            var job = new Softmax.RelevanceJob
            {
                X = px, Y = py, Relevance = prel, Result = pres, Mask = keyMask is null ? null : pmask, Rows = rows, Cols = cols, PerBatch = perBatch,
                Scale = scale, Causal = causal, Count = count, RowsPerItem = Softmax.RowsPerItem(Workers, count, cols),
            };
            Workers.Run(ref job, (count + job.RowsPerItem - 1) / job.RowsPerItem);
        }
    }
}

/// <summary>Softmax's host SIMD code: the rows of each pass, and the vector exponential other host code shares.</summary>
public static unsafe partial class Softmax
{
    private const int ParallelThreshold = 1 << 15;

    // Rows per work item: about four items per thread (claimed dynamically), one item for small inputs.
    internal static int RowsPerItem(CpuWorkers workers, int count, int cols)
    {
        if ((long)count * cols < ParallelThreshold || workers.Threads == 1)
        {
            return Math.Max(count, 1);
        }

        return Math.Max(1, (count + (4 * workers.Threads) - 1) / (4 * workers.Threads));
    }

    /// <summary>
    /// Rows on the host; item = a range of rows. Forward: x, mask -> y. Backward: X holds the forward's y,
    /// Dy the output gradient, Y receives dx.
    /// </summary>
    internal unsafe struct RowJob : ICpuJob
    {
        public float* X;
        public float* Y;
        public float* Dy;
        public int* Mask;
        public int Rows;
        public int Cols;
        public int PerBatch;
        public int Count;
        public int RowsPerItem;
        public float Scale;
        public bool Causal;
        public bool Backward;

        public readonly void Execute(int item)
        {
            int end = Math.Min(Count, (item + 1) * RowsPerItem);
            for (int r = item * RowsPerItem; r < end; r++)
            {
                if (Backward)
                {
                    BackwardRow(r, this);
                }
                else
                {
                    ForwardRow(r, this);
                }
            }
        }
    }

    // The number of leading columns row i may see: all, or those up to i + (cols − rows) when causal.
    private static int VisibleColumns(int i, int rows, int cols, bool causal)
    {
        return causal ? (int)Math.Clamp((long)i + cols - rows + 1, 0, cols) : cols;
    }

    // One row on the host: x [cols] -> y [cols], with the key mask of its batch. Three passes: scaled and masked
    // scores with their maximum, exponentials with their sum, the division.
    private static unsafe void ForwardRow(int r, in RowJob j)
    {
        int rows = j.Rows;
        int cols = j.Cols;
        long start = (long)r * cols;
        var yRow = new Span<float>(j.Y + start, cols);
        int visible = VisibleColumns(r % rows, rows, cols, j.Causal);
        var ys = yRow[..visible];
        ReadOnlySpan<int> mask = j.Mask == null ? default : new ReadOnlySpan<int>(j.Mask + ((long)(r / rows / j.PerBatch) * cols), visible);
        float max = ScaleMaskMax(new ReadOnlySpan<float>(j.X + start, visible), mask, j.Scale, ys);
        if (float.IsNegativeInfinity(max))
        {
            yRow.Clear();
            return;
        }

        float sum = ExpSum(ys, max);
        TensorPrimitives.Multiply(ys, 1f / sum, ys);
        yRow[visible..].Clear();
    }

    // s = scale·x, or −∞ where mask is 0 (its exponential is then exactly 0); returns max(s). An empty mask keeps all.
    private static float ScaleMaskMax(ReadOnlySpan<float> x, ReadOnlySpan<int> mask, float scale, Span<float> s)
    {
        bool masked = !mask.IsEmpty;
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref int mr = ref MemoryMarshal.GetReference(mask);
        ref float sr = ref MemoryMarshal.GetReference(s);
        var scaleV = Vector512.Create(scale);
        var negInf = Vector512.Create(float.NegativeInfinity);
        var maxV = negInf;
        int i = 0;
        for (; i <= x.Length - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var v = Vector512.LoadUnsafe(ref xr, (nuint)i) * scaleV;
            if (masked)
            {
                var dropped = Vector512.Equals(Vector512.LoadUnsafe(ref mr, (nuint)i), Vector512<int>.Zero).AsSingle();
                v = Vector512.ConditionalSelect(dropped, negInf, v);
            }

            v.StoreUnsafe(ref sr, (nuint)i);
            maxV = Vector512.Max(maxV, v);
        }

        float max = float.NegativeInfinity;
        for (int k = 0; k < Vector512<float>.Count; k++)
        {
            max = MathF.Max(max, maxV.GetElement(k));
        }

        for (; i < x.Length; i++)
        {
            float v = masked && mask[i] == 0 ? float.NegativeInfinity : scale * x[i];
            s[i] = v;
            max = MathF.Max(max, v);
        }

        return max;
    }

    // s = exp(s − max) in place; returns Σ s.
    private static float ExpSum(Span<float> s, float max)
    {
        ref float sr = ref MemoryMarshal.GetReference(s);
        var maxV = Vector512.Create(max);
        var sumV = Vector512<float>.Zero;
        int i = 0;
        for (; i <= s.Length - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var e = Exp(Vector512.LoadUnsafe(ref sr, (nuint)i) - maxV);
            e.StoreUnsafe(ref sr, (nuint)i);
            sumV += e;
        }

        float sum = Vector512.Sum(sumV);
        for (; i < s.Length; i++)
        {
            s[i] = MathF.Exp(s[i] - max);
            sum += s[i];
        }

        return sum;
    }

    /// <summary>
    /// <c>exp(v)</c> per lane, within 1.5 ulp for <c>−87.3 ≤ v ≤ 88</c>; 0 below (−∞ included, so masked scores give
    /// exactly 0) and +∞ above. About four times faster than <c>Vector512.Exp</c>, which works in double precision.
    /// </summary>
    /// <remarks>
    /// <c>exp(v) = 2ᵏ·exp(r)</c> with <c>k = round(v·log₂e)</c>, <c>|r| ≤ ln2/2</c>, and a degree-7 Taylor polynomial for
    /// exp(r). k is rounded by adding 1.5·2²³, which leaves it in the low mantissa bits: shifted into the exponent
    /// field they give 2ᵏ without a float-to-integer conversion.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> Exp(Vector512<float> v)
    {
        var shifter = Vector512.Create(12582912f); // 1.5·2²³
        var kShifted = Vector512.FusedMultiplyAdd(v, Vector512.Create(1.44269504f), shifter);
        var k = kShifted - shifter;

        // r = v − k·ln2 with ln2 split in two so that k·ln2High is exact.
        var r = Vector512.FusedMultiplyAdd(k, Vector512.Create(-0.693145751953125f), v);
        r = Vector512.FusedMultiplyAdd(k, Vector512.Create(-1.42860677e-6f), r);
        var p = Vector512.Create(1f / 5040);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 720));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 120));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 24));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 6));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(0.5f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);

        // 2ᵏ: the low bits of kShifted hold k (|k| < 2²²); k stays within the normal range thanks to the selects below.
        var twoToK = (Vector512.ShiftLeft(kShifted.AsInt32(), 23) + Vector512.Create(127 << 23)).AsSingle();
        var result = Vector512.ConditionalSelect(Vector512.LessThan(v, Vector512.Create(-87.3f)), Vector512<float>.Zero, p * twoToK);
        return Vector512.ConditionalSelect(Vector512.GreaterThan(v, Vector512.Create(88f)), Vector512.Create(float.PositiveInfinity), result);
    }

    // One row on the host: y, dy [cols] -> dx [cols], one pass after the dot so that dx may alias y or dy.
    private static unsafe void BackwardRow(int r, in RowJob j)
    {
        int cols = j.Cols;
        float scale = j.Scale;
        long start = (long)r * cols;
        ReadOnlySpan<float> p = new(j.X + start, cols);
        ReadOnlySpan<float> g = new(j.Dy + start, cols);
        var o = new Span<float>(j.Y + start, cols);
        float dot = TensorPrimitives.Dot(p, g);
        ref float pr = ref MemoryMarshal.GetReference(p);
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float or = ref MemoryMarshal.GetReference(o);
        var dotV = Vector512.Create(dot);
        var scaleV = Vector512.Create(scale);
        int i = 0;
        for (; i <= cols - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var pv = Vector512.LoadUnsafe(ref pr, (nuint)i);
            (scaleV * pv * (Vector512.LoadUnsafe(ref gr, (nuint)i) - dotV)).StoreUnsafe(ref or, (nuint)i);
        }

        for (; i < cols; i++)
        {
            o[i] = scale * p[i] * (g[i] - dot);
        }
    }

    /// <summary>The relevance pass on the host; item = a range of rows.</summary>
    internal unsafe struct RelevanceJob : ICpuJob
    {
        public float* X;
        public float* Y;
        public float* Relevance;
        public float* Result;
        public int* Mask;
        public int Rows;
        public int Cols;
        public int PerBatch;
        public float Scale;
        public bool Causal;
        public int Count;
        public int RowsPerItem;

        public readonly void Execute(int item)
        {
            int end = Math.Min(Count, (item + 1) * RowsPerItem);
            for (int r = item * RowsPerItem; r < end; r++)
            {
                RelevanceRow(r, this);
            }
        }
    }

    // One row on the host: x, y, relevance [cols] -> result [cols]; the row total is taken before anything is written.
    private static void RelevanceRow(int r, in RelevanceJob j)
    {
        int rows = j.Rows;
        int cols = j.Cols;
        float scale = j.Scale;
        long start = (long)r * cols;
        int visible = VisibleColumns(r % rows, rows, cols, j.Causal);
        var xs = new ReadOnlySpan<float>(j.X + start, cols);
        var ys = new ReadOnlySpan<float>(j.Y + start, cols);
        var rs = new ReadOnlySpan<float>(j.Relevance + start, cols);
        var mask = j.Mask is null ? default : new ReadOnlySpan<int>(j.Mask + ((long)(r / rows / j.PerBatch) * cols), cols);
        float total = 0f;
        for (int c = 0; c < visible; c++)
        {
            total += mask.IsEmpty || mask[c] != 0 ? rs[c] : 0f;
        }

        var o = new Span<float>(j.Result + start, cols);
        for (int c = 0; c < cols; c++)
        {
            bool allowed = c < visible && (mask.IsEmpty || mask[c] != 0);
            o[c] = allowed ? scale * xs[c] * (rs[c] - (ys[c] * total)) : 0f;
        }
    }
}
