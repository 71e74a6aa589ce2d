using Headlight.Explain;
using Headlight.Kernels;
using Xunit.Abstractions;

namespace Headlight.Tests.Explain;

/// <summary>
/// A game whose Shapley values are known: v(z) = Σ_T c_T·Π_{i∈T} z_i over terms T of one, two and three features.
/// Each term splits its coefficient evenly among its features (a unanimity game), so φ_i = Σ_{T∋i} c_T/|T|.
/// </summary>
public sealed class InteractionGame
{
    private readonly (int[] Features, double Coefficient)[] terms;

    /// <summary>M features: every feature alone, <paramref name="pairs"/> random pairs and <paramref name="triples"/> random triples.</summary>
    public InteractionGame(int m, int pairs, int triples, int seed)
    {
        var random = new Random(seed);
        var list = new List<(int[], double)>();
        for (int i = 0; i < m; i++)
        {
            list.Add(([i], (random.NextDouble() * 2) - 1));
        }

        for (int k = 0; k < pairs + triples; k++)
        {
            int size = k < pairs ? 2 : 3;
            int[] features = Enumerable.Range(0, m).OrderBy(_ => random.Next()).Take(size).ToArray();
            list.Add((features, 2 * ((random.NextDouble() * 2) - 1)));
        }

        terms = [.. list];
        Features = m;
        Shapley = new double[m];
        foreach (var (features, c) in terms)
        {
            foreach (int i in features)
            {
                Shapley[i] += c / features.Length;
            }
        }
    }

    /// <summary>M.</summary>
    public int Features { get; }

    /// <summary>The exact Shapley values.</summary>
    public double[] Shapley { get; }

    /// <summary>Masks evaluated so far, one string per row.</summary>
    public List<string> Seen { get; } = [];

    /// <summary>The value function.</summary>
    public void Evaluate(ReadOnlySpan<byte> masks, Span<double> values)
    {
        int m = Features;
        for (int k = 0; k < values.Length; k++)
        {
            var z = masks.Slice(k * m, m);
            Seen.Add(Convert.ToHexString(z));
            double v = 0;
            foreach (var (features, c) in terms)
            {
                bool all = true;
                foreach (int i in features)
                {
                    all &= z[i] == 1;
                }

                v += all ? c : 0;
            }

            values[k] = v;
        }
    }

    /// <summary>‖φ̂ − φ‖₂ / ‖φ‖₂.</summary>
    public double RelativeError(IReadOnlyList<double> estimate)
    {
        double error = 0, norm = 0;
        for (int i = 0; i < Features; i++)
        {
            error += (estimate[i] - Shapley[i]) * (estimate[i] - Shapley[i]);
            norm += Shapley[i] * Shapley[i];
        }

        return Math.Sqrt(error / norm);
    }
}

/// <summary>
/// Kernel SHAP on games with known Shapley values: exact with every coalition, the error falling with the budget
/// and paired sampling beating unpaired, standard errors that match the spread over seeds, the sampling
/// distribution, duplicate merging, and typed errors for budgets and feature counts out of range.
/// </summary>
public sealed class ShapSyntheticTests(ITestOutputHelper output)
{
    private static Device Cpu => Backends.Require("cpu");

    [Fact]
    public void With_every_coalition_kernel_shap_and_exact_enumeration_give_the_known_shapley_values_for_m_8()
    {
        var game = new InteractionGame(8, 6, 4, 1);
        var estimate = KernelShap.Estimate(Cpu, 8, game.Evaluate);
        Assert.True(estimate.IsExhaustive);
        Assert.Equal(256, estimate.Evaluations);
        Assert.Equal(256, game.Seen.Distinct().Count());
        Assert.True(game.RelativeError(estimate.Values) <= 1e-12, $"relative error {game.RelativeError(estimate.Values):E2}");
        Assert.All(estimate.StandardErrors, se => Assert.Equal(0, se));
        Assert.True(Math.Abs(estimate.EfficiencyGap) <= 1e-12);

        var exact = KernelShap.Exact(8, game.Evaluate);
        Assert.True(game.RelativeError(exact.Values) <= 1e-12, $"relative error {game.RelativeError(exact.Values):E2}");
        output.WriteLine($"M = 8, all 254 coalitions: relative error {game.RelativeError(estimate.Values):E2} (Kernel SHAP), {game.RelativeError(exact.Values):E2} (exact formula)");
    }

