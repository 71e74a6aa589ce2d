using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>LayerNorm on the managed SIMD backend: ranges of rows (and of dgamma/dbeta columns) over the device's workers.</summary>
internal sealed partial class CpuBackend
{
    internal override unsafe void LayerNormForward(Tensor<float> x, Tensor<float> gamma, Tensor<float> beta, Tensor<float> y, float epsilon,
        Tensor<float>? mean, Tensor<float>? rstd, Tensor<float>? residual, Tensor<float>? sum, bool? perThread, int rows, int d)
    {
        fixed (float* px = x.HostSpan, pg = gamma.HostSpan, pb = beta.HostSpan, py = y.HostSpan)
        fixed (float* pm = mean is null ? default : mean.HostSpan, ps = rstd is null ? default : rstd.HostSpan)
        fixed (float* pr = residual is null ? default : residual.HostSpan, psum = sum is null ? default : sum.HostSpan)
        {
            var job = new LayerNorm.ForwardJob
            {
                X = px, Gamma = pg, Beta = pb, Y = py, Mean = pm, Rstd = ps, Residual = pr, Sum = psum,
                D = d, Rows = rows, Epsilon = epsilon, RowsPerItem = LayerNorm.RowsPerItem(Workers, rows, d),
            };
            Workers.Run(ref job, LayerNorm.DivUp(rows, job.RowsPerItem));
        }
    }

    internal override unsafe void LayerNormBackward(Tensor<float> dy, Tensor<float> input, Tensor<float> gamma, Tensor<float> mean, Tensor<float> rstd,
        Tensor<float> dx, Tensor<float>? dgamma, Tensor<float>? dbeta, bool accumulate, bool accumulateInput, int rows, int d)
    {
        bool parallel = (long)rows * d >= LayerNorm.ParallelThreshold && Workers.Threads > 1;
        fixed (float* pdy = dy.HostSpan, pin = input.HostSpan, pg = gamma.HostSpan, pm = mean.HostSpan, ps = rstd.HostSpan, pdx = dx.HostSpan)
        fixed (float* pdg = dgamma is null ? default : dgamma.HostSpan, pdb = dbeta is null ? default : dbeta.HostSpan)
        {
            var job = new LayerNorm.BackwardJob
            {
                Dy = pdy, Input = pin, Gamma = pg, Mean = pm, Rstd = ps, Dx = pdx,
                Dgamma = dgamma is null ? null : pdg, Dbeta = dbeta is null ? null : pdb,
                D = d, Rows = rows, Accumulate = accumulate, AccumulateInput = accumulateInput,
            };
            if (dgamma is not null || dbeta is not null)
            {
                // Workers own disjoint column ranges (multiples of one vector), so no two write the same element.
                job.ColumnsPerItem = parallel ? LayerNorm.RoundUp(LayerNorm.DivUp(d, Workers.Threads), Vector512<float>.Count) : d;
                job.Phase = 0;
                Workers.Run(ref job, LayerNorm.DivUp(d, job.ColumnsPerItem));
            }

            job.Phase = 1;
            job.RowsPerItem = parallel ? LayerNorm.RowsPerItem(Workers, rows, d) : rows;
            Workers.Run(ref job, rows == 0 ? 0 : LayerNorm.DivUp(rows, job.RowsPerItem));
        }
    }

    internal override unsafe void LayerNormRelevance(Tensor<float> dy, Tensor<float> gamma, Tensor<float> rstd, Tensor<float> dx, bool accumulateInput, int rows, int d)
    {
        fixed (float* pdy = dy.HostSpan, pgamma = gamma.HostSpan, prstd = rstd.HostSpan, pdx = dx.HostSpan)
        {
            var job = new LayerNorm.RelevanceJob { Dy = pdy, Gamma = pgamma, Rstd = prstd, Dx = pdx, D = d, Rows = rows, Accumulate = accumulateInput, RowsPerItem = LayerNorm.RowsPerItem(Workers, rows, d) };
            Workers.Run(ref job, LayerNorm.DivUp(rows, job.RowsPerItem));
        }
    }
}

