using Headlight.Explain.Census;
using Headlight.Models;

namespace Headlight.Tests.Census;

/// <summary>
/// The census on the packaged MiniLM over the built-in corpus (attention metrics only, to stay quick): the
/// head types Clark et al. (2019) describe for BERT are there, and the random-weight control has none.
/// </summary>
public sealed class MiniLmCensusTests
{
    [Fact]
    public void MiniLM_has_positional_and_special_token_heads_that_its_random_control_lacks()
    {
        using var model = Headlight.Models.Model.Load("minilm", Backends.Require("cpu"));
        var result = HeadCensus.Run(model, new CensusOptions { Importance = false, ControlSeeds = [1] });
        Assert.Equal(72, result.Heads.Count);

        // A previous-token head and a next-token head (Clark et al.'s ±1 positional heads).
        var previous = result.Heads.MaxBy(h => h.Previous)!;
        var next = result.Heads.MaxBy(h => h.Next)!;
        Assert.True(previous.Previous > 0.9, $"best previous-token score {previous.Previous}");
        Assert.True(next.Next > 0.5, $"best next-token score {next.Next}");
        Assert.Equal(-1, previous.Offset);
        Assert.Equal(+1, next.Offset);

        // Heads that park attention on a special token: many on [CLS].
        Assert.True(result.Shares.PerRole[HeadRole.First] > 0.2, $"[CLS] share {result.Shares.PerRole[HeadRole.First]}");
        Assert.True(result.Shares.Interpretable > 0.25);

        // Random weights attend almost uniformly: no role, entropy near the maximum.
        var control = result.Controls[0];
        Assert.Equal(0.0, control.Shares.Interpretable);
        Assert.All(control.Heads, h => Assert.True(h.NormalizedEntropy > 0.98, $"control L{h.Layer}H{h.Head} normalised entropy {h.NormalizedEntropy}"));
    }
}
