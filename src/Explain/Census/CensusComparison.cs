using System.Globalization;
using System.Text;

namespace Headlight.Explain.Census;

/// <summary>One model's line in a comparison.</summary>
/// <param name="Model">The model's name.</param>
/// <param name="Parameters">Its weights, embeddings included.</param>
/// <param name="Layers">Blocks.</param>
/// <param name="HeadsPerLayer">Heads per block.</param>
/// <param name="Interpretable">Share of heads with at least one role.</param>
/// <param name="InterpretableExceptSpecialTokens">Share with a role other than [CLS]/BOS, [SEP] or punctuation.</param>
/// <param name="PerRole">Share of heads per role.</param>
/// <param name="ControlInterpretable">Mean share over the random-weight controls; null without controls.</param>
/// <param name="ControlInterpretableMin">Smallest control share.</param>
/// <param name="ControlInterpretableMax">Largest control share.</param>
/// <param name="ControlInterpretableExceptSpecialTokens">Mean control share without the special-token roles.</param>
public sealed record ComparisonRow(
    string Model, long Parameters, int Layers, int HeadsPerLayer, double Interpretable, double InterpretableExceptSpecialTokens,
    IReadOnlyDictionary<HeadRole, double> PerRole, double? ControlInterpretable, double? ControlInterpretableMin, double? ControlInterpretableMax,
    double? ControlInterpretableExceptSpecialTokens);

/// <summary>
/// Several censuses side by side — one row per model, with its controls — and a verdict paragraph that
/// says what the numbers do and do not support about "larger models have more interpretable heads".
/// </summary>
public sealed class CensusComparison
{
    /// <summary>Models whose parameter counts differ by less than this factor count as one size (a vocabulary or a pooler apart).</summary>
    public const double SameSizeFactor = 1.25;

    private CensusComparison(IReadOnlyList<CensusResult> results, IReadOnlyList<ComparisonRow> rows, string verdict)
    {
        Results = results;
        Rows = rows;
        Verdict = verdict;
    }

    /// <summary>The censuses, in the order given.</summary>
    public IReadOnlyList<CensusResult> Results { get; }

    /// <summary>One row per census.</summary>
    public IReadOnlyList<ComparisonRow> Rows { get; }

    /// <summary>What the numbers do and do not support, in words.</summary>
    public string Verdict { get; }

    /// <summary>Compares censuses (one or more).</summary>
    /// <exception cref="ArgumentException">No census is given.</exception>
    public static CensusComparison Of(IReadOnlyList<CensusResult> results)
    {
        ArgumentNullException.ThrowIfNull(results);
        if (results.Count == 0)
        {
            throw new ArgumentException("A comparison needs at least one census.", nameof(results));
        }

        var rows = results.Select(r => new ComparisonRow(
            r.Model, r.Parameters, r.Layers, r.HeadsPerLayer, r.Shares.Interpretable, r.Shares.InterpretableExceptSpecialTokens, r.Shares.PerRole,
            r.ControlInterpretableMean,
            r.Controls.Count == 0 ? null : r.Controls.Min(c => c.Shares.Interpretable),
            r.Controls.Count == 0 ? null : r.Controls.Max(c => c.Shares.Interpretable),
            r.Controls.Count == 0 ? null : r.Controls.Average(c => c.Shares.InterpretableExceptSpecialTokens))).ToArray();
        return new CensusComparison(results, rows, WriteVerdict(results, rows));
    }

