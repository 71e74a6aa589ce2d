using Headlight.Explain.Census;

namespace Headlight.Tests.Census;

/// <summary>The comparison's rows and verdict on synthetic censuses, where the right wording is known.</summary>
public sealed class CensusComparisonTests
{
    // A census of `heads` heads of which `roled` pass the previous-token role, with one control whose heads
    // have `controlRoled` roles and the given normalised entropy.
    private static CensusResult Census(string name, long parameters, int heads, int roled, int controlRoled = 0, double controlEntropy = 0.999)
    {
        HeadScores Head(int i, bool role, double entropy = 0.5) => new()
        {
            Layer = 0,
            Head = i,
            NormalizedEntropy = entropy,
            Previous = role ? 0.9 : 0.1,
            Roles = role ? HeadRole.Previous : HeadRole.None,
        };

        var own = Enumerable.Range(0, heads).Select(i => Head(i, i < roled)).ToArray();
        var control = Enumerable.Range(0, heads).Select(i => Head(i, i < controlRoled, controlEntropy)).ToArray();
        return new CensusResult
        {
            Model = name,
            Family = "bert-encoder",
            Parameters = parameters,
            Layers = 1,
            HeadsPerLayer = heads,
            Device = "cpu",
            Corpus = new CorpusSummary("built-in", "0", "corpus texts", 1, 1, 0, 0, 0, 0, 0),
            Heads = own,
            Chance = new HeadScores { Layer = -1, Head = -1 },
            Shares = RoleShares.Of(own),
            Controls = [new ControlCensus(1, control, RoleShares.Of(control))],
            Elapsed = TimeSpan.Zero,
        };
    }

    [Fact]
    public void Models_a_vocabulary_apart_count_as_one_size()
    {
        Assert.Equal(1, CensusComparison.Sizes([22_713_216, 22_565_376]));
        Assert.Equal(2, CensusComparison.Sizes([22_713_216, 109_482_240, 22_565_376]));
        Assert.Equal(3, CensusComparison.Sizes([10, 12, 12, 100, 1000]));

        var verdict = CensusComparison.Of([Census("minilm", 22_713_216, 8, 3), Census("arcticxs", 22_565_376, 8, 2)]).Verdict;
        Assert.Contains("about the same size (22.6M-22.7M parameters)", verdict, StringComparison.Ordinal);
        Assert.Contains("cannot test whether larger models have more interpretable heads", verdict, StringComparison.Ordinal);
        Assert.DoesNotContain("largest model", verdict, StringComparison.Ordinal);
    }

    [Fact]
    public void Two_sizes_are_called_anecdotal_and_many_get_a_rank_correlation()
    {
        var two = CensusComparison.Of([Census("small", 20_000_000, 8, 2), Census("large", 110_000_000, 8, 4)]);
        Assert.Contains("With 2 sizes only, the comparison is anecdotal: the largest model (large, 110.0M) has a larger share than the smallest (small, 20.0M), 50% vs 25%", two.Verdict, StringComparison.Ordinal);

        var four = CensusComparison.Of([Census("a", 10_000_000, 8, 1), Census("b", 30_000_000, 8, 2), Census("c", 100_000_000, 8, 3), Census("d", 300_000_000, 8, 5)]);
        Assert.Contains("Spearman's ρ between parameters and share is 1.00: a share that tends to rise with size", four.Verdict, StringComparison.Ordinal);
        Assert.Equal(1.0, CensusComparison.Spearman([1, 2, 3, 4], [2, 4, 5, 9]), 12);
        Assert.Equal(-1.0, CensusComparison.Spearman([1, 2, 3], [3, 2, 1]), 12);
        Assert.True(double.IsNaN(CensusComparison.Spearman([1, 2, 3], [5, 5, 5])));
    }

    [Fact]
    public void Controls_decide_whether_roles_count_as_learned()
    {
        var beaten = CensusComparison.Of([Census("m", 20_000_000, 8, 3)]);
        Assert.Contains("larger share of interpretable heads than all of its random-weight controls (m 38% vs 0%)", beaten.Verdict, StringComparison.Ordinal);
        Assert.Contains("attend almost uniformly (mean normalised entropy 0.999)", beaten.Verdict, StringComparison.Ordinal);
        Assert.Equal(0.0, beaten.Rows[0].ControlInterpretable);

        var matched = CensusComparison.Of([Census("m", 20_000_000, 8, 3, controlRoled: 3, controlEntropy: 0.6)]);
        Assert.Contains("Not every model beats its random-weight controls", matched.Verdict, StringComparison.Ordinal);
        Assert.DoesNotContain("almost uniformly", matched.Verdict, StringComparison.Ordinal);
        Assert.Equal(0.375, matched.Rows[0].ControlInterpretableMax);
    }
}
