using System.Globalization;
using System.Net;
using System.Text;

namespace Headlight.Explain.Census;

/// <summary>
/// The census as HTML: <see cref="Section"/> is a self-contained <c>&lt;section&gt;</c> (figures inlined as
/// PNG data) that a report can embed; <see cref="Page"/> wraps sections into a standalone page.
/// </summary>
internal static class CensusHtml
{
    /// <summary>A page holding the sections (and a comparison, when given).</summary>
    public static string Page(IReadOnlyList<CensusResult> results, CensusComparison? comparison)
    {
        var s = new StringBuilder();
        s.Append("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Headlight head census</title>\n<style>")
            .Append("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;margin:1em 0}")
            .Append("td,th{border:1px solid #ccc;padding:2px 6px;text-align:center}td.l{text-align:left}img{max-width:100%;margin:.5em 0}")
            .Append("pre{background:#f6f6f6;padding:.5em}</style></head><body>\n<h1>Head census</h1>\n");
        if (comparison is not null)
        {
            s.Append(ComparisonSection(comparison));
        }

        foreach (var r in results)
        {
            s.Append(Section(r));
        }

        s.Append("</body></html>\n");
        return s.ToString();
    }

    /// <summary>One model's census: summary, thresholds, role grid, shares against the controls, heat maps.</summary>
    public static string Section(CensusResult r)
    {
        ArgumentNullException.ThrowIfNull(r);
        var s = new StringBuilder();
        s.Append(Inv($"<section class=\"census\">\n<h2>Head census: {E(r.Model)}</h2>\n<p>{E(r.Family)}, {r.Layers} layers × {r.HeadsPerLayer} heads, {r.Parameters:N0} parameters, on {E(r.Device)}. "));
        s.Append(Inv($"Corpus {E(r.Corpus.Name)} ({E(r.Corpus.TextSource)}): {r.Corpus.Texts} texts, {r.Corpus.TextTokens} tokens; {r.Corpus.RepeatSequences} random sequences of {r.Corpus.RepeatLength} tokens repeated twice.</p>\n"));
        s.Append("<p>Roles (a head is interpretable when at least one passes):</p>\n<pre>")
            .Append(E(string.Join("\n", CensusThresholds.Describe()))).Append("</pre>\n");

        // Role grid: letters, shaded by the strongest role's score relative to its threshold.
        s.Append("<table><tr><th>layer</th>");
        for (int h = 0; h < r.HeadsPerLayer; h++)
        {
            s.Append(Inv($"<th>{h}</th>"));
        }

        s.Append("</tr>\n");
        for (int l = 0; l < r.Layers; l++)
        {
            s.Append(Inv($"<tr><th>{l}</th>"));
            for (int h = 0; h < r.HeadsPerLayer; h++)
            {
                var head = r[l, h];
                var (role, strength) = CensusThresholds.Strongest(head);
                string letters = string.Concat(CensusThresholds.Roles.Where(x => (head.Roles & x) != 0).Select(CensusThresholds.Letter));
                double shade = Math.Clamp(strength, 0, 1.5) / 1.5;
                int light = (int)Math.Round(255 - (shade * 150));
                string colour = head.IsInterpretable ? Inv($"rgb(255,{light},{Math.Max(light - 40, 0)})") : Inv($"rgb({light},{light},{light})");
                string tip = Inv($"strongest: {CensusThresholds.Name(role)} {CensusThresholds.Score(head, role):F2}");
                s.Append(Inv($"<td style=\"background:{colour}\" title=\"{E(tip)}\">{(letters.Length == 0 ? "·" : E(letters))}</td>"));
            }

            s.Append("</tr>\n");
        }

        s.Append("</table>\n");

        // Shares against the controls.
        s.Append("<table><tr><th class=\"l\">role</th><th>model</th><th>controls (mean)</th><th>chance score</th></tr>\n");
        s.Append(Inv($"<tr><td class=\"l\">any role</td><td>{P(r.Shares.Interpretable)}</td><td>{P(r.ControlInterpretableMean)}</td><td></td></tr>\n"));
        s.Append(Inv($"<tr><td class=\"l\">any role but [CLS]/[SEP]/punctuation</td><td>{P(r.Shares.InterpretableExceptSpecialTokens)}</td><td>{P(r.Controls.Count == 0 ? null : r.Controls.Average(c => c.Shares.InterpretableExceptSpecialTokens))}</td><td></td></tr>\n"));
        foreach (var role in CensusThresholds.Roles.Where(x => CensusThresholds.Measured(r.Chance, x)))
        {
            s.Append(Inv($"<tr><td class=\"l\">{CensusThresholds.Letter(role)} {CensusThresholds.Name(role)}</td><td>{P(r.Shares.PerRole[role])}</td><td>{P(r.ControlRoleMean(role))}</td><td>{CensusThresholds.Score(r.Chance, role):F3}</td></tr>\n"));
        }

        s.Append("</table>\n");
        if (r.Target is not null)
        {
            s.Append(Inv($"<p>Importance and ablation target: {E(r.Target)}; its mean over the {r.Corpus.AblationTexts} ablation texts is {r.TargetBaseline:F4}.</p>\n"));
        }

        foreach (var (key, title, png) in CensusPlots.HeatMaps(r))
        {
            s.Append(Inv($"<figure><img alt=\"{E(title)}\" data-metric=\"{key}\" src=\"data:image/png;base64,{Convert.ToBase64String(png)}\"></figure>\n"));
        }

        s.Append("</section>\n");
        return s.ToString();
    }

    /// <summary>The comparison table, the scatter plot and the verdict.</summary>
    public static string ComparisonSection(CensusComparison comparison)
    {
        ArgumentNullException.ThrowIfNull(comparison);
        var s = new StringBuilder("<section class=\"census-compare\">\n<h2>Comparison</h2>\n<table><tr><th class=\"l\">model</th><th>parameters</th><th>layers × heads</th><th>interpretable</th><th>without special-token roles</th><th>controls</th>");
        foreach (var role in CensusThresholds.Roles)
        {
            s.Append(Inv($"<th>{E(CensusThresholds.Letter(role).ToString())}</th>"));
        }

        s.Append("</tr>\n");
        foreach (var row in comparison.Rows)
        {
            s.Append(Inv($"<tr><td class=\"l\">{E(row.Model)}</td><td>{row.Parameters:N0}</td><td>{row.Layers} × {row.HeadsPerLayer}</td><td>{P(row.Interpretable)}</td><td>{P(row.InterpretableExceptSpecialTokens)}</td><td>{P(row.ControlInterpretable)}</td>"));
            foreach (var role in CensusThresholds.Roles)
            {
                s.Append(Inv($"<td>{P(row.PerRole[role])}</td>"));
            }

            s.Append("</tr>\n");
        }

        s.Append("</table>\n");
        s.Append(Inv($"<figure><img alt=\"share of interpretable heads vs parameters\" src=\"data:image/png;base64,{Convert.ToBase64String(CensusPlots.ShareScatter(comparison))}\"></figure>\n"));
        s.Append("<p>").Append(E(comparison.Verdict)).Append("</p>\n</section>\n");
        return s.ToString();
    }

    private static string P(double? share) => share is { } v ? (v * 100).ToString("F1", CultureInfo.InvariantCulture) + "%" : "–";

    private static string E(string text) => WebUtility.HtmlEncode(text);

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
