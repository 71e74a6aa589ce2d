using System.Globalization;
using ScottPlot;

namespace Headlight.Explain.Plots;

/// <summary>
/// PNG heat maps of a [rows, columns] grid (layers × heads, say), row 0 at the top, every row and column
/// labelled, each cell optionally annotated. Used by the head census; meant for any report that needs one.
/// </summary>
internal static class HeatMap
{
    /// <summary>What to draw.</summary>
    /// <param name="Values">[rows, columns]; NaN cells are left blank.</param>
    /// <param name="Title">The title above the map.</param>
    /// <param name="RowLabel">The vertical axis's name (e.g. <c>layer</c>).</param>
    /// <param name="ColumnLabel">The horizontal axis's name (e.g. <c>head</c>).</param>
    /// <param name="Minimum">The value drawn with the colour map's first colour; null = the data's minimum.</param>
    /// <param name="Maximum">The value drawn with its last colour; null = the data's maximum.</param>
    /// <param name="CellText">Text per cell [rows, columns] (null or empty = none); null = the values with two decimals where the grid is small.</param>
    /// <param name="RowNames">Tick labels of the rows (methods, say); null = the row numbers.</param>
    /// <param name="ColumnNames">Tick labels of the columns (tokens, say); null = the column numbers.</param>
    internal sealed record Spec(double[,] Values, string Title, string RowLabel, string ColumnLabel, double? Minimum = null, double? Maximum = null, string?[,]? CellText = null,
        IReadOnlyList<string>? RowNames = null, IReadOnlyList<string>? ColumnNames = null);

    private const int CellPixels = 44;
    private const int MaxAnnotatedCells = 24 * 24;

    /// <summary>Renders <paramref name="spec"/> as PNG bytes.</summary>
    public static byte[] Png(Spec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        int rows = spec.Values.GetLength(0);
        int columns = spec.Values.GetLength(1);
        if (rows == 0 || columns == 0)
        {
            throw new ArgumentException($"Heat map '{spec.Title}' has no cells ({rows} x {columns}).", nameof(spec));
        }

        var plot = new Plot();
        var map = plot.Add.Heatmap(spec.Values);
        map.Colormap = new ScottPlot.Colormaps.Viridis();
        var finite = spec.Values.Cast<double>().Where(double.IsFinite).DefaultIfEmpty(0).ToArray();
        double min = spec.Minimum ?? finite.Min();
        double max = spec.Maximum ?? finite.Max();
        if (max <= min)
        {
            max = min + 1;
        }

        map.ManualRange = new ScottPlot.Range(min, max);
        plot.Add.ColorBar(map);

        // The heat map puts row 0 at the top: cell (r, c) is centred on x = c, y = rows − 1 − r.
        bool annotate = spec.CellText is not null || rows * columns <= MaxAnnotatedCells;
        if (annotate)
        {
            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < columns; c++)
                {
                    double v = spec.Values[r, c];
                    string? text = spec.CellText is { } t ? t[r, c] : double.IsFinite(v) ? v.ToString("0.00", CultureInfo.InvariantCulture) : null;
                    if (string.IsNullOrEmpty(text))
                    {
                        continue;
                    }

                    var label = plot.Add.Text(text, c, rows - 1 - r);
                    label.LabelAlignment = Alignment.MiddleCenter;
                    label.LabelFontSize = 11;
                    double shade = (v - min) / (max - min);
                    label.LabelFontColor = double.IsFinite(v) && shade > 0.6 ? Colors.Black : Colors.White;
                }
            }
        }

        plot.Axes.Left.TickGenerator = Ticks(rows, r => rows - 1 - r, spec.RowNames);
        plot.Axes.Bottom.TickGenerator = Ticks(columns, c => c, spec.ColumnNames);
        plot.Title(spec.Title);
        plot.XLabel(spec.ColumnLabel);
        plot.YLabel(spec.RowLabel);
        plot.Axes.SetLimits(-0.5, columns - 0.5, -0.5, rows - 0.5);
        int width = Math.Clamp((columns * CellPixels) + 220, 480, 2400);
        int height = Math.Clamp((rows * CellPixels) + 140, 260, 2400);
        return plot.GetImageBytes(width, height, ImageFormat.Png);
    }

    private static ScottPlot.TickGenerators.NumericManual Ticks(int count, Func<int, int> position, IReadOnlyList<string>? names)
    {
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        for (int i = 0; i < count; i++)
        {
            ticks.AddMajor(position(i), names is not null && i < names.Count ? names[i] : i.ToString(CultureInfo.InvariantCulture));
        }

        return ticks;
    }
}
