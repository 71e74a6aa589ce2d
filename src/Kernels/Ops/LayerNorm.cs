using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>
/// Layer normalisation over the last axis, <c>y = (v − mean)·rstd·gamma + beta</c> with
/// <c>rstd = 1/√(var + ε)</c> and the variance divided by d (as BERT and GPT-2 do), optionally
/// fused with the residual add that precedes it (<c>v = x + residual</c>).
/// </summary>
/// <remarks>
/// The statistics are computed by the corrected two-pass method: a first mean <c>m₀</c>, then
/// <c>Σ(v − m₀)</c> and <c>Σ(v − m₀)²</c>, whose first sum corrects the mean and the variance. The
/// differences <c>v − m₀</c> carry no cancellation, so rows with a large common offset and
/// ε = 1e-12 (BERT) stay accurate where <c>E[v²] − E[v]²</c> would not.
/// </remarks>
public static unsafe class LayerNorm
{
    private const int ParallelThreshold = 1 << 15;

    // On ILGPU's CPU accelerator, inputs up to this many elements keep the group-per-row kernel (so tests of tiny
    // shapes still run it there); larger ones take the barrier-free thread-per-row kernel.
    private const long SimulatorGroupWork = 1 << 10;

    // Kernel flags.
    private const int FlagResidual = 1;
    private const int FlagMean = 2;
    private const int FlagRstd = 4;
    private const int FlagGamma = 1;
    private const int FlagBeta = 2;
    private const int FlagAccumulate = 4;

    // Columns one group of the dgamma/dbeta kernel covers: a warp reads 32 neighbouring floats per row.
    private const int ColumnsPerGroup = 32;

    /// <summary>
    /// <c>y = LN(x)</c>, or <c>y = LN(x + residual)</c> when <paramref name="residual"/> is given, over the last axis.
    /// </summary>
    /// <param name="x">The input <c>[rows..., d]</c>.</param>
    /// <param name="gamma">The scale <c>[d]</c>.</param>
    /// <param name="beta">The shift <c>[d]</c>.</param>
    /// <param name="y">The output, shaped like <paramref name="x"/>; may be <paramref name="x"/> or <paramref name="residual"/>.</param>
    /// <param name="epsilon">Added to the variance; positive (BERT uses 1e-12, GPT-2 1e-5).</param>
    /// <param name="mean">Optional <c>[rows]</c> (any shape of that many elements): receives each row's mean, for <see cref="Backward"/>.</param>
    /// <param name="rstd">Optional <c>[rows]</c>: receives each row's <c>1/√(var + ε)</c>, for <see cref="Backward"/>.</param>
    /// <param name="residual">Optional, shaped like <paramref name="x"/>: added to <paramref name="x"/> before normalising.</param>
    /// <param name="sum">
    /// Optional, shaped like <paramref name="x"/>, only with <paramref name="residual"/>: receives <c>x + residual</c>,
    /// the normalised input that <see cref="Backward"/> needs. May be <paramref name="x"/> or <paramref name="residual"/>.
    /// </param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, or ε is not positive.</exception>
    public static void Forward(Tensor<float> x, Tensor<float> gamma, Tensor<float> beta, Tensor<float> y,
        float epsilon, Tensor<float>? mean = null, Tensor<float>? rstd = null,
        Tensor<float>? residual = null, Tensor<float>? sum = null)
    {
        ForwardWith(x, gamma, beta, y, epsilon, mean, rstd, residual, sum, perThread: null);
    }

