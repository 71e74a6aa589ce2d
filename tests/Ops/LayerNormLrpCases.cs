using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="LayerNorm.Relevance"/>, AttnLRP's identity rule: with 1/σ held constant LayerNorm is the
/// linear map <c>y_i = Σ_j W_ij x_j + beta_i</c>, <c>W_ij = gamma_i·rstd·(δ_ij − 1/d)</c>, and the float64 reference passes
/// relevance along it: <c>R_x[j] = Σ_i x_j·W_ij·R_y[i] / y_i</c> with <c>R_y = y ⊙ dy</c>.
/// </summary>
public sealed class LayerNormLrpCases : IOpCaseSource
{
    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int rows in TestData.Sizes)
        {
            foreach (int d in new[] { 1, 17, 130 })
            {
                bool tiny = rows <= 17 && d <= 17;
                yield return new OpCase("LayerNorm.Relevance", $"[{rows}, {d}]", tiny, dev => Identity(dev, rows, d, Mode.Plain));
            }
        }

        yield return new OpCase("LayerNorm.Relevance+accumulate", "[17, 33]", true, dev => Identity(dev, 17, 33, Mode.Accumulate));
        yield return new OpCase("LayerNorm.Relevance", "[17, 33] dx=dy", true, dev => Identity(dev, 17, 33, Mode.InPlace));
        yield return new OpCase("LayerNorm.Relevance", "[130, 384]", false, dev => Identity(dev, 130, 384, Mode.Plain));
        yield return new OpCase("LayerNorm.Relevance+accumulate", "[130, 384]", false, dev => Identity(dev, 130, 384, Mode.Accumulate));
    }

    private enum Mode
    {
        Plain,
        Accumulate,
        InPlace,
    }

    private static void Identity(Device device, int rows, int d, Mode mode)
    {
        float[] x = TestData.Normal(821, rows * d, 2f);
        float[] gamma = TestData.Uniform(822, d, 0.5f).Select(v => v + 1f).ToArray();
        float[] beta = TestData.Normal(823, d, 0.2f);
        float[] dy = TestData.Normal(824, rows * d);
        float[] prior = TestData.Normal(825, rows * d);
        var rstd = new float[rows];
        var expected = new double[rows * d];
        for (int r = 0; r < rows; r++)
        {
            var row = x.AsSpan(r * d, d).ToArray();
            double mean = row.Average(v => (double)v);
            double variance = row.Sum(v => (v - mean) * (v - mean)) / d;
            rstd[r] = (float)(1 / Math.Sqrt(variance + 1e-5));
            double rs = rstd[r];
            for (int i = 0; i < d; i++)
            {
                double y = ((row[i] - mean) * rs * gamma[i]) + beta[i];
                double message = y * dy[(r * d) + i] / y; // R_y[i] / y_i
                for (int j = 0; j < d; j++)
                {
                    double w = gamma[i] * rs * ((i == j ? 1 : 0) - (1.0 / d));
                    expected[(r * d) + j] += row[j] * w * message;
                }
            }

            if (mode == Mode.Accumulate)
            {
                for (int j = 0; j < d; j++)
                {
                    expected[(r * d) + j] += (double)row[j] * prior[(r * d) + j];
                }
            }
        }

        using var tdy = device.FromHost<float>(dy, rows, d);
        using var tgamma = device.FromHost<float>(gamma, d);
        using var trstd = device.FromHost<float>(rstd, rows);
        using var poisoned = mode == Mode.Accumulate ? device.FromHost<float>(prior, rows, d) : TestData.Poisoned(device, rows, d);
        var tdx = mode == Mode.InPlace ? tdy : poisoned;
        LayerNorm.Relevance(tdy, tgamma, trstd, tdx, accumulateInput: mode == Mode.Accumulate);
        Compare.Close(ElementwiseLrpCases.Relevance(x, tdx.ToArray()), expected, Tolerances.LayerNorm, "R_x = x ⊙ dx");
    }
}
