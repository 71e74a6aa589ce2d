namespace Headlight.Tests.Ops;

/// <summary>
/// Every op's allowed error against its float64 reference, in one place. Inputs are O(1); the
/// absolute part covers results that cancel to near zero, the relative part covers the rest.
/// </summary>
public static class Tolerances
{
    /// <summary>One rounding per element: add, scale, multiply.</summary>
    public static readonly Tolerance Elementwise = new(1e-6, 1e-6);

    /// <summary>Sums of up to a few hundred O(1) terms in float32: error grows like √n · 6e-8 · Σ|x|.</summary>
    public static readonly Tolerance Reduce = new(2e-5, 1e-5);

    /// <summary>GELU and its derivative: the erfc fit has 1.2e-7 fractional error; exp adds a few ulps.</summary>
    public static readonly Tolerance Gelu = new(1e-6, 2e-6);
}
