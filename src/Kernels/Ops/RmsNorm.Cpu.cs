using System.Runtime.Intrinsics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>RmsNorm on the managed SIMD backend: ranges of rows (and of dGamma columns) over the device's workers.</summary>
internal sealed partial class CpuBackend
{
    internal override unsafe void RmsNormForward(Tensor<float> x, Tensor<float> gamma, Tensor<float> y, float epsilon, Tensor<float>? rstd, int rows, int d)
    {
        fixed (float* px = x.HostSpan, pg = gamma.HostSpan, py = y.HostSpan, ps = rstd is null ? default : rstd.HostSpan)
        {
            var job = new RmsNorm.HostJob
            {
                X = px, Gamma = pg, Y = py, Rstd = rstd is null ? null : ps, D = d, Rows = rows, Epsilon = epsilon,
                Pass = RmsNorm.HostPass.Forward, RowsPerItem = LayerNorm.RowsPerItem(Workers, rows, d),
            };
            Workers.Run(ref job, LayerNorm.DivUp(rows, job.RowsPerItem));
        }
    }

    internal override unsafe void RmsNormBackward(Tensor<float> dOutput, Tensor<float> input, Tensor<float> gamma, Tensor<float> rstd,
        Tensor<float> dInput, Tensor<float>? dGamma, bool accumulateInput, int rows, int d)
    {
        fixed (float* pdy = dOutput.HostSpan, px = input.HostSpan, pg = gamma.HostSpan, ps = rstd.HostSpan, pdx = dInput.HostSpan)
        fixed (float* pdg = dGamma is null ? default : dGamma.HostSpan)
        {
            var job = new RmsNorm.HostJob
            {
                Dy = pdy, X = px, Gamma = pg, Rstd = ps, Y = pdx, DGamma = pdg, D = d, Rows = rows, Accumulate = accumulateInput,
            };

            // The column sums run first: they read dOutput and input, which dInput may overwrite.
            if (dGamma is not null)
            {
                bool parallel = (long)rows * d >= LayerNorm.ParallelThreshold && Workers.Threads > 1;
                job.Pass = RmsNorm.HostPass.GammaColumns;
                job.ColumnsPerItem = parallel ? Math.Min(RmsNorm.HostColumns, LayerNorm.RoundUp(LayerNorm.DivUp(d, Workers.Threads), 16)) : RmsNorm.HostColumns;
                Workers.Run(ref job, LayerNorm.DivUp(d, job.ColumnsPerItem));
            }

            job.Pass = RmsNorm.HostPass.Backward;
            job.RowsPerItem = LayerNorm.RowsPerItem(Workers, rows, d);
            Workers.Run(ref job, LayerNorm.DivUp(rows, job.RowsPerItem));
        }
    }

    internal override unsafe void RmsNormRelevance(Tensor<float> dOutput, Tensor<float> gamma, Tensor<float> rstd, Tensor<float> dInput, bool accumulate, int rows, int d)
    {
        fixed (float* pdy = dOutput.HostSpan, pg = gamma.HostSpan, ps = rstd.HostSpan, pdx = dInput.HostSpan)
        {
            var job = new RmsNorm.HostJob
            {
                Dy = pdy, Gamma = pg, Rstd = ps, Y = pdx, D = d, Rows = rows, Accumulate = accumulate,
                Pass = RmsNorm.HostPass.Relevance, RowsPerItem = LayerNorm.RowsPerItem(Workers, rows, d),
            };
            Workers.Run(ref job, LayerNorm.DivUp(rows, job.RowsPerItem));
        }
    }
}

/// <summary>RmsNorm's host SIMD code: the rows of the three passes and the dGamma columns.</summary>
public static partial class RmsNorm
{
    // Columns of dGamma one work item sums (a stack buffer of this many floats).
    internal const int HostColumns = 256;

    internal enum HostPass
    {
        Forward,
        Backward,
        Relevance,
        GammaColumns,
    }

    /// <summary>One RmsNorm pass on the host; item = a range of rows, or of dGamma columns.</summary>
    internal unsafe struct HostJob : ICpuJob
    {
        public float* X;
        public float* Dy;
        public float* Gamma;
        public float* Y; // y for the forward pass, dInput for the others
        public float* Rstd;
        public float* DGamma;
        public int D;
        public int Rows;
        public int RowsPerItem;
        public int ColumnsPerItem;
        public float Epsilon;
        public bool Accumulate;
        public HostPass Pass;

