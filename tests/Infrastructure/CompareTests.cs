using Xunit.Sdk;

namespace Headlight.Tests;

/// <summary>Compare itself: a referee that passes wrong non-finite values checks nothing.</summary>
public sealed class CompareTests
{
    private static readonly Tolerance Loose = new(1e-3, 1e-3);

    [Theory]
    [InlineData(0f, double.PositiveInfinity)]
    [InlineData(3.4e38f, double.PositiveInfinity)]
    [InlineData(0f, double.NegativeInfinity)]
    [InlineData(float.NegativeInfinity, double.PositiveInfinity)]
    [InlineData(float.NaN, double.PositiveInfinity)]
    [InlineData(1f, double.NaN)]
    [InlineData(float.PositiveInfinity, double.NaN)]
    [InlineData(float.NaN, 1.0)]
    [InlineData(float.PositiveInfinity, 1.0)]
    public void A_non_finite_mismatch_fails(float actual, double expected)
    {
        Assert.Throws<FailException>(() => Compare.Close([1f, actual], [1.0, expected], Loose, "x"));
    }

    [Theory]
    [InlineData(float.PositiveInfinity, double.PositiveInfinity)]
    [InlineData(float.NegativeInfinity, double.NegativeInfinity)]
    [InlineData(float.NaN, double.NaN)]
    public void Matching_non_finite_values_pass(float actual, double expected)
    {
        Compare.Close([1f, actual], [1.0, expected], Loose, "x");
    }

    [Fact]
    public void A_finite_value_outside_the_tolerance_fails()
    {
        Compare.Close([1.0005f], [1.0], Loose, "x");
        Assert.Throws<FailException>(() => Compare.Close([1.01f], [1.0], Loose, "x"));
    }
}
