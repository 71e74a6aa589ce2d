using System.Globalization;

namespace Headlight.Explain;

/// <summary>
/// Range checks for option values: each failure is an <see cref="ArgumentOutOfRangeException"/> whose parameter is the
/// option's name and whose message gives the allowed range, so a caller can tell which option to change and to what.
/// </summary>
internal static class OptionRange
{
    /// <summary>The most device or host memory an option may grant one batch: 1 TiB.</summary>
    public const long MaxMemoryBudgetBytes = 1L << 40;

    public static void Check(string method, string option, long value, long min, long max)
    {
        if (value < min || value > max)
        {
            throw new ArgumentOutOfRangeException(option, value, $"{method}: {option} must lie in [{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}].");
        }
    }

    // NaN fails both comparisons and so is out of every range; so are the infinities, the bounds being finite.
    public static void Check(string method, string option, double value, double min, double max)
    {
        if (!(value >= min && value <= max))
        {
            throw new ArgumentOutOfRangeException(option, value, $"{method}: {option} must be a finite number in [{min.ToString("R", CultureInfo.InvariantCulture)}, {max.ToString("R", CultureInfo.InvariantCulture)}].");
        }
    }
}
