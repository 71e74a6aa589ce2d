namespace Headlight.Tests;

/// <summary>Float64 special functions for references, written independently of the kernels' approximations.</summary>
public static class ReferenceMath
{
    /// <summary>erf(x) to about 1e-14: Maclaurin series below 3, continued fraction for erfc above.</summary>
    public static double Erf(double x) => Math.Abs(x) < 3 ? Series(x) : Math.Sign(x) * (1 - ErfcContinuedFraction(Math.Abs(x)));

    /// <summary>erfc(x) with relative accuracy in both tails.</summary>
    public static double Erfc(double x)
    {
        if (x >= 3)
        {
            return ErfcContinuedFraction(x);
        }

        if (x <= -3)
        {
            return 2 - ErfcContinuedFraction(-x);
        }

        return 1 - Series(x);
    }

    /// <summary>Exact GELU, x·Φ(x).</summary>
    public static double GeluErf(double x) => 0.5 * x * Erfc(-x / Math.Sqrt(2));

    /// <summary>GELU's tanh form.</summary>
    public static double GeluTanh(double x) => 0.5 * x * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (x + (0.044715 * x * x * x))));

    /// <summary>d/dx of exact GELU: Φ(x) + x·φ(x).</summary>
    public static double GeluErfDerivative(double x) => (0.5 * Erfc(-x / Math.Sqrt(2))) + (x * Math.Exp(-0.5 * x * x) / Math.Sqrt(2 * Math.PI));

    /// <summary>d/dx of GELU's tanh form.</summary>
    public static double GeluTanhDerivative(double x)
    {
        double k = Math.Sqrt(2 / Math.PI);
        double u = k * (x + (0.044715 * x * x * x));
        double t = Math.Tanh(u);
        return (0.5 * (1 + t)) + (0.5 * x * (1 - (t * t)) * k * (1 + (3 * 0.044715 * x * x)));
    }

    private static double Series(double x)
    {
        double sum = 0;
        double term = x; // x^(2n+1) (-1)^n / n!
        for (int n = 0; n < 200; n++)
        {
            double contribution = term / ((2 * n) + 1);
            sum += contribution;
            if (Math.Abs(contribution) < 1e-17 * Math.Abs(sum))
            {
                break;
            }

            term *= -x * x / (n + 1);
        }

        return 2 / Math.Sqrt(Math.PI) * sum;
    }

    // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))), evaluated with the modified Lentz method.
    private static double ErfcContinuedFraction(double x)
    {
        const double tiny = 1e-300;
        double f = x;
        double c = x;
        double d = 0;
        for (int n = 1; n < 500; n++)
        {
            double a = n / 2.0;
            d = x + (a * d);
            d = Math.Abs(d) < tiny ? tiny : d;
            c = x + (a / c);
            c = Math.Abs(c) < tiny ? tiny : c;
            d = 1 / d;
            double delta = c * d;
            f *= delta;
            if (Math.Abs(delta - 1) < 1e-16)
            {
                break;
            }
        }

        return Math.Exp(-x * x) / Math.Sqrt(Math.PI) / f;
    }
}
