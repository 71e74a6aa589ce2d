using Headlight.Explain.Plots;

namespace Headlight.Explain.Report;

/// <summary>The report's token heat maps as PNG images, for papers and slides: one per input, methods × tokens.</summary>
internal static class ReportPng
{
    /// <summary>One PNG per input row, named <c>input-N.png</c>; each method's scores scaled to its largest |score| on that input.</summary>
    public static IReadOnlyList<(string Name, byte[] Png)> HeatMaps(ExplanationReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var images = new List<(string, byte[])>();
        for (int row = 0; row < report.Rows; row++)
        {
            var first = report.Results[0].Rows[row];
            int tokens = first.Tokens.Count;
            var values = new double[report.Results.Count, tokens];
            for (int m = 0; m < report.Results.Count; m++)
            {
                var a = report.Results[m].Rows[row];
                double scale = ScoreColors.Scale(a.TokenScores, a.IsSpecial);
                for (int t = 0; t < tokens; t++)
                {
                    values[m, t] = ScoreColors.Normalize(a.TokenScores[t], scale);
                }
            }

            string text = first.Input.Text.Length > 60 ? first.Input.Text[..57] + "..." : first.Input.Text;
            var spec = new HeatMap.Spec(values, $"{report.Target}: \"{text}\" (score / largest |score| per method)", "method", "token", -1, 1,
                RowNames: report.Results.Select(r => r.Method).ToArray(), ColumnNames: first.Tokens.ToArray());
            images.Add(($"input-{row + 1}.png", HeatMap.Png(spec)));
        }

        return images;
    }
}
