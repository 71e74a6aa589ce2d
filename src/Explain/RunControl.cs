using Headlight.Models;

namespace Headlight.Explain;

/// <summary>
/// Cancellation and progress for one long operation: work loops call <see cref="Advance"/> after each batch
/// and <see cref="ThrowIfCancelled"/> before the next, never inside one, so a cancelled run leaves the model's
/// buffers consistent and the model usable.
/// </summary>
internal sealed class RunControl(string operation, string unit, IProgress<OperationProgress>? progress, CancellationToken cancellationToken)
{
    private long completed;
    private long total;

    /// <summary>A control that never cancels and reports nowhere.</summary>
    public static RunControl None { get; } = new("", "", null, CancellationToken.None);

    /// <summary>Adds <paramref name="units"/> to the work expected in all (called before the work starts).</summary>
    public void Expect(long units) => total += units;

    /// <summary>Throws <see cref="OperationCanceledException"/> when cancellation was asked for.</summary>
    public void ThrowIfCancelled() => cancellationToken.ThrowIfCancellationRequested();

    /// <summary>Records <paramref name="units"/> more done and reports.</summary>
    public void Advance(long units)
    {
        completed += units;
        progress?.Report(new OperationProgress(operation, Math.Min(completed, total), total, unit));
    }
}
