using ILGPU.Algorithms;

namespace Headlight.Kernels;

/// <summary>
/// Global-norm gradient clipping on the device: <see cref="AccumulateSquares"/> once per parameter buffer into a
/// <c>[1]</c> sum, then <see cref="ClipFactor"/>, whose <c>[1]</c> result feeds <see cref="AdamW.Step"/>'s gradient scale.
/// </summary>
public static partial class GradientNorm
{
    /// <summary>
    /// <c>sumOfSquares[0] += Σ x²</c>, summed in a fixed order (fixed blocks, then a fixed-order sum of the blocks), so the
    /// result is the same bits run to run and does not depend on the number of CPU workers.
    /// </summary>
    /// <param name="x">Any tensor (a gradient buffer).</param>
    /// <param name="sumOfSquares">The running sum <c>[1]</c>; zero it before the first buffer.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, misshaped or overlapping.</exception>
    public static void AccumulateSquares(Tensor<float> x, Tensor<float> sumOfSquares)
    {
        var args = new OpArgs("GradientNorm.AccumulateSquares").Add("x", x).Add("sumOfSquares", sumOfSquares)
            .RequireShape("sumOfSquares", sumOfSquares, 1);
        if (x.Length == 0)
        {
            return;
        }

        args.Require(!args.Backend.AttentionSharesMemory(x, sumOfSquares), "'sumOfSquares' overlaps 'x' in memory; the output must not alias the input");
        args.Backend.GradientAccumulateSquares(x, sumOfSquares, args.ToInt32(x.Length, "x's length"));
    }

    /// <summary>
    /// <c>factor[0] = min(1, maxNorm / (√sumOfSquares[0] + 1e-6))</c>. A non-finite sum gives a non-finite factor, so the
    /// update it scales shows the NaN; check the norm before trusting the step.
    /// </summary>
    /// <param name="sumOfSquares">The summed squares <c>[1]</c> of every gradient.</param>
    /// <param name="maxNorm">The largest global norm allowed; positive and finite.</param>
    /// <param name="factor">Receives the scale <c>[1]</c> for the gradients; may be <paramref name="sumOfSquares"/>.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, or maxNorm is not positive and finite.</exception>
    public static void ClipFactor(Tensor<float> sumOfSquares, float maxNorm, Tensor<float> factor)
    {
        var args = new OpArgs("GradientNorm.ClipFactor").Add("sumOfSquares", sumOfSquares).Add("factor", factor)
            .RequireShape("sumOfSquares", sumOfSquares, 1)
            .RequireShape("factor", factor, 1)
            .Require(maxNorm > 0f && float.IsFinite(maxNorm), $"maxNorm must be positive and finite (got {maxNorm})");
        args.Backend.GradientClipFactor(sumOfSquares, maxNorm, factor);
    }

    internal const float NormEpsilon = 1e-6f;

    /// <summary>The clipping factor of one sum of squares; NaN for a non-finite sum. Usable inside ILGPU kernels.</summary>
    internal static float Factor(float sumOfSquares, float maxNorm)
    {
        if (XMath.IsNaN(sumOfSquares) || XMath.IsInfinity(sumOfSquares))
        {
            return float.NaN;
        }

        float f = maxNorm / (XMath.Sqrt(sumOfSquares) + NormEpsilon);
        return f < 1f ? f : 1f;
    }
}

/// <summary>The gradient norm's entry points on each backend (GradientNorm.Cpu.cs, GradientNorm.Ilgpu.cs).</summary>
internal abstract partial class Backend
{
    /// <summary><c>sumOfSquares[0] += Σ x²</c> over the <paramref name="length"/> (positive) elements, in a fixed order.</summary>
    internal abstract void GradientAccumulateSquares(Tensor<float> x, Tensor<float> sumOfSquares, int length);

    /// <summary><c>factor[0] = min(1, maxNorm / (√sumOfSquares[0] + 1e-6))</c>, NaN for a non-finite sum.</summary>
    internal abstract void GradientClipFactor(Tensor<float> sumOfSquares, float maxNorm, Tensor<float> factor);
}
