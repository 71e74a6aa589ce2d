using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="SwiGlu"/>: forward, backward (float64 derivative and central finite differences) and
/// AttnLRP's rule (float64 formula and conservation), gates spread over [-12, 12] to reach both sigmoid tails.
/// </summary>
public sealed class SwiGluCases : IOpCaseSource
{
    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int rows in new[] { 1, 3, 17, 67 })
        {
            foreach (int n in new[] { 1, 5, 33, 130 })
            {
                bool tiny = rows <= 17 && n <= 33;
                string shape = $"[{rows}, 2·{n}]";
                yield return new OpCase("SwiGlu.Forward", shape, tiny, d => Forward(d, rows, n));
                yield return new OpCase("SwiGlu.Backward", shape, tiny, d => Backward(d, rows, n, relevance: false, inPlace: false));
                yield return new OpCase("SwiGlu.Relevance", shape, tiny, d => Backward(d, rows, n, relevance: true, inPlace: false));
            }
        }

        yield return new OpCase("SwiGlu.Backward", "[17, 2·33] dGateUp=gateUp", true, d => Backward(d, 17, 33, relevance: false, inPlace: true));
        yield return new OpCase("SwiGlu.Relevance", "[17, 2·33] dGateUp=gateUp", true, d => Backward(d, 17, 33, relevance: true, inPlace: true));
        yield return new OpCase("SwiGlu.Backward", "[2, 3, 2·4] finite differences", true, d => FiniteDifferences(d));
    }

    private static float[] GateUp(int rows, int n)
    {
        float[] gateUp = TestData.Uniform(1001, rows * 2 * n, 12f);
        float[] up = TestData.Normal(1002, rows * n);
        for (int r = 0; r < rows; r++)
        {
            up.AsSpan(r * n, n).CopyTo(gateUp.AsSpan((r * 2 * n) + n, n));
        }

        return gateUp;
    }

    private static double Sigmoid(double u) => 1 / (1 + Math.Exp(-u));

    private static void Forward(Device device, int rows, int n)
    {
        float[] gu = GateUp(rows, n);
        using var tgu = device.FromHost<float>(gu, rows, 2 * n);
        using var ty = TestData.Poisoned(device, rows, n);
        SwiGlu.Forward(tgu, ty);
        var want = new double[rows * n];
        for (int r = 0; r < rows; r++)
        {
            for (int j = 0; j < n; j++)
            {
                double g = gu[(r * 2 * n) + j];
                want[(r * n) + j] = g * Sigmoid(g) * gu[(r * 2 * n) + n + j];
            }
        }

        Compare.Close(ty.ToArray(), want, Tolerances.SwiGlu, "y");
    }

    private static void Backward(Device device, int rows, int n, bool relevance, bool inPlace)
    {
        float[] gu = GateUp(rows, n);
        float[] dy = TestData.Normal(1003, rows * n);
        using var tgu = device.FromHost<float>(gu, rows, 2 * n);
        using var tdy = device.FromHost<float>(dy, rows, n);
        using var fresh = TestData.Poisoned(device, rows, 2 * n);
        var tdgu = inPlace ? tgu : fresh;
        if (relevance)
        {
            SwiGlu.Relevance(tgu, tdy, tdgu);
        }
        else
        {
            SwiGlu.Backward(tgu, tdy, tdgu);
        }

        var want = new double[rows * 2 * n];
        double[] rOut = new double[rows * n];
        for (int r = 0; r < rows; r++)
        {
            for (int j = 0; j < n; j++)
            {
                double g = gu[(r * 2 * n) + j];
                double u = gu[(r * 2 * n) + n + j];
                double d = dy[(r * n) + j];
                double s = Sigmoid(g);
                double silu = g * s;
                rOut[(r * n) + j] = silu * u * d;
                if (relevance)
                {
                    want[(r * 2 * n) + j] = d * u * s / 2;
                    want[(r * 2 * n) + n + j] = d * silu / 2;
                }
                else
                {
                    // silu′(g) = s + g·s·(1 − s)
                    want[(r * 2 * n) + j] = d * u * (s + (g * s * (1 - s)));
                    want[(r * 2 * n) + n + j] = d * silu;
                }
            }
        }

        float[] dgu = tdgu.ToArray();
        Compare.Close(dgu, want, Tolerances.SwiGlu, relevance ? "dGateUp (relevance)" : "dGateUp");
        if (relevance)
        {
            // Conservation per element: gate ⊙ d gate = up ⊙ d up = y ⊙ dy / 2.
            var half = new double[rows * 2 * n];
            var got = new float[rows * 2 * n];
            for (int r = 0; r < rows; r++)
            {
                for (int j = 0; j < 2 * n; j++)
                {
                    int i = (r * 2 * n) + j;
                    half[i] = rOut[(r * n) + (j % n)] / 2;
                    got[i] = gu[i] * dgu[i];
                }
            }

            Compare.Close(got, half, Tolerances.SwiGlu, "gateUp ⊙ dGateUp = y ⊙ dy / 2");
        }
    }

    // dGateUp of L = Σ w ⊙ Forward(gateUp) against central differences of the device's own forward pass.
    private static void FiniteDifferences(Device device)
    {
        const int Rows = 6;
        const int N = 4;
        float[] gu = TestData.Uniform(1011, Rows * 2 * N, 3f);
        float[] w = TestData.Normal(1012, Rows * N);
        using var tgu = device.FromHost<float>(gu, 2, 3, 2 * N);
        using var tw = device.FromHost<float>(w, 2, 3, N);
        using var tdgu = TestData.Poisoned(device, 2, 3, 2 * N);
        SwiGlu.Backward(tgu, tw, tdgu);
        float[] analytic = tdgu.ToArray();

        double Loss(float[] input)
        {
            using var ti = device.FromHost<float>(input, 2, 3, 2 * N);
            using var ty = device.Allocate<float>(2, 3, N);
            SwiGlu.Forward(ti, ty);
            return ty.ToArray().Select((v, i) => v * (double)w[i]).Sum();
        }

        const float H = 1e-2f;
        var numeric = new double[gu.Length];
        for (int i = 0; i < gu.Length; i++)
        {
            float keep = gu[i];
            float hi = keep + H;
            float lo = keep - H;
            gu[i] = hi;
            double up = Loss(gu);
            gu[i] = lo;
            double down = Loss(gu);
            gu[i] = keep;
            numeric[i] = (up - down) / ((double)hi - lo);
        }

        Compare.Close(analytic, numeric, Tolerances.FiniteDifference, "dGateUp vs finite differences");
    }
}