    [Fact]
    public void For_m_20_the_error_falls_as_the_budget_grows_and_paired_sampling_beats_unpaired_over_10_seeds()
    {
        var game = new InteractionGame(20, 25, 10, 2);
        ErrorFallsAndPairedWins(output, "M = 20", [100, 400, 1600, 6400], (budget, seed, paired) =>
            game.RelativeError(KernelShap.Estimate(Cpu, 20, game.Evaluate, budget, (ulong)seed, paired).Values));
    }

    /// <summary>
    /// Mean relative error over seeds 0–9 for each budget, paired and unpaired: paired is below unpaired at every
    /// budget, and both fall from each budget to the next.
    /// </summary>
    internal static void ErrorFallsAndPairedWins(ITestOutputHelper output, string what, int[] budgets, Func<int, int, bool, double> error)
    {
        var mean = new Dictionary<(int, bool), double>();
        foreach (int budget in budgets)
        {
            foreach (bool paired in new[] { true, false })
            {
                mean[(budget, paired)] = Enumerable.Range(0, 10).Average(seed => error(budget, seed, paired));
            }

            output.WriteLine($"{what}, budget {budget}: mean relative error paired {mean[(budget, true)]:E3}, unpaired {mean[(budget, false)]:E3}");
            Assert.True(mean[(budget, true)] < mean[(budget, false)], $"{what}, budget {budget}: paired {mean[(budget, true)]:E3} is not below unpaired {mean[(budget, false)]:E3}.");
        }

        for (int b = 1; b < budgets.Length; b++)
        {
            foreach (bool paired in new[] { true, false })
            {
                Assert.True(mean[(budgets[b], paired)] < mean[(budgets[b - 1], paired)],
                    $"{what}, {(paired ? "paired" : "unpaired")}: the error does not fall from budget {budgets[b - 1]} ({mean[(budgets[b - 1], paired)]:E3}) to {budgets[b]} ({mean[(budgets[b], paired)]:E3}).");
            }
        }
    }

    [Fact]
    public void Standard_errors_match_the_spread_of_the_estimates_over_seeds()
    {
        var game = new InteractionGame(20, 25, 10, 3);
        foreach (bool paired in new[] { true, false })
        {
            const int seeds = 40;
            var estimates = Enumerable.Range(0, seeds).Select(s => KernelShap.Estimate(Cpu, 20, game.Evaluate, 800, (ulong)s, paired)).ToArray();
            double ratioSum = 0;
            for (int i = 0; i < 20; i++)
            {
                double average = estimates.Average(e => e.Values[i]);
                double spread = Math.Sqrt(estimates.Sum(e => (e.Values[i] - average) * (e.Values[i] - average)) / (seeds - 1));
                ratioSum += estimates.Average(e => e.StandardErrors[i]) / spread;
            }

            double ratio = ratioSum / 20;
            output.WriteLine($"{(paired ? "paired" : "unpaired")}, budget 800: mean standard error / spread over {seeds} seeds = {ratio:F3}");
            Assert.InRange(ratio, 0.6, 1.6);
        }
    }