    /// <summary>Spearman's rank correlation of two equally long series (average ranks for ties); NaN when either is constant.</summary>
    internal static double Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        var rx = Ranks(x);
        var ry = Ranks(y);
        double mx = rx.Average(), my = ry.Average();
        double sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < rx.Length; i++)
        {
            sxy += (rx[i] - mx) * (ry[i] - my);
            sxx += (rx[i] - mx) * (rx[i] - mx);
            syy += (ry[i] - my) * (ry[i] - my);
        }

        return sxx == 0 || syy == 0 ? double.NaN : sxy / Math.Sqrt(sxx * syy);
    }

    /// <summary>How many sizes the parameter counts fall into: sorted, a new size starts above <see cref="SameSizeFactor"/> × the current size's smallest.</summary>
    internal static int Sizes(IEnumerable<long> parameters)
    {
        int sizes = 0;
        double start = 0;
        foreach (long p in parameters.Order())
        {
            if (sizes == 0 || p >= start * SameSizeFactor)
            {
                sizes++;
                start = p;
            }
        }

        return sizes;
    }

    private static double[] Ranks(IReadOnlyList<double> values)
    {
        var order = Enumerable.Range(0, values.Count).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Count];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && values[order[j + 1]] == values[order[i]])
            {
                j++;
            }

            for (int k = i; k <= j; k++)
            {
                ranks[order[k]] = (i + j) / 2.0;
            }

            i = j + 1;
        }

        return ranks;
    }

    private static string WriteVerdict(IReadOnlyList<CensusResult> results, ComparisonRow[] rows)
    {
        var s = new StringBuilder();
        string corpora = string.Join(", ", results.Select(r => r.Corpus.Name).Distinct());
        s.Append(Inv($"{rows.Length} model{(rows.Length == 1 ? string.Empty : "s")} on the {corpora} corpus; a head counts as interpretable when an attention-mass score reaches {CensusThresholds.Mass} or its strongest key sits at one offset for {Pct(CensusThresholds.OffsetArgmax)} of queries. "));

        // Against the controls.
        var withControls = rows.Where(r => r.ControlInterpretable is not null).ToArray();
        if (withControls.Length == 0)
        {
            s.Append("No random-weight controls were run, so the shares cannot be told apart from what untrained attention produces. ");
        }
        else
        {
            var above = withControls.Where(r => r.Interpretable > r.ControlInterpretableMax!.Value).ToArray();
            string list = string.Join(", ", withControls.Select(r => Inv($"{r.Model} {Pct(r.Interpretable)} vs {Pct(r.ControlInterpretable)}")));
            s.Append(above.Length == withControls.Length
                ? Inv($"Every trained model has a larger share of interpretable heads than all of its random-weight controls ({list}): the roles come from training, not from the architecture or the corpus alone. ")
                : Inv($"Not every model beats its random-weight controls ({list}); where a model does not, its roles are no evidence of learned structure. "));
            var controlHeads = results.SelectMany(r => r.Controls).SelectMany(c => c.Heads).ToArray();
            double entropy = controlHeads.Length == 0 ? double.NaN : controlHeads.Average(h => h.NormalizedEntropy);
            if (entropy > 0.95)
            {
                s.Append(Inv($"The controls attend almost uniformly (mean normalised entropy {entropy:F3}), so beating them shows that the roles are learned, but it is a low bar. "));
            }
        }

        s.Append(Inv($"Without the special-token roles ([CLS]/BOS, [SEP], punctuation — attention that often acts as a no-op), the shares are {string.Join(", ", rows.Select(r => Inv($"{r.Model} {Pct(r.InterpretableExceptSpecialTokens)}")))}. "));

        // The size question.
        int sizes = Sizes(rows.Select(r => r.Parameters));
        if (sizes < 2)
        {
            long min = rows.Min(r => r.Parameters), max = rows.Max(r => r.Parameters);
            string size = min == max ? Millions(min) : Inv($"{Millions(min)}-{Millions(max)}");
            s.Append(rows.Length == 1
                ? Inv($"One model ({size} parameters) cannot test whether larger models have more interpretable heads. ")
                : Inv($"All models have about the same size ({size} parameters), so these numbers cannot test whether larger models have more interpretable heads: differences between them reflect training (data, objective, distillation), not scale. "));
        }
        else if (sizes == 2 || rows.Length < 4)
        {
            var small = rows.MinBy(r => r.Parameters)!;
            var large = rows.MaxBy(r => r.Parameters)!;
            string direction = large.Interpretable > small.Interpretable ? "a larger share than" : large.Interpretable < small.Interpretable ? "a smaller share than" : "the same share as";
            s.Append(Inv($"With {sizes} sizes only, the comparison is anecdotal: the largest model ({large.Model}, {Millions(large.Parameters)}) has {direction} the smallest ({small.Model}, {Millions(small.Parameters)}), {Pct(large.Interpretable)} vs {Pct(small.Interpretable)}; models that differ in training as well as size cannot isolate the effect of scale. "));
        }
        else
        {
            double rho = Spearman(rows.Select(r => (double)r.Parameters).ToArray(), rows.Select(r => r.Interpretable).ToArray());
            string reading = double.IsNaN(rho) ? "no ranking (the shares are all equal)"
                : rho >= 0.5 ? "a share that tends to rise with size"
                : rho <= -0.5 ? "a share that tends to fall with size"
                : "no clear monotone relation";
            s.Append(Inv($"Across {rows.Length} models and {sizes} sizes, Spearman's ρ between parameters and share is {rho:F2}: {reading}. With this few models, trained differently, that is a correlation to follow up, not a test of the claim. "));
        }

        s.Append("The census does not show that a head's role explains the model's behaviour (compare importance and ablation drops), and the shares move with the thresholds, which are fixed conventions rather than fitted values.");
        return s.ToString();
    }

    private static string Pct(double? share) => share is { } v ? (v * 100).ToString("F0", CultureInfo.InvariantCulture) + "%" : "n/a";

    private static string Millions(long parameters) => Inv($"{parameters / 1e6:F1}M");

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
