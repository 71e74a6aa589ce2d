using System.Globalization;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Headlight.Bench;

/// <summary>
/// A numeric summary column computed from a benchmark's mean time: the derived class says what one run does per
/// nanosecond (GFLOP/s, tokens/s, GB/s); this class holds the column plumbing BenchmarkDotNet asks for.
/// </summary>
public abstract class RateColumnBase(string name, string legend) : IColumn
{
    /// <inheritdoc />
    public string Id => GetType().FullName!;

    /// <inheritdoc />
    public string ColumnName => name;

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
    public string Legend => legend;

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, summary.Style);

    /// <inheritdoc />
    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        double? ns = summary[benchmarkCase]?.ResultStatistics?.Mean;
        return ns is > 0 ? Rate(benchmarkCase, ns.Value).ToString("F1", CultureInfo.InvariantCulture) : "-";
    }

    /// <inheritdoc />
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    /// <inheritdoc />
    public bool IsAvailable(Summary summary) => true;

    /// <summary>The column's value for a case whose mean run takes <paramref name="nanoseconds"/>.</summary>
    protected abstract double Rate(BenchmarkCase benchmarkCase, double nanoseconds);
}