    [Fact]
    public void Sampled_sizes_follow_the_shapley_kernel_and_duplicates_are_merged_by_weight()
    {
        const int m = 30;
        var set = CoalitionSet.Build(Cpu, m, 20_000, 11, paired: true);
        Assert.Equal(2, set.EnumeratedSizes);
        Assert.Equal(20_000, set.Count);
        Assert.Equal(set.Count, Enumerable.Range(0, set.Count).Select(k => Convert.ToHexString(set.Mask(k))).Distinct().Count());

        // Draws per size class {s, M − s} against the kernel's share, within 5 standard deviations.
        var draws = new double[(m / 2) + 1];
        foreach (var unit in set.Units)
        {
            int size = set.Mask(unit[0]).Count(b => b == 1);
            draws[Math.Min(size, m - size)]++;
        }

        double[] mass = Enumerable.Range(0, (m / 2) + 1).Select(s => s <= 2 ? 0 : (m - 1.0) / (s * (m - s)) * (s == m - s ? 1 : 2)).ToArray();
        double total = draws.Sum();
        for (int s = 3; s <= m / 2; s++)
        {
            double p = mass[s] / mass.Sum();
            double sigma = Math.Sqrt(total * p * (1 - p));
            Assert.True(Math.Abs(draws[s] - (total * p)) <= 5 * sigma, $"size class {s}: {draws[s]} draws, expected {total * p:F0} ± {sigma:F0}.");
        }

        // Weights: the enumerated classes carry their kernel mass; the sampled ones share the rest by draw count.
        double enumeratedWeight = 0, sampledWeight = 0;
        for (int k = 0; k < set.Count; k++)
        {
            int size = set.Mask(k).Count(b => b == 1);
            (Math.Min(size, m - size) <= 2 ? ref enumeratedWeight : ref sampledWeight) += set.Weights[k];
        }

        double Mass(int s) => (m - 1.0) / (s * (double)(m - s));
        Assert.Equal(Mass(1) + Mass(2) + Mass(m - 1) + Mass(m - 2), enumeratedWeight, 1e-9);
        Assert.Equal(Enumerable.Range(3, m - 5).Sum(Mass), sampledWeight, 1e-9);
        // 60 + 870 coalitions enumerated; the rest drawn, with repeats (mostly of size 3) merged.
        int sampled = set.Count - 930;
        int drawn = set.Units.Sum(u => u.Length);
        Assert.True(drawn > sampled, $"{drawn} draws for {sampled} sampled coalitions: expected repeats merged into existing coalitions.");
    }

    [Fact]
    public void Subsets_of_one_size_are_drawn_uniformly()
    {
        // All 15 subsets of size 2 of 6 features, 15,000 draws: each 1,000 ± 5·31.
        using var masks = Cpu.Allocate<byte>(15_000, 6);
        using var thresholds = Cpu.FromHost<uint>([uint.MaxValue], 1);
        Coalitions.Sample(masks, thresholds, 2, paired: false, seed: 99, stream: 0);
        var counts = masks.ToArray().Chunk(6).GroupBy(Convert.ToHexString).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(15, counts.Count);
        Assert.All(counts.Values, c => Assert.InRange(c, 845, 1155));
    }

    [Fact]
    public void The_same_seed_gives_the_same_values_and_another_seed_other_ones()
    {
        var game = new InteractionGame(15, 10, 5, 4);
        var a = KernelShap.Estimate(Cpu, 15, game.Evaluate, 300, 7);
        var b = KernelShap.Estimate(Cpu, 15, game.Evaluate, 300, 7);
        var c = KernelShap.Estimate(Cpu, 15, game.Evaluate, 300, 8);
        Assert.Equal(a.Values, b.Values);
        Assert.NotEqual(a.Values, c.Values);
        Assert.Equal(302, a.Evaluations);
        Assert.False(a.IsExhaustive);
    }

    [Fact]
    public void Budgets_below_m_plus_1_zero_features_and_too_many_for_exact_enumeration_are_typed_errors()
    {
        var game = new InteractionGame(20, 0, 0, 5);
        Assert.Equal(2088, KernelShap.DefaultBudget(20));
        Assert.Equal(254, KernelShap.DefaultBudget(8));
        Assert.Equal(21, KernelShap.MinimumBudget(20));
        Assert.Equal(2, KernelShap.MinimumBudget(2));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => KernelShap.Estimate(Cpu, 20, game.Evaluate, 20));
        Assert.Contains("at least 21", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelShap.Estimate(Cpu, 0, game.Evaluate));
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelShap.Exact(13, game.Evaluate));
        Assert.Throws<ArgumentOutOfRangeException>(() => KernelShap.Exact(0, game.Evaluate));
        Assert.Empty(game.Seen);

        // A budget of 21 is enough; one feature needs no coalition; a value function that leaves a value unwritten fails.
        Assert.Equal(23, KernelShap.Estimate(Cpu, 20, game.Evaluate, 21).Evaluations);
        var one = KernelShap.Estimate(Cpu, 1, (masks, values) => { values[0] = 1; values[1] = 3.5; });
        Assert.Equal([2.5], one.Values);
        Assert.Throws<InvalidOperationException>(() => KernelShap.Estimate(Cpu, 3, (masks, values) => values[0] = 1));
    }
}