/// <summary>LayerNorm's host SIMD code: the rows of the forward, backward and relevance passes and the dgamma/dbeta columns.</summary>
public static unsafe partial class LayerNorm
{
    internal const int ParallelThreshold = 1 << 15;

    // Rows per work item: about four items per thread (claimed dynamically), one item for small inputs.
    internal static int RowsPerItem(CpuWorkers workers, int rows, int d)
    {
        if ((long)rows * d < ParallelThreshold || workers.Threads == 1)
        {
            return Math.Max(rows, 1);
        }

        return Math.Max(1, DivUp(rows, 4 * workers.Threads));
    }

    internal static int DivUp(int value, int divisor) => (value + divisor - 1) / divisor;

    /// <summary>The forward pass on the host; item = a range of rows.</summary>
    internal unsafe struct ForwardJob : ICpuJob
    {
        public float* X;
        public float* Residual;
        public float* Sum;
        public float* Gamma;
        public float* Beta;
        public float* Y;
        public float* Mean;
        public float* Rstd;
        public int D;
        public int Rows;
        public int RowsPerItem;
        public float Epsilon;

        public readonly void Execute(int item)
        {
            int end = Math.Min(Rows, (item + 1) * RowsPerItem);
            for (int r = item * RowsPerItem; r < end; r++)
            {
                ForwardRow(r, this);
            }
        }
    }

    /// <summary>The backward pass on the host: phase 0, item = a range of dgamma/dbeta columns; phase 1, item = a range of rows of dx.</summary>
    internal unsafe struct BackwardJob : ICpuJob
    {
        public float* Dy;
        public float* Input;
        public float* Gamma;
        public float* Mean;
        public float* Rstd;
        public float* Dx;
        public float* Dgamma;
        public float* Dbeta;
        public int D;
        public int Rows;
        public int RowsPerItem;
        public int ColumnsPerItem;
        public int Phase;
        public bool Accumulate;
        public bool AccumulateInput;

        public readonly void Execute(int item)
        {
            if (Phase == 0)
            {
                int c0 = item * ColumnsPerItem;
                ParameterGradientColumns(c0, Math.Min(ColumnsPerItem, D - c0), this);
                return;
            }

            int end = Math.Min(Rows, (item + 1) * RowsPerItem);
            for (int r = item * RowsPerItem; r < end; r++)
            {
                BackwardRow(r, this);
            }
        }
    }

    internal static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    // One row on the host: x, residual [d] -> sum [d], y [d]; mean, rstd [1]
    private static unsafe void ForwardRow(int r, in ForwardJob j)
    {
        int d = j.D;
        long start = (long)r * d;
        var yRow = new Span<float>(j.Y + start, d);
        ReadOnlySpan<float> v = new(j.X + start, d);
        if (j.Residual != null)
        {
            // The sum goes to `sum`, or to y, which is then normalised in place: no scratch row.
            var target = j.Sum != null ? new Span<float>(j.Sum + start, d) : yRow;
            TensorPrimitives.Add(v, new ReadOnlySpan<float>(j.Residual + start, d), target);
            v = target;
        }

        float m0 = TensorPrimitives.Sum(v) / d;
        var (s1, s2) = DeviationSums(v, m0);
        float shift = s1 / d;
        float variance = MathF.Max((s2 / d) - (shift * shift), 0f);
        float rs = 1f / MathF.Sqrt(variance + j.Epsilon);
        Normalize(v, m0, shift, rs, new ReadOnlySpan<float>(j.Gamma, d), new ReadOnlySpan<float>(j.Beta, d), yRow);
        if (j.Mean != null)
        {
            j.Mean[r] = m0 + shift;
        }

        if (j.Rstd != null)
        {
            j.Rstd[r] = rs;
        }
    }

    // Σ(v − m0) and Σ(v − m0)² over one row.
    private static (float S1, float S2) DeviationSums(ReadOnlySpan<float> v, float m0)
    {
        ref float vr = ref MemoryMarshal.GetReference(v);
        var m = Vector512.Create(m0);
        var a1 = Vector512<float>.Zero;
        var a2 = Vector512<float>.Zero;
        int i = 0;
        for (; i <= v.Length - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var dv = Vector512.LoadUnsafe(ref vr, (nuint)i) - m;
            a1 += dv;
            a2 = Vector512.FusedMultiplyAdd(dv, dv, a2);
        }

        float s1 = Vector512.Sum(a1);
        float s2 = Vector512.Sum(a2);
        for (; i < v.Length; i++)
        {
            float dv = v[i] - m0;
            s1 += dv;
            s2 += dv * dv;
        }

        return (s1, s2);
    }

