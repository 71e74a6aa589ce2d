using System.Runtime.CompilerServices;
using ILGPU.Algorithms;

namespace Headlight.Kernels;

/// <summary>Which GELU: the exact one (BERT) or the tanh approximation (GPT-2's <c>gelu_new</c>).</summary>
public enum GeluForm
{
    /// <summary><c>x · Φ(x) = ½x(1 + erf(x/√2))</c>.</summary>
    Erf = 0,

    /// <summary><c>½x(1 + tanh(√(2/π)(x + 0.044715x³)))</c>.</summary>
    Tanh = 1,
}

/// <summary>
/// GELU forward and backward, element-wise. The scalar functions here are also the epilogue that
/// GEMM fuses. Both forms are written in a way that keeps relative accuracy for large negative x,
/// where GELU is tiny: <c>½(1 + erf(z)) = ½erfc(−z)</c> and <c>½(1 + tanh(u)) = sigmoid(2u)</c>.
/// </summary>
public static partial class Gelu
{
    internal const float InvSqrt2 = 0.70710678118654752f;
    internal const float InvSqrt2Pi = 0.39894228040143268f;
    internal const float TanhScale = 0.79788456080286536f; // √(2/π)
    internal const float TanhCubic = 0.044715f;

    /// <summary><c>y = gelu(x)</c>, same shape; <paramref name="y"/> may be <paramref name="x"/>.</summary>
    public static void Forward(Tensor<float> x, Tensor<float> y, GeluForm form)
    {
        var args = new OpArgs("Gelu.Forward").Add("x", x).Add("y", y)
            .Require(x.Shape == y.Shape, "x and y must have the same shape")
            .Require(Enum.IsDefined(form), "form must be Erf or Tanh");
        int n = (int)x.Length;
        if (n == 0)
        {
            return;
        }

        args.Backend.GeluForward(x, y, form);
    }

    /// <summary><c>dx = dy ⊙ gelu'(x)</c>; <paramref name="dx"/> may be <paramref name="dy"/>.</summary>
    public static void Backward(Tensor<float> x, Tensor<float> dy, Tensor<float> dx, GeluForm form) => RunBackward(x, dy, dx, form, relevance: false);

    // The backward pass or, with relevance, its identity-rule twin: the same operands, shapes and split over threads.
    private static void RunBackward(Tensor<float> x, Tensor<float> dy, Tensor<float> dx, GeluForm form, bool relevance)
    {
        var args = new OpArgs(relevance ? "Gelu.Relevance" : "Gelu.Backward").Add("x", x).Add("dy", dy).Add("dx", dx)
            .Require(x.Shape == dy.Shape && x.Shape == dx.Shape, "x, dy and dx must have the same shape")
            .Require(Enum.IsDefined(form), "form must be Erf or Tanh");
        int n = (int)x.Length;
        if (n == 0)
        {
            return;
        }

        args.Backend.GeluBackward(x, dy, dx, form, relevance);
    }

    /// <summary>GELU of one value; usable inside ILGPU kernels (form: 0 = erf, 1 = tanh).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Value(float x, int form)
    {
        return form == (int)GeluForm.Erf ? x * Phi(x) : x * Sigmoid(2f * TanhArgument(x));
    }

    /// <summary>The derivative of GELU at one value; usable inside ILGPU kernels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Derivative(float x, int form)
    {
        if (form == (int)GeluForm.Erf)
        {
            return Phi(x) + (x * InvSqrt2Pi * XMath.Exp(-0.5f * x * x));
        }

        float s = Sigmoid(2f * TanhArgument(x));
        float du = TanhScale * (1f + (3f * TanhCubic * x * x));
        return s + (x * 2f * s * (1f - s) * du);
    }

    // Φ(x) = ½ erfc(−x/√2): relative accuracy kept in the lower tail.
    private static float Phi(float x) => 0.5f * Erfc(-x * InvSqrt2);

    private static float TanhArgument(float x) => TanhScale * (x + (TanhCubic * x * x * x));

    private static float Sigmoid(float v) => 1f / (1f + XMath.Exp(-v));

    /// <summary>
    /// Complementary error function with fractional error below 1.2e-7 everywhere: the Chebyshev
    /// fit <c>erfc(z) ≈ t·exp(−z² + P(t))</c>, <c>t = 1/(1 + z/2)</c>, for z ≥ 0, and 2 − erfc(−z) below.
    /// </summary>
    internal static float Erfc(float z)
    {
        float a = XMath.Abs(z);
        float t = 1f / (1f + (0.5f * a));
        float r = t * XMath.Exp(-(a * a) + ErfcPolynomial(t));
        return z >= 0f ? r : 2f - r;
    }

    private static float ErfcPolynomial(float t)
    {
        return -1.26551223f + (t * (1.00002368f + (t * (0.37409196f + (t * (0.09678418f + (t * (-0.18628806f
            + (t * (0.27886807f + (t * (-1.13520398f + (t * (1.48851587f + (t * (-0.82215223f + (t * 0.17087277f)))))))))))))))));
    }

    #region LRP

    /// <summary>
    /// AttnLRP's identity rule through GELU, in signal form (relevance <c>R = x ⊙ signal</c>): the relevance at the
    /// output passes to the input unchanged, <c>R_x = R_y</c>, so <c>dx = dy ⊙ gelu(x)/x</c>. The ratio is GELU's gate,
    /// <c>Φ(x)</c> or <c>sigmoid(2u)</c>, finite at 0. <paramref name="dx"/> may be <paramref name="dy"/>.
    /// </summary>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped.</exception>
    public static void Relevance(Tensor<float> x, Tensor<float> dy, Tensor<float> dx, GeluForm form) => RunBackward(x, dy, dx, form, relevance: true);

    /// <summary><c>gelu(x)/x</c>: <c>Φ(x)</c> or <c>sigmoid(2u)</c>; usable inside ILGPU kernels.</summary>
    internal static float Gate(float x, int form) => form == (int)GeluForm.Erf ? Phi(x) : Sigmoid(2f * TanhArgument(x));

    #endregion
}

/// <summary>GELU's entry points on each backend (Gelu.Cpu.cs, Gelu.Ilgpu.cs).</summary>
internal abstract partial class Backend
{
    /// <summary><c>y = gelu(x)</c>; operands validated.</summary>
    internal abstract void GeluForward(Tensor<float> x, Tensor<float> y, GeluForm form);

    /// <summary><c>dx = dy ⊙ gelu'(x)</c>, or with <paramref name="relevance"/> the identity rule <c>dx = dy ⊙ gelu(x)/x</c>.</summary>
    internal abstract void GeluBackward(Tensor<float> x, Tensor<float> dy, Tensor<float> dx, GeluForm form, bool relevance);
}
