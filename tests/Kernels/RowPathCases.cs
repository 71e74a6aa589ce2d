using Headlight.Kernels;
using Headlight.Tests.Ops;

namespace Headlight.Tests.Kernels;

/// <summary>
/// Matrix cases for the two ILGPU paths of the row kernels (LayerNorm, softmax, row reductions): one warp per
/// row with shuffle reductions (taken where the backend has warps, as ILGPU's CPU simulator and CUDA do, and
/// rows are at most <see cref="GroupReduce.MaxWarpRow"/> long) and one group per row through shared memory
/// (backends without warps, as PoCL, longer rows, or forced with <see cref="GroupReduce.ForceSharedRows"/>).
/// Shapes hit a row shorter than a warp, one and a warp length apart, rows that leave a group part empty, and
/// both sides of the warp path's row limit.
/// </summary>
public sealed class RowPathCases : IOpCaseSource
{
    private static readonly (int Rows, int D)[] Shapes = [(1, 1), (3, 31), (9, 32), (5, 33), (17, 65), (2, 1024), (2, 1025)];

    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (bool shared in new[] { false, true })
        {
            string path = shared ? "rows=shared" : "rows=default";
            foreach (var (rows, d) in Shapes)
            {
                string s = $"[{rows}, {d}] {path}";
                yield return new OpCase("LayerNorm.Relevance", s, true, On(shared, dev => LayerNormRelevance(dev, rows, d, accumulate: false)));
                yield return new OpCase("LayerNorm.Relevance+accumulate", s, true, On(shared, dev => LayerNormRelevance(dev, rows, d, accumulate: true)));
                yield return new OpCase("LayerNorm.Backward", $"{s} rows path", true, On(shared, dev => LayerNormBackward(dev, rows, d)));
                yield return new OpCase("Reduce.RowSum", $"{s} rows path", true, On(shared, dev => RowReduce(dev, rows, d, Reduce.RowSum, r => r.Sum())));
                yield return new OpCase("Reduce.RowMax", $"{s} rows path", true, On(shared, dev => RowReduce(dev, rows, d, Reduce.RowMax, r => r.Max())));
                yield return new OpCase("Reduce.RowL2Norm", $"{s} rows path", true, On(shared, dev => RowReduce(dev, rows, d, Reduce.RowL2Norm, r => Math.Sqrt(r.Sum(v => v * v)))));
                yield return new OpCase("Softmax.Relevance+mask+causal", $"[2, {rows}, {d}] {path}", true, On(shared, dev => SoftmaxRelevance(dev, rows, d)));
            }
        }
    }

    /// <summary>The case, run with the shared-memory row path forced when <paramref name="shared"/> is set.</summary>
    internal static Action<Device> On(bool shared, Action<Device> run) => device =>
    {
        if (!shared)
        {
            run(device);
            return;
        }

        using (GroupReduce.ForceSharedRows())
        {
            run(device);
        }
    };

    // dx = (dy·γ − mean(dy·γ)) · rstd per row (the identity rule with σ held constant), onto a prior dx when accumulating.
    private static void LayerNormRelevance(Device device, int rows, int d, bool accumulate)
    {
        float[] dy = TestData.Normal(3101, rows * d);
        float[] gamma = TestData.Uniform(3102, d, 0.5f).Select(v => v + 1f).ToArray();
        float[] rstd = TestData.Uniform(3103, rows, 0.5f).Select(v => v + 1f).ToArray();
        float[] prior = TestData.Normal(3104, rows * d);
        var expected = new double[rows * d];
        for (int r = 0; r < rows; r++)
        {
            double mean = 0;
            for (int c = 0; c < d; c++)
            {
                mean += (double)dy[(r * d) + c] * gamma[c];
            }

            mean /= d;
            for (int c = 0; c < d; c++)
            {
                int i = (r * d) + c;
                expected[i] = (((double)dy[i] * gamma[c]) - mean) * rstd[r] + (accumulate ? prior[i] : 0);
            }
        }

        using var tdy = device.FromHost<float>(dy, rows, d);
        using var tg = device.FromHost<float>(gamma, d);
        using var trs = device.FromHost<float>(rstd, rows);
        using var tdx = accumulate ? device.FromHost<float>(prior, rows, d) : TestData.Poisoned(device, rows, d);
        LayerNorm.Relevance(tdy, tg, trs, tdx, accumulateInput: accumulate);
        Compare.Close(tdx.ToArray(), expected, Tolerances.LayerNorm, "dx");
    }

    // The input gradient against the float64 reference, statistics from the float64 forward.
    private static void LayerNormBackward(Device device, int rows, int d)
    {
        float[] x = TestData.Normal(3111, rows * d, 2f);
        float[] gamma = TestData.Uniform(3112, d, 0.5f).Select(v => v + 1f).ToArray();
        float[] dy = TestData.Normal(3113, rows * d);
        var mean = new float[rows];
        var rstd = new float[rows];
        var expected = new double[rows * d];
        for (int r = 0; r < rows; r++)
        {
            var row = x.AsSpan(r * d, d).ToArray();
            double m = row.Average(v => (double)v);
            double rs = 1 / Math.Sqrt((row.Sum(v => (v - m) * (v - m)) / d) + 1e-5);
            mean[r] = (float)m;
            rstd[r] = (float)rs;
            double a = 0;
            double b = 0;
            for (int c = 0; c < d; c++)
            {
                double g = (double)dy[(r * d) + c] * gamma[c];
                a += g;
                b += g * (row[c] - mean[r]) * rstd[r];
            }

            a /= d;
            b /= d;
            for (int c = 0; c < d; c++)
            {
                double xhat = (row[c] - mean[r]) * (double)rstd[r];
                expected[(r * d) + c] = (((double)dy[(r * d) + c] * gamma[c]) - a - (xhat * b)) * rstd[r];
            }
        }

        using var tdy = device.FromHost<float>(dy, rows, d);
        using var tx = device.FromHost<float>(x, rows, d);
        using var tg = device.FromHost<float>(gamma, d);
        using var tm = device.FromHost<float>(mean, rows);
        using var trs = device.FromHost<float>(rstd, rows);
        using var tdx = TestData.Poisoned(device, rows, d);
        LayerNorm.Backward(tdy, tx, tg, tm, trs, tdx, null, null);
        Compare.Close(tdx.ToArray(), expected, Tolerances.LayerNorm, "dx");
    }

    private static void RowReduce(Device device, int rows, int d, Action<Tensor<float>, Tensor<float>> op, Func<IEnumerable<double>, double> reference)
    {
        float[] x = TestData.Normal(3121, rows * d);
        using var tx = device.FromHost<float>(x, rows, d);
        using var ty = TestData.Poisoned(device, rows);
        op(tx, ty);
        var expected = Enumerable.Range(0, rows).Select(r => reference(x.Skip(r * d).Take(d).Select(v => (double)v))).ToArray();
        Compare.Close(ty.ToArray(), expected, Tolerances.Reduce, "y");
    }

    // result = scale·x·(R − y·ΣR) over the allowed columns (key mask and causal), 0 elsewhere; y from the float64 forward.
    private static void SoftmaxRelevance(Device device, int rows, int cols)
    {
        const float scale = 0.25f;
        int n = 2 * rows * cols;
        float[] x = TestData.Normal(3131, n);
        float[] relevance = TestData.Normal(3132, n);
        int[] mask = SoftmaxCases.RandomMask(3133, 2, cols);
        mask[0] = 1;
        double[] y = SoftmaxCases.Reference(x.Select(v => (double)v).ToArray(), rows, cols, scale, mask, 2, causal: true);
        float[] yf = y.Select(v => (float)v).ToArray();
        var expected = new double[n];
        for (int o = 0; o < 2; o++)
        {
            for (int i = 0; i < rows; i++)
            {
                int start = ((o * rows) + i) * cols;
                bool Allowed(int j) => mask[(o * cols) + j] != 0 && j <= i + cols - rows;
                double total = 0;
                for (int j = 0; j < cols; j++)
                {
                    total += Allowed(j) ? relevance[start + j] : 0;
                }

                for (int j = 0; j < cols; j++)
                {
                    expected[start + j] = Allowed(j) ? scale * (double)x[start + j] * (relevance[start + j] - (yf[start + j] * total)) : 0;
                }
            }
        }

        using var tx = device.FromHost<float>(x, 2, rows, cols);
        using var ty = device.FromHost<float>(yf, 2, rows, cols);
        using var tr = device.FromHost<float>(relevance, 2, rows, cols);
        using var tm = device.FromHost<int>(mask, 2, cols);
        using var result = TestData.Poisoned(device, 2, rows, cols);
        Softmax.Relevance(tx, ty, tr, result, scale, tm, causal: true);
        Compare.Close(result.ToArray(), expected, Tolerances.Softmax, "result");
    }
}
