using System.Globalization;

namespace Headlight.Tests;

/// <summary>An allowed error: <c>|actual − expected| ≤ Absolute + Relative · |expected|</c>.</summary>
public readonly record struct Tolerance(double Absolute, double Relative);

/// <summary>Compares a float32 result with its float64 reference; NaN and ±∞ must match the reference exactly.</summary>
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
            if (!double.IsFinite(e) || !double.IsFinite(a))
            {
                // Non-finite values must agree exactly: a finite result where ∞ or NaN is expected
                // (or the reverse) is wrong at any tolerance, and |a − e| would hide it as NaN.
                if (!SameNonFinite(a, e))
                {
                    Assert.Fail($"{what}: element {i} is {a.ToString("R", CultureInfo.InvariantCulture)}, expected {e.ToString("R", CultureInfo.InvariantCulture)}; non-finite values must match exactly (an output left unwritten stays NaN).");
                }

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

    // NaN matches NaN; +∞ matches +∞ and −∞ matches −∞; a finite value matches neither.
    private static bool SameNonFinite(double actual, double expected) =>
        double.IsNaN(expected) ? double.IsNaN(actual) : actual == expected;

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
