using System.Globalization;
using ScottPlot;

namespace Headlight.Explain.Plots;

/// <summary>PNG scatter plots of labelled points in a few series, on a logarithmic or linear horizontal axis.</summary>
internal static class ScatterChart
{
    /// <summary>One series: points with optional labels, drawn filled or hollow.</summary>
    /// <param name="Name">The legend entry.</param>
    /// <param name="X">Horizontal values (positive when the axis is logarithmic).</param>
    /// <param name="Y">Vertical values.</param>
    /// <param name="Labels">A label per point, or null.</param>
    /// <param name="Hollow">Open markers (controls) instead of filled ones.</param>
    internal sealed record Series(string Name, IReadOnlyList<double> X, IReadOnlyList<double> Y, IReadOnlyList<string>? Labels = null, bool Hollow = false);

    /// <summary>Renders the series as PNG bytes; with <paramref name="logX"/> the horizontal axis is log10 with ticks at powers of ten.</summary>
    public static byte[] Png(string title, string xLabel, string yLabel, IReadOnlyList<Series> series, bool logX, double? yMin = null, double? yMax = null)
    {
        ArgumentNullException.ThrowIfNull(series);
        var plot = new Plot();
        var palette = new ScottPlot.Palettes.Category10();
        double xLow = double.PositiveInfinity, xHigh = double.NegativeInfinity;
        for (int s = 0; s < series.Count; s++)
        {
            var one = series[s];
            if (one.X.Count != one.Y.Count)
            {
                throw new ArgumentException($"Series '{one.Name}' has {one.X.Count} x values and {one.Y.Count} y values.", nameof(series));
            }

            if (one.X.Count == 0)
            {
                continue;
            }

            var xs = one.X.Select(x => logX ? Math.Log10(x) : x).ToArray();
            var ys = one.Y.ToArray();
            var points = plot.Add.ScatterPoints(xs, ys);
            points.LegendText = one.Name;
            points.MarkerSize = one.Hollow ? 9 : 11;
            points.MarkerShape = one.Hollow ? MarkerShape.OpenCircle : MarkerShape.FilledCircle;
            points.Color = one.Hollow ? Colors.Gray : palette.GetColor(s);
            xLow = Math.Min(xLow, xs.Min());
            xHigh = Math.Max(xHigh, xs.Max());
            if (one.Labels is { } labels)
            {
                for (int i = 0; i < xs.Length; i++)
                {
                    var text = plot.Add.Text(labels[i], xs[i], ys[i]);
                    text.LabelAlignment = Alignment.LowerLeft;
                    text.LabelFontSize = 12;
                    text.OffsetX = 6;
                    text.OffsetY = -6;
                }
            }
        }

        if (double.IsFinite(xLow))
        {
            double pad = Math.Max((xHigh - xLow) * 0.15, logX ? 0.5 : 1);
            plot.Axes.SetLimitsX(xLow - pad, xHigh + pad);
            if (logX)
            {
                var ticks = new ScottPlot.TickGenerators.NumericManual();
                for (int p = (int)Math.Floor(xLow - pad); p <= (int)Math.Ceiling(xHigh + pad); p++)
                {
                    ticks.AddMajor(p, Math.Pow(10, p).ToString("0.#E+0", CultureInfo.InvariantCulture));
                }

                plot.Axes.Bottom.TickGenerator = ticks;
            }
        }

        if (yMin is not null || yMax is not null)
        {
            plot.Axes.SetLimitsY(yMin ?? 0, yMax ?? 1);
        }

        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        plot.ShowLegend(Alignment.UpperLeft);
        return plot.GetImageBytes(720, 480, ImageFormat.Png);
    }
}
