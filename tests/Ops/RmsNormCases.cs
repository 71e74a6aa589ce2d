using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="RmsNorm"/>: forward (with rstd, in place), backward (float64 gradient, dGamma added to
/// what it holds, dInput overwritten, accumulated or in place, and central finite differences) and the identity rule
/// (float64 formula and exact conservation <c>x ⊙ dInput = y ⊙ dOutput</c>).
/// </summary>
public sealed class RmsNormCases : IOpCaseSource
{
    private const float Epsilon = 1e-5f;

    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int rows in TestData.Sizes)
        {
            foreach (int d in new[] { 1, 17, 130 })
            {
                bool tiny = rows <= 17 && d <= 17;
                string shape = $"[{rows}, {d}]";
                yield return new OpCase("RmsNorm.Forward", shape, tiny, dev => Forward(dev, rows, d, inPlace: false));
                yield return new OpCase("RmsNorm.Backward", shape, tiny, dev => Backward(dev, rows, d, Mode.Plain));
                yield return new OpCase("RmsNorm.Relevance", shape, tiny, dev => Relevance(dev, rows, d, Mode.Plain));
            }
        }

        yield return new OpCase("RmsNorm.Forward", "[17, 33] y=x", true, dev => Forward(dev, 17, 33, inPlace: true));
        yield return new OpCase("RmsNorm.Backward+accumulate", "[17, 33]", true, dev => Backward(dev, 17, 33, Mode.Accumulate));
        yield return new OpCase("RmsNorm.Backward", "[17, 33] dInput=dOutput", true, dev => Backward(dev, 17, 33, Mode.InPlace));
        yield return new OpCase("RmsNorm.Backward", "[2, 3, 5] finite differences", true, dev => FiniteDifferences(dev));
        yield return new OpCase("RmsNorm.Relevance+accumulate", "[17, 33]", true, dev => Relevance(dev, 17, 33, Mode.Accumulate));
        yield return new OpCase("RmsNorm.Relevance", "[17, 33] dInput=dOutput", true, dev => Relevance(dev, 17, 33, Mode.InPlace));
        yield return new OpCase("RmsNorm.Forward", "[130, 1500]", false, dev => Forward(dev, 130, 1500, inPlace: false));
        yield return new OpCase("RmsNorm.Backward+accumulate", "[130, 1500]", false, dev => Backward(dev, 130, 1500, Mode.Accumulate));
        yield return new OpCase("RmsNorm.Backward", "[300, 384]", false, dev => Backward(dev, 300, 384, Mode.Plain));
    }

    private enum Mode
    {
        Plain,
        Accumulate,
        InPlace,
    }

    private static float[] Gamma(int d) => TestData.Uniform(1102, d, 0.5f).Select(v => v + 1f).ToArray();

    // The float64 rstd of each row of x [rows, d].
    private static double[] Rstd(float[] x, int rows, int d) =>
        Enumerable.Range(0, rows).Select(r => 1 / Math.Sqrt((x.AsSpan(r * d, d).ToArray().Sum(v => (double)v * v) / d) + Epsilon)).ToArray();

    private static void Forward(Device device, int rows, int d, bool inPlace)
    {
        // A common offset: mean(x²) is dominated by it, as it is not in LayerNorm.
        float[] x = TestData.Normal(1101, rows * d, 2f).Select(v => v + 0.5f).ToArray();
        float[] gamma = Gamma(d);
        using var tx = device.FromHost<float>(x, rows, d);
        using var tgamma = device.FromHost<float>(gamma, d);
        using var fresh = TestData.Poisoned(device, rows, d);
        using var trstd = TestData.Poisoned(device, rows);
        var ty = inPlace ? tx : fresh;
        RmsNorm.Forward(tx, tgamma, ty, Epsilon, trstd);
        var rs = Rstd(x, rows, d);
        var want = new double[rows * d];
        for (int i = 0; i < want.Length; i++)
        {
            want[i] = x[i] * rs[i / d] * gamma[i % d];
        }

        Compare.Close(ty.ToArray(), want, Tolerances.LayerNorm, "y");
        Compare.Close(trstd.ToArray(), rs, Tolerances.LayerNorm, "rstd");
    }

    private static void Backward(Device device, int rows, int d, Mode mode)
    {
        float[] x = TestData.Normal(1111, rows * d, 2f);
        float[] gamma = Gamma(d);
        float[] dy = TestData.Normal(1112, rows * d);
        float[] prior = TestData.Normal(1113, rows * d);
        float[] priorGamma = TestData.Normal(1114, d);
        var rs = Rstd(x, rows, d);
        float[] rstd = rs.Select(v => (float)v).ToArray();
        using var tx = device.FromHost<float>(x, rows, d);
        using var tgamma = device.FromHost<float>(gamma, d);
        using var tdy = device.FromHost<float>(dy, rows, d);
        using var trstd = device.FromHost<float>(rstd, rows);
        using var tdGamma = device.FromHost<float>(priorGamma, d);
        bool add = mode == Mode.Accumulate;
        using var fresh = add ? device.FromHost<float>(prior, rows, d) : TestData.Poisoned(device, rows, d);
        var tdx = mode == Mode.InPlace ? tdy : fresh;
        RmsNorm.Backward(tdy, tx, tgamma, trstd, tdx, tdGamma, accumulateInput: add);

        // dx_j = Σ_i dy_i ∂y_i/∂x_j, ∂y_i/∂x_j = gamma_i·rs·(δ_ij − x_i·x_j·rs²/d), written out per row.
        var want = new double[rows * d];
        var wantGamma = TestData.ToDouble(priorGamma);
        for (int r = 0; r < rows; r++)
        {
            double k = rs[r];
            for (int j = 0; j < d; j++)
            {
                double sum = 0;
                for (int i = 0; i < d; i++)
                {
                    double jac = gamma[i] * k * ((i == j ? 1 : 0) - (x[(r * d) + i] * (double)x[(r * d) + j] * k * k / d));
                    sum += dy[(r * d) + i] * jac;
                }

                want[(r * d) + j] = add ? prior[(r * d) + j] + sum : sum;
                wantGamma[j] += dy[(r * d) + j] * (double)x[(r * d) + j] * rstd[r];
            }
        }

        Compare.Close(tdx.ToArray(), want, Tolerances.LayerNorm, "dInput");
        Compare.Close(tdGamma.ToArray(), wantGamma, new Tolerance(Tolerances.Reduce.Absolute * Math.Sqrt(rows), Tolerances.Reduce.Relative), "dGamma");
    }

    // dInput and dGamma of L = Σ w ⊙ Forward(x, gamma) against central differences of the device's own forward pass.
    private static void FiniteDifferences(Device device)
    {
        const int D = 5;
        int[] shape = [2, 3, D];
        int n = 6 * D;
        float[] x = TestData.Normal(1121, n, 1.5f);
        float[] gamma = Gamma(D);
        float[] w = TestData.Normal(1122, n);

        double Loss(float[] xs, float[] gs)
        {
            using var tx = device.FromHost<float>(xs, shape);
            using var tg = device.FromHost<float>(gs, D);
            using var ty = device.Allocate<float>(shape);
            RmsNorm.Forward(tx, tg, ty, Epsilon);
            return ty.ToArray().Select((v, i) => v * (double)w[i]).Sum();
        }

        using var tx0 = device.FromHost<float>(x, shape);
        using var tg0 = device.FromHost<float>(gamma, D);
        using var tw = device.FromHost<float>(w, shape);
        using var ty0 = device.Allocate<float>(shape);
        using var trstd = TestData.Poisoned(device, 6);
        using var tdx = TestData.Poisoned(device, shape);
        using var tdg = device.Allocate<float>(D);
        tdg.Fill(0f);
        RmsNorm.Forward(tx0, tg0, ty0, Epsilon, trstd);
        RmsNorm.Backward(tw, tx0, tg0, trstd, tdx, tdg);

        double[] Numeric(float[] values, Func<double> loss)
        {
            const float H = 1e-2f;
            var result = new double[values.Length];
            for (int i = 0; i < values.Length; i++)
            {
                float keep = values[i];
                float hi = keep + H;
                float lo = keep - H;
                values[i] = hi;
                double up = loss();
                values[i] = lo;
                double down = loss();
                values[i] = keep;
                result[i] = (up - down) / ((double)hi - lo);
            }

            return result;
        }

        Compare.Close(tdx.ToArray(), Numeric(x, () => Loss(x, gamma)), Tolerances.FiniteDifference, "dInput vs finite differences");
        Compare.Close(tdg.ToArray(), Numeric(gamma, () => Loss(x, gamma)), Tolerances.FiniteDifference, "dGamma vs finite differences");
    }

    private static void Relevance(Device device, int rows, int d, Mode mode)
    {
        float[] x = TestData.Normal(1131, rows * d, 2f);
        float[] gamma = Gamma(d);
        float[] dy = TestData.Normal(1132, rows * d);
        float[] prior = TestData.Normal(1133, rows * d);
        var rs = Rstd(x, rows, d);
        float[] rstd = rs.Select(v => (float)v).ToArray();
        using var tgamma = device.FromHost<float>(gamma, d);
        using var tdy = device.FromHost<float>(dy, rows, d);
        using var trstd = device.FromHost<float>(rstd, rows);
        bool add = mode == Mode.Accumulate;
        using var fresh = add ? device.FromHost<float>(prior, rows, d) : TestData.Poisoned(device, rows, d);
        var tdx = mode == Mode.InPlace ? tdy : fresh;
        RmsNorm.Relevance(tdy, tgamma, trstd, tdx, add);
        var want = new double[rows * d];
        var rOut = new double[rows * d];
        for (int i = 0; i < want.Length; i++)
        {
            double y = x[i] * (double)rstd[i / d] * gamma[i % d];
            rOut[i] = y * dy[i] + (add ? x[i] * (double)prior[i] : 0);
            want[i] = (add ? prior[i] : 0) + (dy[i] * (double)gamma[i % d] * rstd[i / d]);
        }

        float[] dx = tdx.ToArray();
        Compare.Close(dx, want, Tolerances.LayerNorm, "dInput");
        Compare.Close(ElementwiseLrpCases.Relevance(x, dx), rOut, Tolerances.LayerNorm, "x ⊙ dInput = y ⊙ dOutput");
    }
}
