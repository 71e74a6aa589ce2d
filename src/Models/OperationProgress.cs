namespace Headlight.Models;

/// <summary>
/// How far a long operation has come, reported through <see cref="IProgress{T}"/> after each batch of work
/// (a batch of forward passes, of integrated-gradient steps, of coalitions or of corpus texts).
/// </summary>
/// <param name="Operation">What is running, e.g. <c>embed</c> or <c>integrated-gradients</c>.</param>
/// <param name="Completed">Units done so far (texts, passes or coalitions; see <paramref name="Unit"/>).</param>
/// <param name="Total">Units in all.</param>
/// <param name="Unit">What one unit is, e.g. <c>texts</c> or <c>passes</c>.</param>
public readonly record struct OperationProgress(string Operation, long Completed, long Total, string Unit)
{
    /// <summary>The fraction done, in [0, 1].</summary>
    public double Fraction => Total <= 0 ? 1 : Math.Clamp((double)Completed / Total, 0, 1);
}
