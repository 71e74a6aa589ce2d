using System.Globalization;
using System.Net;
using System.Text;

namespace Headlight.Explain;

/// <summary>The benchmark's mean deletion and insertion curves as one standalone SVG (two panels, one line per method, random dashed).</summary>
internal static class FaithfulnessPlot
{
    private static readonly string[] Palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79", "#ad494a", "#637939"];

    private const int PanelWidth = 360;
    private const int PanelHeight = 240;
    private const int Margin = 48;

    public static string Svg(FaithfulnessResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var series = result.Methods.Select((m, i) => (m, Palette[i % Palette.Length], false)).Append((result.Random, "#555555", true)).ToArray();
        var all = series.SelectMany(s => s.Item1.MeanDeletion.Concat(s.Item1.MeanInsertion)).ToArray();
        double min = all.Min();
        double max = all.Max();
        if (max <= min)
        {
            max = min + 1;
        }

        int width = (2 * (PanelWidth + Margin)) + Margin + 150;
        int height = PanelHeight + (2 * Margin) + 10;
        var s = new StringBuilder();
        s.Append(Inv($"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">"));
        s.Append(Inv($"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>"));
        Panel(s, Margin, "deletion: top words removed first (lower is better)", series.Select(x => (x.Item1.MeanDeletion, x.Item2, x.Item3)).ToArray(), result.Grid, min, max);
        Panel(s, (2 * Margin) + PanelWidth, "insertion: top words put back first (higher is better)", series.Select(x => (x.Item1.MeanInsertion, x.Item2, x.Item3)).ToArray(), result.Grid, min, max);
        int legendX = (2 * (PanelWidth + Margin)) + Margin;
        for (int i = 0; i < series.Length; i++)
        {
            int y = Margin + (i * 18);
            string dash = series[i].Item3 ? " stroke-dasharray=\"5,3\"" : string.Empty;
            s.Append(Inv($"<line x1=\"{legendX}\" y1=\"{y}\" x2=\"{legendX + 24}\" y2=\"{y}\" stroke=\"{series[i].Item2}\" stroke-width=\"2\"{dash}/>"));
            s.Append(Inv($"<text x=\"{legendX + 30}\" y=\"{y + 4}\">{E(series[i].Item1.Method)}</text>"));
        }

        s.Append("</svg>");
        return s.ToString();
    }

    private static void Panel(StringBuilder s, int left, string title, (IReadOnlyList<double> Values, string Color, bool Dashed)[] series, IReadOnlyList<double> grid, double min, double max)
    {
        int top = Margin;
        s.Append(Inv($"<text x=\"{left}\" y=\"{top - 12}\" font-weight=\"bold\">{E(title)}</text>"));
        s.Append(Inv($"<rect x=\"{left}\" y=\"{top}\" width=\"{PanelWidth}\" height=\"{PanelHeight}\" fill=\"none\" stroke=\"#999\"/>"));
        for (int i = 0; i <= 4; i++)
        {
            double v = min + ((max - min) * i / 4);
            double y = top + PanelHeight - (PanelHeight * i / 4.0);
            s.Append(Inv($"<line x1=\"{left}\" y1=\"{y:F1}\" x2=\"{left + PanelWidth}\" y2=\"{y:F1}\" stroke=\"#eee\"/>"));
            s.Append(Inv($"<text x=\"{left - 4}\" y=\"{y + 4:F1}\" text-anchor=\"end\">{v:0.00}</text>"));
            double x = left + (PanelWidth * i / 4.0);
            s.Append(Inv($"<text x=\"{x:F1}\" y=\"{top + PanelHeight + 14}\" text-anchor=\"middle\">{i * 25}%</text>"));
        }

        s.Append(Inv($"<text x=\"{left + (PanelWidth / 2)}\" y=\"{top + PanelHeight + 30}\" text-anchor=\"middle\">share of words</text>"));
        foreach (var (values, color, dashed) in series)
        {
            var points = string.Join(" ", values.Select((v, i) => Inv($"{left + (PanelWidth * grid[i]):F1},{top + PanelHeight - (PanelHeight * (v - min) / (max - min)):F1}")));
            string dash = dashed ? " stroke-dasharray=\"5,3\"" : string.Empty;
            s.Append(Inv($"<polyline points=\"{points}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{dash}/>"));
        }
    }

    private static string Inv(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    private static string E(string text) => WebUtility.HtmlEncode(text);
}