    // y = ((v − m0) − shift)·rs·gamma + beta; y may alias v.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Normalize(ReadOnlySpan<float> v, float m0, float shift, float rs,
        ReadOnlySpan<float> gamma, ReadOnlySpan<float> beta, Span<float> y)
    {
        ref float vr = ref MemoryMarshal.GetReference(v);
        ref float gr = ref MemoryMarshal.GetReference(gamma);
        ref float br = ref MemoryMarshal.GetReference(beta);
        ref float yr = ref MemoryMarshal.GetReference(y);
        var m = Vector512.Create(m0);
        var s = Vector512.Create(shift);
        var k = Vector512.Create(rs);
        int i = 0;
        for (; i <= v.Length - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var xhat = (Vector512.LoadUnsafe(ref vr, (nuint)i) - m - s) * k;
            Vector512.FusedMultiplyAdd(xhat, Vector512.LoadUnsafe(ref gr, (nuint)i), Vector512.LoadUnsafe(ref br, (nuint)i))
                .StoreUnsafe(ref yr, (nuint)i);
        }

        for (; i < v.Length; i++)
        {
            y[i] = MathF.FusedMultiplyAdd((v[i] - m0 - shift) * rs, gamma[i], beta[i]);
        }
    }

    // Columns [c0, c0 + n) of dgamma, dbeta [d] from dy, input [rows, d] and mean, rstd [rows].
    private static unsafe void ParameterGradientColumns(int c0, int n, in BackwardJob j)
    {
        int d = j.D;
        var dg = j.Dgamma == null ? default : new Span<float>(j.Dgamma + c0, n);
        var db = j.Dbeta == null ? default : new Span<float>(j.Dbeta + c0, n);
        if (!j.Accumulate)
        {
            dg.Clear();
            db.Clear();
        }

        for (int r = 0; r < j.Rows; r++)
        {
            long at = ((long)r * d) + c0;
            var gRow = new ReadOnlySpan<float>(j.Dy + at, n);
            if (j.Dgamma != null)
            {
                AccumulateScaledDeviation(gRow, new ReadOnlySpan<float>(j.Input + at, n), j.Mean[r], j.Rstd[r], dg);
            }

            if (j.Dbeta != null)
            {
                TensorPrimitives.Add(db, gRow, db);
            }
        }
    }

    // acc += g·(v − m)·rs
    private static void AccumulateScaledDeviation(ReadOnlySpan<float> g, ReadOnlySpan<float> v, float m, float rs, Span<float> acc)
    {
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float vr = ref MemoryMarshal.GetReference(v);
        ref float ar = ref MemoryMarshal.GetReference(acc);
        var mv = Vector512.Create(m);
        var kv = Vector512.Create(rs);
        int i = 0;
        for (; i <= g.Length - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var xhat = (Vector512.LoadUnsafe(ref vr, (nuint)i) - mv) * kv;
            Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref gr, (nuint)i), xhat, Vector512.LoadUnsafe(ref ar, (nuint)i))
                .StoreUnsafe(ref ar, (nuint)i);
        }

        for (; i < g.Length; i++)
        {
            acc[i] = MathF.FusedMultiplyAdd(g[i], (v[i] - m) * rs, acc[i]);
        }
    }

    // One row on the host: dy, input [d], gamma [d] -> dx [d]
    private static unsafe void BackwardRow(int r, in BackwardJob j)
    {
        int d = j.D;
        bool accumulateInput = j.AccumulateInput;
        long start = (long)r * d;
        ReadOnlySpan<float> g = new(j.Dy + start, d);
        ReadOnlySpan<float> v = new(j.Input + start, d);
        ReadOnlySpan<float> w = new(j.Gamma, d);
        var o = new Span<float>(j.Dx + start, d);
        float m = j.Mean[r];
        float rs = j.Rstd[r];
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float vr = ref MemoryMarshal.GetReference(v);
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float or = ref MemoryMarshal.GetReference(o);
        var mv = Vector512.Create(m);
        var kv = Vector512.Create(rs);

        // a = Σ dy·gamma, b = Σ dy·gamma·x̂
        var av = Vector512<float>.Zero;
        var bv = Vector512<float>.Zero;
        int i = 0;
        for (; i <= d - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var gw = Vector512.LoadUnsafe(ref gr, (nuint)i) * Vector512.LoadUnsafe(ref wr, (nuint)i);
            var xhat = (Vector512.LoadUnsafe(ref vr, (nuint)i) - mv) * kv;
            av += gw;
            bv = Vector512.FusedMultiplyAdd(gw, xhat, bv);
        }

        float a = Vector512.Sum(av);
        float b = Vector512.Sum(bv);
        int tail = i;
        for (; i < d; i++)
        {
            float gw = g[i] * w[i];
            a += gw;
            b += gw * ((v[i] - m) * rs);
        }

        a /= d;
        b /= d;

        // dx = rs·(gw − a − x̂·b) (+ dx)
        var aV = Vector512.Create(a);
        var bV = Vector512.Create(b);
        for (i = 0; i < tail; i += Vector512<float>.Count)
        {
            var gw = Vector512.LoadUnsafe(ref gr, (nuint)i) * Vector512.LoadUnsafe(ref wr, (nuint)i);
            var xhat = (Vector512.LoadUnsafe(ref vr, (nuint)i) - mv) * kv;
            var value = (gw - aV - (xhat * bV)) * kv;
            if (accumulateInput)
            {
                value += Vector512.LoadUnsafe(ref or, (nuint)i);
            }

            value.StoreUnsafe(ref or, (nuint)i);
        }

        for (; i < d; i++)
        {
            float xhat = (v[i] - m) * rs;
            float value = ((g[i] * w[i]) - a - (xhat * b)) * rs;
            o[i] = accumulateInput ? o[i] + value : value;
        }
    }

    /// <summary>The relevance pass on the host; item = a range of rows.</summary>
    internal unsafe struct RelevanceJob : ICpuJob
    {
        public float* Dy;
        public float* Gamma;
        public float* Rstd;
        public float* Dx;
        public int D;
        public int Rows;
        public int RowsPerItem;
        public bool Accumulate;

        public readonly void Execute(int item)
        {
            int end = Math.Min(Rows, (item + 1) * RowsPerItem);
            for (int r = item * RowsPerItem; r < end; r++)
            {
                RelevanceRow(r, this);
            }
        }
    }

    // One row on the host: dy [d], gamma [d] -> dx [d] = rs·(dy⊙gamma − mean(dy⊙gamma)) (+ dx)
    private static void RelevanceRow(int r, in RelevanceJob j)
    {
        int d = j.D;
        bool accumulate = j.Accumulate;
        long start = (long)r * d;
        var g = new ReadOnlySpan<float>(j.Dy + start, d);
        var w = new ReadOnlySpan<float>(j.Gamma, d);
        var o = new Span<float>(j.Dx + start, d);
        float rs = j.Rstd[r];
        float shift = TensorPrimitives.Dot(g, w) / d;
        ref float gr = ref MemoryMarshal.GetReference(g);
        ref float wr = ref MemoryMarshal.GetReference(w);
        ref float or = ref MemoryMarshal.GetReference(o);
        var shiftV = Vector512.Create(shift);
        var rsV = Vector512.Create(rs);
        int i = 0;
        for (; i <= d - Vector512<float>.Count; i += Vector512<float>.Count)
        {
            var value = ((Vector512.LoadUnsafe(ref gr, (nuint)i) * Vector512.LoadUnsafe(ref wr, (nuint)i)) - shiftV) * rsV;
            if (accumulate)
            {
                value += Vector512.LoadUnsafe(ref or, (nuint)i);
            }

            value.StoreUnsafe(ref or, (nuint)i);
        }

        for (; i < d; i++)
        {
            float value = ((g[i] * w[i]) - shift) * rs;
            o[i] = accumulate ? o[i] + value : value;
        }
    }
}