    /// <summary>
    /// <see cref="Forward"/> with the ILGPU kernel chosen: <paramref name="perThread"/> true runs one thread per row
    /// without barriers, false one group per row; null chooses (tests run both kernels on every backend this way).
    /// </summary>
    internal static void ForwardWith(Tensor<float> x, Tensor<float> gamma, Tensor<float> beta, Tensor<float> y,
        float epsilon, Tensor<float>? mean, Tensor<float>? rstd, Tensor<float>? residual, Tensor<float>? sum, bool? perThread)
    {
        var args = new OpArgs("LayerNorm.Forward").Add("x", x).Add("gamma", gamma).Add("beta", beta).Add("y", y)
            .AddOptional("mean", mean).AddOptional("rstd", rstd).AddOptional("residual", residual).AddOptional("sum", sum)
            .Require(x.Shape.Rank >= 1 && x.Shape[-1] >= 1, "x must have at least one dimension, and its last (d) must be at least 1")
            .Require(y.Shape == x.Shape, "y must have x's shape")
            .Require(residual is null || residual.Shape == x.Shape, "residual must have x's shape")
            .Require(sum is null || residual is not null, "sum is written only when residual is given")
            .Require(sum is null || sum.Shape == x.Shape, "sum must have x's shape")
            .Require(sum is null || !ReferenceEquals(sum, y), "sum and y must be different tensors")
            .Require(float.IsFinite(epsilon) && epsilon > 0, $"epsilon must be positive and finite (got {epsilon})");
        int d = x.Shape[-1];
        args.Require(gamma.Shape.Rank == 1 && gamma.Length == d, $"gamma must be [d] = [{d}]")
            .Require(beta.Shape.Rank == 1 && beta.Length == d, $"beta must be [d] = [{d}]");
        int rows = args.ToInt32(x.Shape.Rows, "rows");
        args.Require(mean is null || mean.Length == rows, $"mean must have one element per row ({rows})")
            .Require(rstd is null || rstd.Length == rows, $"rstd must have one element per row ({rows})");
        if (rows == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            // The LN input lives in sum, else (fused) in y until it is normalised in place, else in x.
            var input = sum ?? (residual is not null ? y : x);
            int flags = (residual is not null ? FlagResidual : 0) | (mean is not null ? FlagMean : 0) | (rstd is not null ? FlagRstd : 0);

            // ILGPU's CPU accelerator synchronises a group's OS threads at every barrier: beyond tiny inputs a
            // thread per row, without barriers, is far faster there.
            if (perThread ?? (gpu.Kind == DeviceKind.IlgpuCpu && (long)rows * d > SimulatorGroupWork))
            {
                var rowKernel = gpu.GetKernel("LayerNorm.ForwardPerThread", static acc => acc.LoadAutoGroupedKernel<
                    Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    ArrayView<float>, ArrayView<float>, int, float, int>(ForwardPerThreadKernel));
                lock (gpu.SyncRoot)
                {
                    rowKernel(gpu.Accelerator.DefaultStream, rows,
                        x.View, (residual ?? x).View, input.View, gamma.View, beta.View, y.View,
                        (mean ?? x).View, (rstd ?? x).View, d, epsilon, flags);
                }

                return;
            }

            var kernel = gpu.GetKernel("LayerNorm.Forward", static acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, int, float, int>(ForwardKernel));
            int group = RowGroupSize(gpu, d);
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, new KernelConfig(rows, group),
                    x.View, (residual ?? x).View, input.View, gamma.View, beta.View, y.View,
                    (mean ?? x).View, (rstd ?? x).View, d, epsilon, flags);
            }

