using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Headlight.Kernels;

/// <summary>GELU on the managed SIMD backend: Vector512/Vector256 loops, chunks over the device's workers.</summary>
internal sealed partial class CpuBackend
{
    internal override void GeluForward(Tensor<float> x, Tensor<float> y, GeluForm form) => Gelu.Apply(x.HostSpan, y.HostSpan, form);

    // SIMD per chunk, chunks over the device's threads: the backward pass of an MLP runs this on
    // [rows, intermediate] every layer.
    internal override unsafe void GeluBackward(Tensor<float> x, Tensor<float> dy, Tensor<float> dx, GeluForm form, bool relevance)
    {
        int n = (int)x.Length;
        fixed (float* px = x.HostSpan, pdy = dy.HostSpan, pdx = dx.HostSpan)
        {
            var job = new Gelu.HostJob { X = px, Dy = pdy, Dx = pdx, Length = n, Form = form, Relevance = relevance };
            Workers.Run(ref job, (n + Gelu.BackwardChunk - 1) / Gelu.BackwardChunk);
        }
    }
}

/// <summary>GELU's host SIMD code: the backward and relevance ranges, and the vector forms GEMM's CPU epilogue fuses.</summary>
public static partial class Gelu
{
    internal const int BackwardChunk = 1 << 15;

    /// <summary>The backward (or, with <see cref="Relevance"/>, the relevance) pass on the host; item = a chunk of <see cref="BackwardChunk"/> elements.</summary>
    internal unsafe struct HostJob : ICpuJob
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
}
