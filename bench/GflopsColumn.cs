using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Headlight.Bench;

/// <summary>
/// A summary column with the arithmetic rate of a matrix product: <c>2·m·k·n</c> floating-point operations
/// (times the batch count) per mean run time. The shape is read from the benchmark's <c>Shape</c> parameter,
/// written <c>MxKxN</c> or <c>BxMxKxN</c>.
/// </summary>
public sealed class GflopsColumn : IColumn
{
    /// <summary>The parameter that carries the shape.</summary>
    public const string ShapeParameter = "Shape";

    /// <inheritdoc />
    public string Id => nameof(GflopsColumn);

    /// <inheritdoc />
    public string ColumnName => "GFLOP/s";

    /// <inheritdoc />
    public bool AlwaysShow => true;

    /// <inheritdoc />
    public ColumnCategory Category => ColumnCategory.Custom;

    /// <inheritdoc />
    public int PriorityInCategory => 0;

    /// <inheritdoc />
    public bool IsNumeric => true;

    /// <inheritdoc />
    public UnitType UnitType => UnitType.Dimensionless;

    /// <inheritdoc />
    public string Legend => "Floating-point operations (2·m·k·n per product) per second of the mean, in billions";

    /// <summary>The operation count of a shape written <c>MxKxN</c> or <c>BxMxKxN</c>: twice the product of the dimensions.</summary>
    public static double Flops(string shape)
    {
        double flops = 2;
        foreach (string part in shape.Split('x'))
        {
            flops *= int.Parse(part, CultureInfo.InvariantCulture);
        }

        return flops;
    }

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var shape = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == ShapeParameter)?.Value as string;
        double? meanNs = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (shape is null || meanNs is not > 0)
        {
            return "-";
        }

        return (Flops(shape) / meanNs.Value).ToString("F1", CultureInfo.InvariantCulture);
    }

    /// <inheritdoc />
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    /// <inheritdoc />
    public bool IsAvailable(Summary summary) => true;

    /// <inheritdoc />
    public override string ToString() => ColumnName;
}