            return;
        }

        var cpu = (CpuDevice)args.Device;
        fixed (float* px = x.HostSpan, pg = gamma.HostSpan, pb = beta.HostSpan, py = y.HostSpan)
        fixed (float* pm = mean is null ? default : mean.HostSpan, ps = rstd is null ? default : rstd.HostSpan)
        fixed (float* pr = residual is null ? default : residual.HostSpan, psum = sum is null ? default : sum.HostSpan)
        {
            var job = new ForwardJob
            {
                X = px, Gamma = pg, Beta = pb, Y = py, Mean = pm, Rstd = ps, Residual = pr, Sum = psum,
                D = d, Rows = rows, Epsilon = epsilon, RowsPerItem = RowsPerItem(cpu, rows, d),
            };
            cpu.Workers.Run(ref job, DivUp(rows, job.RowsPerItem));
        }
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: with <c>x̂ = (input − mean)·rstd</c> and <c>g = dy ⊙ gamma</c>,
    /// <c>dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂))</c> per row, <c>dgamma = Σ_rows dy ⊙ x̂</c>, <c>dbeta = Σ_rows dy</c>.
    /// </summary>
    /// <param name="dy">The gradient of the output <c>[rows..., d]</c>.</param>
    /// <param name="input">The normalised input: <c>x</c>, or <c>x + residual</c> (the forward's <c>sum</c>).</param>
    /// <param name="gamma">The scale <c>[d]</c>.</param>
    /// <param name="mean">The forward's saved means <c>[rows]</c>.</param>
    /// <param name="rstd">The forward's saved <c>1/√(var + ε)</c> <c>[rows]</c>.</param>
    /// <param name="dx">The input gradient, shaped like <paramref name="dy"/>; may be <paramref name="dy"/>.</param>
    /// <param name="dgamma">Optional <c>[d]</c>: the gradient of gamma.</param>
    /// <param name="dbeta">Optional <c>[d]</c>: the gradient of beta.</param>
    /// <param name="accumulate">Add to <paramref name="dgamma"/> and <paramref name="dbeta"/> instead of overwriting them.</param>
    /// <param name="accumulateInput">Add to <paramref name="dx"/> instead of overwriting it (a residual branch's gradient already there).</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped.</exception>
    public static void Backward(Tensor<float> dy, Tensor<float> input, Tensor<float> gamma,
        Tensor<float> mean, Tensor<float> rstd, Tensor<float> dx, Tensor<float>? dgamma, Tensor<float>? dbeta,
        bool accumulate = false, bool accumulateInput = false)
    {
        var args = new OpArgs("LayerNorm.Backward").Add("dy", dy).Add("input", input).Add("gamma", gamma)
            .Add("mean", mean).Add("rstd", rstd).Add("dx", dx).AddOptional("dgamma", dgamma).AddOptional("dbeta", dbeta)
            .Require(dy.Shape.Rank >= 1 && dy.Shape[-1] >= 1, "dy must have at least one dimension, and its last (d) must be at least 1")
            .Require(input.Shape == dy.Shape && dx.Shape == dy.Shape, "dy, input and dx must have the same shape");
        int d = dy.Shape[-1];
        int rows = args.ToInt32(dy.Shape.Rows, "rows");
        args.Require(gamma.Shape.Rank == 1 && gamma.Length == d, $"gamma must be [d] = [{d}]")
            .Require(dgamma is null || (dgamma.Shape.Rank == 1 && dgamma.Length == d), $"dgamma must be [d] = [{d}]")
            .Require(dbeta is null || (dbeta.Shape.Rank == 1 && dbeta.Length == d), $"dbeta must be [d] = [{d}]")
            .Require(mean.Length == rows && rstd.Length == rows, $"mean and rstd must have one element per row ({rows})")
            .Require(!ReferenceEquals(dx, input) || !accumulateInput, "dx may be input only when it is overwritten");

        if (args.Device is IlgpuDevice gpu)
        {
            // The column sums run first: they read dy, which dx may overwrite.
            if (dgamma is not null || dbeta is not null)
            {
                if (rows == 0)
                {
                    ClearUnlessAccumulating(dgamma, dbeta, accumulate);
                }
                else
                {
                    var columns = gpu.GetKernel("LayerNorm.BackwardParameters", static acc => acc.LoadKernel<
                        ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                        int, int, int, int>(ParameterGradientKernel));
                    // Up to 32 columns by up to 8 row lanes; fewer for tiny shapes.
                    int max = GroupReduce.GroupSizeFor(gpu);
                    int perGroup = Math.Min(Math.Min(ColumnsPerGroup, PowerOfTwoAtLeast(d)), max);
                    int group = perGroup * Math.Min(max / perGroup, PowerOfTwoAtLeast(rows));
                    int flags = (dgamma is not null ? FlagGamma : 0) | (dbeta is not null ? FlagBeta : 0) | (accumulate ? FlagAccumulate : 0);
                    lock (gpu.SyncRoot)
                    {
                        columns(gpu.Accelerator.DefaultStream, new KernelConfig((d + perGroup - 1) / perGroup, group),
                            dy.View, input.View, mean.View, rstd.View, (dgamma ?? gamma).View, (dbeta ?? gamma).View,
                            rows, d, perGroup, flags);
                    }
                }
            }

            if (rows == 0)
            {
                return;
            }

            var kernel = gpu.GetKernel("LayerNorm.Backward", static acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                int, int>(BackwardKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, new KernelConfig(rows, RowGroupSize(gpu, d)),
                    dy.View, input.View, gamma.View, mean.View, rstd.View, dx.View, d, accumulateInput ? 1 : 0);
            }

            return;
        }

        var cpu = (CpuDevice)args.Device;
        bool parallel = (long)rows * d >= ParallelThreshold && cpu.Threads > 1;
        fixed (float* pdy = dy.HostSpan, pin = input.HostSpan, pg = gamma.HostSpan, pm = mean.HostSpan, ps = rstd.HostSpan, pdx = dx.HostSpan)
        fixed (float* pdg = dgamma is null ? default : dgamma.HostSpan, pdb = dbeta is null ? default : dbeta.HostSpan)
        {
            var job = new BackwardJob
            {
                Dy = pdy, Input = pin, Gamma = pg, Mean = pm, Rstd = ps, Dx = pdx,
                Dgamma = dgamma is null ? null : pdg, Dbeta = dbeta is null ? null : pdb,
                D = d, Rows = rows, Accumulate = accumulate, AccumulateInput = accumulateInput,
            };
            if (dgamma is not null || dbeta is not null)
            {
                // Workers own disjoint column ranges (multiples of one vector), so no two write the same element.
                job.ColumnsPerItem = parallel ? RoundUp(DivUp(d, cpu.Threads), Vector512<float>.Count) : d;
                job.Phase = 0;
                cpu.Workers.Run(ref job, DivUp(d, job.ColumnsPerItem));
            }

            job.Phase = 1;
            job.RowsPerItem = parallel ? RowsPerItem(cpu, rows, d) : rows;
            cpu.Workers.Run(ref job, rows == 0 ? 0 : DivUp(rows, job.RowsPerItem));
        }
    }

    // Rows per work item: about four items per thread (claimed dynamically), one item for small inputs.
    private static int RowsPerItem(CpuDevice cpu, int rows, int d)
    {
        if ((long)rows * d < ParallelThreshold || cpu.Threads == 1)
        {
            return Math.Max(rows, 1);
        }

        return Math.Max(1, DivUp(rows, 4 * cpu.Threads));
    }

    private static int DivUp(int value, int divisor) => (value + divisor - 1) / divisor;

    /// <summary>The forward pass on the host; item = a range of rows.</summary>
    private unsafe struct ForwardJob : ICpuJob
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
    private unsafe struct BackwardJob : ICpuJob
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

    /// <summary>
    /// The power-of-two group size for a kernel that gives one group to each row of <paramref name="length"/>
    /// elements: the smallest that covers the row, at most <see cref="GroupReduce.GroupSizeFor"/>. Short rows
    /// then do not keep a 256-thread group waiting at every barrier (which ILGPU's CPU simulator pays for dearly).
    /// </summary>
    internal static int RowGroupSize(IlgpuDevice gpu, int length) => Math.Min(PowerOfTwoAtLeast(length), GroupReduce.GroupSizeFor(gpu));

    private static int PowerOfTwoAtLeast(int value)
    {
        int size = 1;
        while (size < value && size < GroupReduce.MaxGroupSize)
        {
            size *= 2;
        }

        return size;
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    private static void ClearUnlessAccumulating(Tensor<float>? dgamma, Tensor<float>? dbeta, bool accumulate)
    {
        if (!accumulate)
        {
            dgamma?.Fill(0f);
            dbeta?.Fill(0f);
        }
    }

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

    // One group per row. x, residual [rows, d] -> input [rows, d] (x + residual, when fused), y [rows, d]; mean, rstd [rows]
    private static void ForwardKernel(ArrayView<float> x, ArrayView<float> residual, ArrayView<float> input,
        ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd,
        int d, float epsilon, int flags)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int row = Grid.IdxX;
        long start = (long)row * d;

        // Pass 1: the first mean, writing the fused sum on the way (each thread rereads only what it wrote).
        float acc = 0f;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            float v = x[start + c];
            if ((flags & FlagResidual) != 0)
            {
                v += residual[start + c];
                input[start + c] = v;
            }

            acc += v;
        }

        float m0 = GroupReduce.Sum(scratch, acc) / d;

        // Pass 2: deviations from m0, without cancellation.
        float s1 = 0f;
        float s2 = 0f;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            float dv = input[start + c] - m0;
            s1 += dv;
            s2 += dv * dv;
        }

        s1 = GroupReduce.Sum(scratch, s1);
        s2 = GroupReduce.Sum(scratch, s2);
        float shift = s1 / d;
        float rs = 1f / XMath.Sqrt(XMath.Max((s2 / d) - (shift * shift), 0f) + epsilon);

        // Pass 3: normalise; y may be x or input, read and written by the same thread.
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            y[start + c] = ((input[start + c] - m0 - shift) * rs * gamma[c]) + beta[c];
        }

        if (Group.IdxX == 0)
        {
            if ((flags & FlagMean) != 0)
            {
                mean[row] = m0 + shift;
            }

            if ((flags & FlagRstd) != 0)
            {
                rstd[row] = rs;
            }
        }
    }

    // One thread per row, no shared memory or barriers (for ILGPU's CPU accelerator); the same three passes
    // as ForwardKernel. x, residual [rows, d] -> input [rows, d], y [rows, d]; mean, rstd [rows]
    private static void ForwardPerThreadKernel(Index1D row, ArrayView<float> x, ArrayView<float> residual, ArrayView<float> input,
        ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd,
        int d, float epsilon, int flags)
    {
        long start = (long)row.X * d;
        float acc = 0f;
        for (int c = 0; c < d; c++)
        {
            float v = x[start + c];
            if ((flags & FlagResidual) != 0)
            {
                v += residual[start + c];
                input[start + c] = v;
            }

            acc += v;
        }

        float m0 = acc / d;
        float s1 = 0f;
        float s2 = 0f;
        for (int c = 0; c < d; c++)
        {
            float dv = input[start + c] - m0;
            s1 += dv;
            s2 += dv * dv;
        }

        float shift = s1 / d;
        float rs = 1f / XMath.Sqrt(XMath.Max((s2 / d) - (shift * shift), 0f) + epsilon);
        for (int c = 0; c < d; c++)
        {
            y[start + c] = ((input[start + c] - m0 - shift) * rs * gamma[c]) + beta[c];
        }

        if ((flags & FlagMean) != 0)
        {
            mean[row] = m0 + shift;
        }

        if ((flags & FlagRstd) != 0)
        {
            rstd[row] = rs;
        }
    }

    // One group per row. dy, input [rows, d], gamma [d], mean, rstd [rows] -> dx [rows, d]
    private static void BackwardKernel(ArrayView<float> dy, ArrayView<float> input, ArrayView<float> gamma,
        ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> dx, int d, int accumulate)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int row = Grid.IdxX;
        long start = (long)row * d;
        float m = mean[row];
        float rs = rstd[row];
        float a = 0f;
        float b = 0f;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            float gw = dy[start + c] * gamma[c];
            a += gw;
            b += gw * ((input[start + c] - m) * rs);
        }

        a = GroupReduce.Sum(scratch, a) / d;
        b = GroupReduce.Sum(scratch, b) / d;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            float xhat = (input[start + c] - m) * rs;
            float value = ((dy[start + c] * gamma[c]) - a - (xhat * b)) * rs;
            dx[start + c] = accumulate != 0 ? dx[start + c] + value : value;
        }
    }

    // Column sums without atomics: a group covers perGroup columns with Group.DimX / perGroup row lanes, then
    // adds the lanes in shared memory. dy, input [rows, d], mean, rstd [rows] -> dgamma, dbeta [d]
    private static void ParameterGradientKernel(ArrayView<float> dy, ArrayView<float> input, ArrayView<float> mean,
        ArrayView<float> rstd, ArrayView<float> dgamma, ArrayView<float> dbeta, int rows, int d, int perGroup, int flags)
    {
        var gammaScratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        var betaScratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int tid = Group.IdxX;
        int lane = tid / perGroup;
        int lanes = Group.DimX / perGroup;
        int column = (Grid.IdxX * perGroup) + (tid - (lane * perGroup));
        float sg = 0f;
        float sb = 0f;
        if (column < d)
        {
            for (int r = lane; r < rows; r += lanes)
            {
                long i = ((long)r * d) + column;
                float g = dy[i];
                sg += g * ((input[i] - mean[r]) * rstd[r]);
                sb += g;
            }
        }

        gammaScratch[tid] = sg;
        betaScratch[tid] = sb;
        Group.Barrier();
        for (int stride = lanes / 2; stride > 0; stride /= 2)
        {
            if (lane < stride)
            {
                gammaScratch[tid] += gammaScratch[tid + (stride * perGroup)];
                betaScratch[tid] += betaScratch[tid + (stride * perGroup)];
            }

            Group.Barrier();
        }

        if (lane == 0 && column < d)
        {
            bool add = (flags & FlagAccumulate) != 0;
            if ((flags & FlagGamma) != 0)
            {
                dgamma[column] = add ? dgamma[column] + gammaScratch[tid] : gammaScratch[tid];
            }

            if ((flags & FlagBeta) != 0)
            {
                dbeta[column] = add ? dbeta[column] + betaScratch[tid] : betaScratch[tid];
            }
        }
    }
}
