using System.Globalization;

namespace Headlight.Tests;

/// <summary>An allowed error: <c>|actual − expected| ≤ Absolute + Relative · |expected|</c>.</summary>
public readonly record struct Tolerance(double Absolute, double Relative);

/// <summary>Compares a float32 result with its float64 reference; NaN or infinity anywhere fails.</summary>
public static class Compare
{
    /// <summary>Fails with the worst element's index, values and the error unless every element is within <paramref name="tolerance"/>.</summary>
    public static void Close(ReadOnlySpan<float> actual, ReadOnlySpan<double> expected, Tolerance tolerance, string what)
    {
        Assert.True(actual.Length == expected.Length, $"{what}: {actual.Length} values, expected {expected.Length}.");
        int worst = -1;
        double worstExcess = 0;
        double maxError = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            double a = actual[i];
            double e = expected[i];
            if (!double.IsFinite(a) && !(double.IsInfinity(e) && a == e))
            {
                Assert.Fail($"{what}: element {i} is {a.ToString(CultureInfo.InvariantCulture)} (expected {e.ToString("R", CultureInfo.InvariantCulture)}); an output left unwritten stays NaN.");
            }

            if (double.IsInfinity(e) && a == e)
            {
                continue;
            }

            double error = Math.Abs(a - e);
            maxError = Math.Max(maxError, error);
            double excess = error - (tolerance.Absolute + tolerance.Relative * Math.Abs(e));
            if (excess > worstExcess)
            {
                worstExcess = excess;
                worst = i;
            }
        }

        if (worst >= 0)
        {
            Assert.Fail(string.Create(CultureInfo.InvariantCulture,
                $"{what}: element {worst} is {actual[worst]:R}, expected {expected[worst]:R} (error {Math.Abs(actual[worst] - expected[worst]):E3}, allowed {tolerance.Absolute:E1} + {tolerance.Relative:E1}·|expected|; max error {maxError:E3})."));
        }
    }

    /// <summary>Fails unless every element equals its reference exactly.</summary>
    public static void Exact(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected, string what)
    {
        Assert.True(actual.Length == expected.Length, $"{what}: {actual.Length} values, expected {expected.Length}.");
        for (int i = 0; i < actual.Length; i++)
        {
            if (!actual[i].Equals(expected[i]))
            {
                Assert.Fail(string.Create(CultureInfo.InvariantCulture, $"{what}: element {i} is {actual[i]:R}, expected exactly {expected[i]:R}."));
            }
        }
    }
}
