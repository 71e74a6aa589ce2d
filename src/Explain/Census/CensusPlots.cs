using System.Globalization;
using Headlight.Explain.Plots;

namespace Headlight.Explain.Census;

/// <summary>The census's PNG figures: one layers × heads heat map per metric, and share against parameters for a comparison.</summary>
internal static class CensusPlots
{
    /// <summary>A metric drawn as a heat map: its file-name key, title, value per head, colour range and cell text.</summary>
    private sealed record Metric(string Key, string Title, Func<HeadScores, double> Value, double? Min, double? Max, Func<HeadScores, string?>? Text = null);

    private static readonly Metric[] Metrics =
    [
        new("roles", "roles (letter) and strongest role score / threshold", h => Math.Min(CensusThresholds.Strongest(h).Strength, 2), 0, 2, RoleText),
        new("normalized-entropy", "normalised attention entropy (1 = uniform)", h => h.NormalizedEntropy, 0, 1),
        new("confidence", "confidence (mean largest weight)", h => h.Confidence, 0, 1),
        new("previous", "attention on the previous token", h => h.Previous, 0, 1),
        new("next", "attention on the next token", h => h.Next, 0, 1),
        new("positional", "share of queries with the strongest key at the best offset (cell: offset)", h => h.OffsetArgmaxShare, 0, 1,
            h => h.Offset.ToString("+0;-0;0", CultureInfo.InvariantCulture)),
        new("first", "attention on the first token ([CLS] / BOS)", h => h.First, 0, 1),
        new("separator", "attention on [SEP]", h => h.Separator, 0, 1),
        new("punctuation", "attention on punctuation", h => h.Punctuation, 0, 1),
        new("duplicate", "duplicate-token score (repeated random tokens)", h => h.Duplicate, 0, 1),
        new("induction", "induction score (repeated random tokens)", h => h.Induction, 0, 1),
        new("importance", "importance share: mean |dL/d gate| / sum over heads", h => h.ImportanceShare ?? double.NaN, 0, null),
        new("ablation-drop", "target drop when the head is zeroed", h => h.AblationDrop ?? double.NaN, null, null,
            h => h.AblationDrop is { } d ? d.ToString("0.000", CultureInfo.InvariantCulture) : null),
    ];

    /// <summary>The metric keys, in the order <see cref="HeatMaps"/> returns them.</summary>
    public static IReadOnlyList<string> Keys { get; } = Metrics.Select(m => m.Key).ToArray();

    /// <summary>One PNG per metric (importance maps only when importance was computed), keyed by metric.</summary>
    public static IReadOnlyList<(string Key, string Title, byte[] Png)> HeatMaps(CensusResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var maps = new List<(string, string, byte[])>();
        foreach (var metric in Metrics)
        {
            if (metric.Key is "importance" or "ablation-drop" && result.Heads[0].Importance is null)
            {
                continue;
            }

            var values = new double[result.Layers, result.HeadsPerLayer];
            string?[,]? text = metric.Text is null ? null : new string?[result.Layers, result.HeadsPerLayer];
            foreach (var h in result.Heads)
            {
                values[h.Layer, h.Head] = metric.Value(h);
                if (text is not null)
                {
                    text[h.Layer, h.Head] = metric.Text!(h);
                }
            }

            string title = $"{result.Model}: {metric.Title}";
            maps.Add((metric.Key, title, HeatMap.Png(new HeatMap.Spec(values, title, "layer", "head", metric.Min, metric.Max, text))));
        }

        return maps;
    }

    /// <summary>Share of interpretable heads against parameter count (log scale): trained models filled, each control seed hollow.</summary>
    public static byte[] ShareScatter(CensusComparison comparison)
    {
        ArgumentNullException.ThrowIfNull(comparison);
        var rows = comparison.Rows;
        var series = new List<ScatterChart.Series>
        {
            new("trained: any role", rows.Select(r => (double)r.Parameters).ToArray(), rows.Select(r => r.Interpretable).ToArray(), rows.Select(r => r.Model).ToArray()),
            new("trained: excluding [CLS]/[SEP]/punctuation roles", rows.Select(r => (double)r.Parameters).ToArray(), rows.Select(r => r.InterpretableExceptSpecialTokens).ToArray()),
        };
        var controls = comparison.Results.SelectMany(r => r.Controls.Select(c => ((double)r.Parameters, c.Shares.Interpretable))).ToArray();
        if (controls.Length > 0)
        {
            series.Add(new("random-weight controls (one per seed)", controls.Select(c => c.Item1).ToArray(), controls.Select(c => c.Item2).ToArray(), Hollow: true));
        }

        return ScatterChart.Png("share of interpretable heads vs model size", "parameters (log scale)", "share of heads with a role", series, logX: true, yMin: -0.05, yMax: 1.05);
    }

    private static string RoleText(HeadScores h)
    {
        var letters = CensusThresholds.Roles.Where(r => (h.Roles & r) != 0).Select(CensusThresholds.Letter).ToArray();
        return letters.Length == 0 ? "-" : new string(letters);
    }
}
