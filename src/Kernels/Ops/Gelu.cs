using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

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
public static unsafe class Gelu
{
    private const float InvSqrt2 = 0.70710678118654752f;
    private const float InvSqrt2Pi = 0.39894228040143268f;
    private const float TanhScale = 0.79788456080286536f; // √(2/π)
    private const float TanhCubic = 0.044715f;
    private const int BackwardChunk = 1 << 15;

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

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Gelu.Forward", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(ForwardKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, x.View, y.View, (int)form);
            }
        }
        else
        {
            Apply(x.HostSpan, y.HostSpan, form);
        }
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

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = relevance
                ? gpu.GetKernel("Gelu.Relevance", static acc =>
                    acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(RelevanceKernel))
                : gpu.GetKernel("Gelu.Backward", static acc =>
                    acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(BackwardKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, x.View, dy.View, dx.View, (int)form);
            }

            return;
        }

        // SIMD per chunk, chunks over the device's threads: the backward pass of an MLP runs this on
        // [rows, intermediate] every layer.
        var cpu = (CpuDevice)args.Device;
        fixed (float* px = x.HostSpan, pdy = dy.HostSpan, pdx = dx.HostSpan)
        {
            var job = new HostJob { X = px, Dy = pdy, Dx = pdx, Length = n, Form = form, Relevance = relevance };
            cpu.Workers.Run(ref job, (n + BackwardChunk - 1) / BackwardChunk);
        }
    }

    /// <summary>The backward (or, with <see cref="Relevance"/>, the relevance) pass on the host; item = a chunk of <see cref="BackwardChunk"/> elements.</summary>
    private unsafe struct HostJob : ICpuJob
    {
        public float* X;
        public float* Dy;
        public float* Dx;
        public int Length;
        public GeluForm Form;
        public bool Relevance;

        public readonly void Execute(int item)
        {
            int start = item * BackwardChunk;
            int length = Math.Min(BackwardChunk, Length - start);
            var x = new ReadOnlySpan<float>(X + start, length);
            var dy = new ReadOnlySpan<float>(Dy + start, length);
            var dx = new Span<float>(Dx + start, length);
            if (Relevance)
            {
                RelevanceRange(x, dy, dx, Form);
            }
            else
            {
                BackwardRange(x, dy, dx, Form);
            }
        }
    }

    // dx = dy ⊙ gelu'(x) on the host; dx may alias dy (each lane is read before it is written).
    private static void BackwardRange(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, GeluForm form)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= x.Length - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var v = Vector512.Create(x.Slice(i, Vector512<float>.Count));
                var g = Vector512.Create(dy.Slice(i, Vector512<float>.Count));
                (g * DerivativeVector(v, form)).CopyTo(dx.Slice(i, Vector512<float>.Count));
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var v = Vector256.Create(x.Slice(i, Vector256<float>.Count));
                var g = Vector256.Create(dy.Slice(i, Vector256<float>.Count));
                (g * DerivativeVector256(v, form)).CopyTo(dx.Slice(i, Vector256<float>.Count));
            }
        }

        for (; i < x.Length; i++)
        {
            dx[i] = dy[i] * Derivative(x[i], (int)form);
        }
    }

    // gelu'(x) on one Vector512: Φ(x) + x·φ(x), or s + 2x·s(1 − s)·u' with s = sigmoid(2u).
    private static Vector512<float> DerivativeVector(Vector512<float> x, GeluForm form)
    {
        if (form == GeluForm.Erf)
        {
            var phi = Vector512.Create(0.5f) * Erfc(-x * Vector512.Create(InvSqrt2));
            return phi + (x * Vector512.Create(InvSqrt2Pi) * Softmax.Exp(Vector512.Create(-0.5f) * x * x));
        }

        var x2 = x * x;
        var u = Vector512.Create(TanhScale) * (x + (Vector512.Create(TanhCubic) * x2 * x));
        var s = Vector512<float>.One / (Vector512<float>.One + Softmax.Exp(Vector512.Create(-2f) * u));
        var du = Vector512.Create(TanhScale) * (Vector512<float>.One + (Vector512.Create(3f * TanhCubic) * x2));
        return s + (x * Vector512.Create(2f) * s * (Vector512<float>.One - s) * du);
    }

    private static Vector256<float> DerivativeVector256(Vector256<float> x, GeluForm form)
    {
        if (form == GeluForm.Erf)
        {
            var phi = Vector256.Create(0.5f) * Erfc256(-x * Vector256.Create(InvSqrt2));
            return phi + (x * Vector256.Create(InvSqrt2Pi) * Vector256.Exp(Vector256.Create(-0.5f) * x * x));
        }

        var x2 = x * x;
        var u = Vector256.Create(TanhScale) * (x + (Vector256.Create(TanhCubic) * x2 * x));
        var s = Vector256<float>.One / (Vector256<float>.One + Vector256.Exp(Vector256.Create(-2f) * u));
        var du = Vector256.Create(TanhScale) * (Vector256<float>.One + (Vector256.Create(3f * TanhCubic) * x2));
        return s + (x * Vector256.Create(2f) * s * (Vector256<float>.One - s) * du);
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

    /// <summary>Applies GELU to a span on the host with Vector512/Vector256 where available; <paramref name="y"/> may alias <paramref name="x"/>.</summary>
    internal static void Apply(ReadOnlySpan<float> x, Span<float> y, GeluForm form)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= x.Length - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var v = Vector512.Create(x.Slice(i, Vector512<float>.Count));
                ValueVector(v, form).CopyTo(y.Slice(i, Vector512<float>.Count));
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= x.Length - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var v = Vector256.Create(x.Slice(i, Vector256<float>.Count));
                ValueVector256(v, form).CopyTo(y.Slice(i, Vector256<float>.Count));
            }
        }

        for (; i < x.Length; i++)
        {
            y[i] = Value(x[i], (int)form);
        }
    }

    /// <summary>GELU on one Vector512, for fused epilogues on the CPU.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> ValueVector(Vector512<float> x, GeluForm form)
    {
        if (form == GeluForm.Erf)
        {
            // Φ(x) = ½ erfc(−x/√2)
            return x * (Vector512.Create(0.5f) * Erfc(-x * Vector512.Create(InvSqrt2)));
        }

        var u = Vector512.Create(TanhScale) * (x + (Vector512.Create(TanhCubic) * x * x * x));
        return x / (Vector512<float>.One + Softmax.Exp(Vector512.Create(-2f) * u));
    }

    /// <summary>GELU on one Vector256, for machines without AVX-512.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> ValueVector256(Vector256<float> x, GeluForm form)
    {
        if (form == GeluForm.Erf)
        {
            return x * (Vector256.Create(0.5f) * Erfc256(-x * Vector256.Create(InvSqrt2)));
        }

        var u = Vector256.Create(TanhScale) * (x + (Vector256.Create(TanhCubic) * x * x * x));
        return x / (Vector256<float>.One + Vector256.Exp(Vector256.Create(-2f) * u));
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

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Erfc(Vector512<float> z)
    {
        var a = Vector512.Abs(z);
        var t = Vector512<float>.One / (Vector512<float>.One + (Vector512.Create(0.5f) * a));
        var p = Vector512.Create(0.17087277f);
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(-0.82215223f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(1.48851587f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(-1.13520398f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(0.27886807f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(-0.18628806f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(0.09678418f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(0.37409196f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(1.00002368f));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(-1.26551223f));
        var r = t * Softmax.Exp(p - (a * a));
        return Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(z, Vector512<float>.Zero), r, Vector512.Create(2f) - r);
    }

    private static Vector256<float> Erfc256(Vector256<float> z)
    {
        var a = Vector256.Abs(z);
        var t = Vector256<float>.One / (Vector256<float>.One + (Vector256.Create(0.5f) * a));
        var p = Vector256.Create(0.17087277f);
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(-0.82215223f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(1.48851587f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(-1.13520398f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(0.27886807f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(-0.18628806f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(0.09678418f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(0.37409196f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(1.00002368f));
        p = Vector256.FusedMultiplyAdd(p, t, Vector256.Create(-1.26551223f));
        var r = t * Vector256.Exp(p - (a * a));
        return Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(z, Vector256<float>.Zero), r, Vector256.Create(2f) - r);
    }

    // x [n] -> y [n]
    private static void ForwardKernel(Index1D i, ArrayView<float> x, ArrayView<float> y, int form) => y[i] = Value(x[i], form);

    // x [n], dy [n] -> dx [n]
    private static void BackwardKernel(Index1D i, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx, int form)
        => dx[i] = dy[i] * Derivative(x[i], form);

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

    // dx = dy ⊙ gelu(x)/x on the host; dx may alias dy.
    private static void RelevanceRange(ReadOnlySpan<float> x, ReadOnlySpan<float> dy, Span<float> dx, GeluForm form)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; i <= x.Length - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var v = Vector512.Create(x.Slice(i, Vector512<float>.Count));
                var gate = form == GeluForm.Erf
                    ? Vector512.Create(0.5f) * Erfc(-v * Vector512.Create(InvSqrt2))
                    : Vector512<float>.One / (Vector512<float>.One + Softmax.Exp(Vector512.Create(-2f * TanhScale) * (v + (Vector512.Create(TanhCubic) * v * v * v))));
                (Vector512.Create(dy.Slice(i, Vector512<float>.Count)) * gate).CopyTo(dx.Slice(i, Vector512<float>.Count));
            }
        }

        for (; i < x.Length; i++)
        {
            dx[i] = dy[i] * Gate(x[i], (int)form);
        }
    }

    // x [n], dy [n] -> dx [n]
    private static void RelevanceKernel(Index1D i, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx, int form)
        => dx[i] = dy[i] * Gate(x[i], form);

    #endregion
}
