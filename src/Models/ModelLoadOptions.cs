namespace Headlight.Models;

/// <summary>How <see cref="Model.Load(string, Headlight.Kernels.Device?, ModelLoadOptions?)"/> treats what it reads.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>The defaults: every check on.</summary>
    public static ModelLoadOptions Default { get; } = new();

    /// <summary>
    /// Load weights that hold NaN or ±∞ instead of refusing them (for inspecting a broken checkpoint;
    /// its outputs will not be finite). The environment variable <c>HEADLIGHT_ALLOW_NONFINITE_WEIGHTS=1</c>
    /// does the same for every load.
    /// </summary>
    public bool AllowNonFiniteWeights { get; init; }
}
