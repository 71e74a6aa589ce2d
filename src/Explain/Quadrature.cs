namespace Headlight.Explain;

/// <summary>Quadrature nodes and weights for the integrated-gradients path integral over [0, 1].</summary>
internal static class Quadrature
{
    /// <summary>Nodes α and weights w on [0, 1] with Σ wₖ·f(αₖ) ≈ ∫₀¹ f.</summary>
    public static (double[] Nodes, double[] Weights) On01(QuadratureRule rule, int n)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        var nodes = new double[n];
        var weights = new double[n];
        switch (rule)
        {
            case QuadratureRule.GaussLegendre:
                var (x, w) = GaussLegendre(n);
                for (int k = 0; k < n; k++)
                {
                    nodes[k] = (x[k] + 1) / 2;
                    weights[k] = w[k] / 2;
                }

                break;
            case QuadratureRule.RiemannTrapezoid:
                ArgumentOutOfRangeException.ThrowIfLessThan(n, 2);
                for (int k = 0; k < n; k++)
                {
                    nodes[k] = (double)k / (n - 1);
                    weights[k] = (k == 0 || k == n - 1 ? 0.5 : 1.0) / (n - 1);
                }

                break;
            default:
                double offset = rule switch
                {
                    QuadratureRule.RiemannLeft => 0,
                    QuadratureRule.RiemannRight => 1,
                    _ => 0.5,
                };
                for (int k = 0; k < n; k++)
                {
                    nodes[k] = (k + offset) / n;
                    weights[k] = 1.0 / n;
                }

                break;
        }

        return (nodes, weights);
    }

    /// <summary>
    /// Gauss–Legendre nodes (ascending) and weights on [−1, 1]: the roots xᵢ of the Legendre polynomial Pₙ, found
    /// by Newton's method from Tricomi's estimate cos(π(i + ¾)/(n + ½)), and wᵢ = 2 / ((1 − xᵢ²)·Pₙ'(xᵢ)²).
    /// </summary>
    public static (double[] Nodes, double[] Weights) GaussLegendre(int n)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(n, 1);
        var nodes = new double[n];
        var weights = new double[n];
        for (int i = 0; i < (n + 1) / 2; i++)
        {
            double x = Math.Cos(Math.PI * (i + 0.75) / (n + 0.5));
            double derivative = 0;
            for (int iteration = 0; iteration < 100; iteration++)
            {
                (double p, derivative) = Legendre(n, x);
                double step = p / derivative;
                x -= step;
                if (Math.Abs(step) <= 1e-16)
                {
                    break;
                }
            }

            (_, derivative) = Legendre(n, x);
            double weight = 2 / ((1 - (x * x)) * derivative * derivative);

            // Roots come in ± pairs; the estimate runs from the largest down.
            nodes[n - 1 - i] = x;
            nodes[i] = -x;
            weights[n - 1 - i] = weight;
            weights[i] = weight;
        }

        if (n % 2 == 1)
        {
            nodes[n / 2] = 0;
        }

        return (nodes, weights);
    }

    // Pₙ(x) by the three-term recurrence j·Pⱼ = (2j − 1)·x·Pⱼ₋₁ − (j − 1)·Pⱼ₋₂, and Pₙ'(x) = n·(x·Pₙ − Pₙ₋₁)/(x² − 1).
    private static (double Value, double Derivative) Legendre(int n, double x)
    {
        double previous = 1;
        double current = x;
        for (int j = 2; j <= n; j++)
        {
            double next = (((2 * j) - 1) * x * current - ((j - 1) * previous)) / j;
            previous = current;
            current = next;
        }

        return (current, n * ((x * current) - previous) / ((x * x) - 1));
    }
}
