using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>Matrix cases for <see cref="AdamW"/> and <see cref="GradientNorm"/> against float64 references.</summary>
public sealed class TrainingCases : IOpCaseSource
{
    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int n in new[] { 1, 1000, 4099 })
        {
            bool tiny = n <= 1000;
            foreach (float decay in new[] { 0f, 0.1f })
            {
                foreach (bool scaled in new[] { false, true })
                {
                    string options = $"n={n} weightDecay={decay}" + (scaled ? " gradientScale" : string.Empty);
                    yield return new OpCase("AdamW.Step", $"{options} step=1", tiny, d => AdamWSteps(d, n, decay, scaled, firstStep: 1, steps: 1));
                    yield return new OpCase("AdamW.Step", $"{options} step=1000", tiny, d => AdamWSteps(d, n, decay, scaled, firstStep: 1000, steps: 1));
                    yield return new OpCase("AdamW.Step", $"{options} steps=1..5", tiny, d => AdamWSteps(d, n, decay, scaled, firstStep: 1, steps: 5));
                }
            }
        }

        foreach (int n in new[] { 1, 1000, 1 << 20 })
        {
            bool tiny = n <= 1000;
            yield return new OpCase("GradientNorm.AccumulateSquares", $"n={n}", tiny, d => AccumulateSquares(d, n));
            yield return new OpCase("GradientNorm.AccumulateSquares", $"n={n} repeatable", tiny, d => Repeatable(d, n));
        }

        yield return new OpCase("GradientNorm.AccumulateSquares", "n=1000 then n=37", true, d =>
        {
            float[] a = TestData.Normal(61, 1000);
            float[] b = TestData.Normal(62, 37);
            using var ta = d.FromHost<float>(a, 10, 100);
            using var tb = d.FromHost<float>(b, 37);
            using var sum = d.FromHost<float>([0f], 1);
            GradientNorm.AccumulateSquares(ta, sum);
            GradientNorm.AccumulateSquares(tb, sum);
            Compare.Close(sum.ToArray(), [a.Sum(v => (double)v * v) + b.Sum(v => (double)v * v)], Tolerances.Reduce, "sumOfSquares");
        });

        // (sum of squares, max norm): within the norm, clipped, zero, huge, and non-finite sums.
        (float Sum, float MaxNorm)[] clips = [(0.25f, 1f), (16f, 1f), (0f, 1f), (1e30f, 5f), (float.NaN, 1f), (float.PositiveInfinity, 1f), (2f, 0.5f)];
        foreach (var (sum, maxNorm) in clips)
        {
            yield return new OpCase("GradientNorm.ClipFactor", $"sum={sum} maxNorm={maxNorm}", true, d => ClipFactor(d, sum, maxNorm));
        }
    }

    private static void AdamWSteps(Device device, int n, float decay, bool scaled, int firstStep, int steps)
    {
        var settings = new AdamWSettings(1e-2f, WeightDecay: decay);
        float[] p = TestData.Normal(51, n);
        float[] m = firstStep == 1 ? new float[n] : TestData.Normal(52, n, 0.1f);
        float[] v = firstStep == 1 ? new float[n] : TestData.Uniform(53, n, 0.05f).Select(x => x * x).ToArray();
        float gradientScale = 0.37f;
        using var tp = device.FromHost<float>(p, n);
        using var tm = device.FromHost<float>(m, n);
        using var tv = device.FromHost<float>(v, n);
        using var tg = device.Allocate<float>(n);
        using var ts = scaled ? device.FromHost<float>([gradientScale], 1) : null;

        double[] rp = TestData.ToDouble(p);
        double[] rm = TestData.ToDouble(m);
        double[] rv = TestData.ToDouble(v);
        for (int s = 0; s < steps; s++)
        {
            int t = firstStep + s;
            float[] g = TestData.Normal(54 + s, n);
            tg.CopyFrom(g);
            AdamW.Step(tp, tg, tm, tv, settings, t, ts);

            double lr = settings.LearningRate;
            double b1 = settings.Beta1;
            double b2 = settings.Beta2;
            for (int i = 0; i < n; i++)
            {
                double gi = g[i] * (scaled ? (double)gradientScale : 1.0);
                rp[i] *= 1 - (lr * decay);
                rm[i] = (b1 * rm[i]) + ((1 - b1) * gi);
                rv[i] = (b2 * rv[i]) + ((1 - b2) * gi * gi);
                double mHat = rm[i] / (1 - Math.Pow(b1, t));
                double vHat = rv[i] / (1 - Math.Pow(b2, t));
                rp[i] -= lr * mHat / (Math.Sqrt(vHat) + settings.Epsilon);
            }
        }

        Compare.Close(tp.ToArray(), rp, Tolerances.AdamW, "parameter");
        Compare.Close(tm.ToArray(), rm, Tolerances.AdamW, "m");
        Compare.Close(tv.ToArray(), rv, Tolerances.AdamW, "v");
    }

    private static void AccumulateSquares(Device device, int n)
    {
        float[] x = TestData.Normal(63, n);
        using var tx = device.FromHost<float>(x, n);
        using var sum = device.FromHost<float>([0.5f], 1);
        GradientNorm.AccumulateSquares(tx, sum);
        Compare.Close(sum.ToArray(), [0.5 + x.Sum(v => (double)v * v)], Tolerances.Reduce, "sumOfSquares");
    }

    // The same input twice gives the same bits.
    private static void Repeatable(Device device, int n)
    {
        float[] x = TestData.Uniform(64, n, 3f);
        using var tx = device.FromHost<float>(x, n);
        using var first = device.FromHost<float>([0f], 1);
        using var second = device.FromHost<float>([0f], 1);
        GradientNorm.AccumulateSquares(tx, first);
        GradientNorm.AccumulateSquares(tx, second);
        Compare.Exact(second.ToArray(), first.ToArray(), "sumOfSquares run twice");
    }

    private static void ClipFactor(Device device, float sum, float maxNorm)
    {
        using var ts = device.FromHost<float>([sum], 1);
        using var factor = TestData.Poisoned(device, 1);
        factor.Fill(-1f);
        GradientNorm.ClipFactor(ts, maxNorm, factor);
        double expected = double.IsFinite(sum) ? Math.Min(1, maxNorm / (Math.Sqrt(sum) + 1e-6)) : double.NaN;
        Compare.Close(factor.ToArray(), [expected], Tolerances.Elementwise, "factor");
    }
}
