using Headlight.Kernels;

namespace Headlight.Explain;

/// <summary>
/// Writes the value of each coalition: <paramref name="masks"/> is <c>[values.Length, M]</c>, 1 where a feature is
/// present and 0 where it is masked; <paramref name="values"/> receives v(mask) for every row.
/// </summary>
public delegate void CoalitionValueFunction(ReadOnlySpan<byte> masks, Span<double> values);

/// <summary>
/// Kernel SHAP for any value function over M features (<see cref="Explainer"/> uses it for models; see
/// <see cref="KernelShapOptions"/> for the method). Coalitions are drawn on <c>device</c> with a counter-based
/// generator, so a seed gives the same coalitions on every backend; the fit runs in float64 on the host.
/// </summary>
public static class KernelShap
{
    /// <summary>The default budget, 2M + 2048, capped at 2^M − 2.</summary>
    public static int DefaultBudget(int features)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(features);
        return (int)Math.Min((2L * features) + 2048, CoalitionSet.AllCoalitions(features));
    }

    /// <summary>The smallest budget accepted: M + 1, or every coalition when there are fewer (2^M − 2).</summary>
    public static int MinimumBudget(int features)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(features);
        return (int)Math.Min(features + 1L, CoalitionSet.AllCoalitions(features));
    }

    /// <summary>
    /// Estimates the Shapley values of <paramref name="valueFunction"/>'s M features from the empty and the full
    /// coalition and <paramref name="budget"/> others (capped at 2^M − 2), drawn from <paramref name="seed"/>.
    /// </summary>
    /// <param name="device">Where the coalitions are drawn.</param>
    /// <param name="features">M, at least 1.</param>
    /// <param name="valueFunction">The game: called once with every coalition to evaluate.</param>
    /// <param name="budget">Coalitions besides the empty and the full one; null = <see cref="DefaultBudget"/>.</param>
    /// <param name="seed">The random key of the draws.</param>
    /// <param name="paired">Draw complementary pairs (default), or single coalitions.</param>
    /// <exception cref="ArgumentOutOfRangeException">M is 0, or the budget is below <see cref="MinimumBudget"/>.</exception>
    /// <exception cref="InvalidOperationException">The value function returned a value that is not finite.</exception>
    public static ShapleyValues Estimate(Device device, int features, CoalitionValueFunction valueFunction, int? budget = null, ulong seed = 0, bool paired = true)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(valueFunction);
        int coalitions = CheckBudget(features, budget);
        var set = CoalitionSet.Build(device, features, coalitions, seed, paired);

        // Row 0 is the empty coalition, row 1 the full one, then the coalitions of the fit.
        int m = features;
        var masks = new byte[(set.Count + 2) * m];
        masks.AsSpan(m, m).Fill(1);
        for (int k = 0; k < set.Count; k++)
        {
            set.Mask(k).CopyTo(masks, (k + 2) * m);
        }

        var values = new double[set.Count + 2];
        Evaluate(valueFunction, masks, values);
        var (phi, errors) = ShapSolver.Solve(set, values.AsSpan(2), values[0], values[1]);
        return new ShapleyValues(phi, errors, values[1], values[0], set.Count + 2, set.IsComplete);
    }

    /// <summary>Exact Shapley values by evaluating all 2^M coalitions (M ≤ <see cref="KernelShapOptions.MaxExactFeatures"/>) and the Shapley formula in float64.</summary>
    /// <exception cref="ArgumentOutOfRangeException">M is 0 or above <see cref="KernelShapOptions.MaxExactFeatures"/>.</exception>
    /// <exception cref="InvalidOperationException">The value function returned a value that is not finite.</exception>
    public static ShapleyValues Exact(int features, CoalitionValueFunction valueFunction)
    {
        ArgumentNullException.ThrowIfNull(valueFunction);
        if (features is < 1 or > KernelShapOptions.MaxExactFeatures)
        {
            throw new ArgumentOutOfRangeException(nameof(features), features,
                $"Exact Shapley values enumerate all 2^M coalitions and take 1 to {KernelShapOptions.MaxExactFeatures} features; {features} were given (use Kernel SHAP's sampling).");
        }

        int m = features;
        int count = 1 << m;
        var masks = new byte[count * m];
        for (int set = 0; set < count; set++)
        {
            for (int i = 0; i < m; i++)
            {
                masks[(set * m) + i] = (byte)((set >> i) & 1);
            }
        }

        var values = new double[count];
        Evaluate(valueFunction, masks, values);
        double[] phi = ShapSolver.Exact(m, values);
        return new ShapleyValues(phi, new double[m], values[count - 1], values[0], count, isExhaustive: true);
    }

    /// <summary>The budget after the cap, or a typed error naming the minimum.</summary>
    internal static int CheckBudget(int features, int? budget)
    {
        if (features < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(features), features, "Kernel SHAP needs at least one feature to switch on and off; the input has none (only special tokens?).");
        }

        int minimum = MinimumBudget(features);
        int asked = budget ?? DefaultBudget(features);
        if (asked < minimum)
        {
            throw new ArgumentOutOfRangeException(nameof(budget), asked,
                $"Kernel SHAP with {features} features needs a budget of at least {minimum} coalitions (M + 1); {asked} was given.");
        }

        return (int)Math.Min(asked, CoalitionSet.AllCoalitions(features));
    }

    private static void Evaluate(CoalitionValueFunction valueFunction, byte[] masks, double[] values)
    {
        Array.Fill(values, double.NaN);
        valueFunction(masks, values);
        for (int k = 0; k < values.Length; k++)
        {
            if (!double.IsFinite(values[k]))
            {
                throw new InvalidOperationException($"Kernel SHAP: the value of coalition {k} of {values.Length} is {values[k]}, not a finite number.");
            }
        }
    }
}

/// <summary>Shapley values of M features, as <see cref="KernelShap"/> estimated (or computed) them.</summary>
public sealed class ShapleyValues
{
    private readonly double[] values;
    private readonly double[] standardErrors;

    internal ShapleyValues(double[] values, double[] standardErrors, double fullValue, double emptyValue, int evaluations, bool isExhaustive)
    {
        this.values = values;
        this.standardErrors = standardErrors;
        FullValue = fullValue;
        EmptyValue = emptyValue;
        Evaluations = evaluations;
        IsExhaustive = isExhaustive;
    }

    /// <summary>φ, one per feature.</summary>
    public IReadOnlyList<double> Values => values;

    /// <summary>
    /// Each value's standard error from the random sampling (sandwich estimate over the independent pairs or draws):
    /// 0 when every coalition was evaluated, NaN when a single draw leaves it undetermined.
    /// </summary>
    public IReadOnlyList<double> StandardErrors => standardErrors;

    /// <summary>v(all features present), F(x).</summary>
    public double FullValue { get; }

    /// <summary>v(no feature present), F(∅).</summary>
    public double EmptyValue { get; }

    /// <summary>Σφ − (F(x) − F(∅)); efficiency is enforced, so this is rounding only.</summary>
    public double EfficiencyGap => values.Sum() - (FullValue - EmptyValue);

    /// <summary>Coalitions evaluated, the empty and the full one included.</summary>
    public int Evaluations { get; }

    /// <summary>True when every coalition was evaluated: the values are then the exact Shapley values of the game.</summary>
    public bool IsExhaustive { get; }
}