        public readonly void Execute(int item)
        {
            if (Pass == HostPass.GammaColumns)
            {
                int c0 = item * ColumnsPerItem;
                GammaColumns(c0, Math.Min(ColumnsPerItem, D - c0));
                return;
            }

            int end = Math.Min(Rows, (item + 1) * RowsPerItem);
            for (int r = item * RowsPerItem; r < end; r++)
            {
                long start = (long)r * D;
                var gamma = new ReadOnlySpan<float>(Gamma, D);
                var output = new Span<float>(Y + start, D);
                switch (Pass)
                {
                    case HostPass.Forward:
                    {
                        // x [d] -> y [d] (y may be x); rstd [1]
                        var x = new ReadOnlySpan<float>(X + start, D);
                        float rs = 1f / MathF.Sqrt((TensorPrimitives.SumOfSquares(x) / D) + Epsilon);
                        TensorPrimitives.Multiply(x, rs, output);
                        TensorPrimitives.Multiply(output, gamma, output);
                        if (Rstd != null)
                        {
                            Rstd[r] = rs;
                        }

                        break;
                    }

                    case HostPass.Backward:
                        BackwardRow(new ReadOnlySpan<float>(Dy + start, D), new ReadOnlySpan<float>(X + start, D), gamma, Rstd[r], output, Accumulate);
                        break;

                    default:
                        RelevanceRow(new ReadOnlySpan<float>(Dy + start, D), gamma, Rstd[r], output, Accumulate);
                        break;
                }
            }
        }

        // dGamma[c0 .. c0 + count) += Σ_rows dy·x·rstd, summed in a stack buffer first.
        private readonly void GammaColumns(int c0, int count)
        {
            Span<float> sum = stackalloc float[HostColumns];
            sum = sum[..count];
            sum.Clear();
            for (int r = 0; r < Rows; r++)
            {
                long start = ((long)r * D) + c0;
                var dy = new ReadOnlySpan<float>(Dy + start, count);
                var x = new ReadOnlySpan<float>(X + start, count);
                float rs = Rstd[r];
                int i = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    var vrs = Vector256.Create(rs);
                    for (; i <= count - Vector256<float>.Count; i += Vector256<float>.Count)
                    {
                        var acc = Vector256.Create(sum.Slice(i, Vector256<float>.Count));
                        var v = Vector256.Create(dy.Slice(i, Vector256<float>.Count)) * Vector256.Create(x.Slice(i, Vector256<float>.Count));
                        Vector256.FusedMultiplyAdd(v, vrs, acc).CopyTo(sum.Slice(i, Vector256<float>.Count));
                    }
                }

                for (; i < count; i++)
                {
                    sum[i] += dy[i] * x[i] * rs;
                }
            }

            var dGamma = new Span<float>(DGamma + c0, count);
            TensorPrimitives.Add(dGamma, sum, dGamma);
        }
    }

    // dx = rstd·(g − x̂·mean(g ⊙ x̂)), g = dy ⊙ gamma, x̂ = x·rstd; dx may be dy, or x when overwritten.
    private static void BackwardRow(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> gamma, float rs, Span<float> dx, bool accumulate)
    {
        int d = dy.Length;
        float dot = 0f;
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var acc = Vector256<float>.Zero;
            for (; i <= d - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var g = Vector256.Create(dy.Slice(i, Vector256<float>.Count)) * Vector256.Create(gamma.Slice(i, Vector256<float>.Count));
                acc = Vector256.FusedMultiplyAdd(g, Vector256.Create(x.Slice(i, Vector256<float>.Count)), acc);
            }

            dot = Vector256.Sum(acc);
        }

        for (; i < d; i++)
        {
            dot += dy[i] * gamma[i] * x[i];
        }

        // dx = rs·g − x·(rs³·Σ g·x / d)
        float k = rs * rs * rs * dot / d;
        i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var vrs = Vector256.Create(rs);
            var vk = Vector256.Create(k);
            for (; i <= d - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var g = Vector256.Create(dy.Slice(i, Vector256<float>.Count)) * Vector256.Create(gamma.Slice(i, Vector256<float>.Count));
                var value = (g * vrs) - (Vector256.Create(x.Slice(i, Vector256<float>.Count)) * vk);
                if (accumulate)
                {
                    value += Vector256.Create(dx.Slice(i, Vector256<float>.Count));
                }

                value.CopyTo(dx.Slice(i, Vector256<float>.Count));
            }
        }

        for (; i < d; i++)
        {
            float value = (dy[i] * gamma[i] * rs) - (x[i] * k);
            dx[i] = accumulate ? dx[i] + value : value;
        }
    }

    // dx = dy ⊙ gamma·rstd (overwritten or added).
    private static void RelevanceRow(ReadOnlySpan<float> dy, ReadOnlySpan<float> gamma, float rs, Span<float> dx, bool accumulate)
    {
        if (accumulate)
        {
            int i = 0;
            if (Vector256.IsHardwareAccelerated)
            {
                var vrs = Vector256.Create(rs);
                for (; i <= dy.Length - Vector256<float>.Count; i += Vector256<float>.Count)
                {
                    var g = Vector256.Create(dy.Slice(i, Vector256<float>.Count)) * Vector256.Create(gamma.Slice(i, Vector256<float>.Count));
                    Vector256.FusedMultiplyAdd(g, vrs, Vector256.Create(dx.Slice(i, Vector256<float>.Count))).CopyTo(dx.Slice(i, Vector256<float>.Count));
                }
            }

            for (; i < dy.Length; i++)
            {
                dx[i] += dy[i] * gamma[i] * rs;
            }

            return;
        }

        TensorPrimitives.Multiply(dy, gamma, dx);
        TensorPrimitives.Multiply(dx, rs, dx);
    }
}
