using System.Runtime.Intrinsics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>The element-wise ops on the managed SIMD backend: TensorPrimitives and Vector512 loops on the calling thread.</summary>
internal sealed partial class CpuBackend
{
    internal override void ElementwiseAdd(Tensor<float> a, Tensor<float> b, Tensor<float> y) => TensorPrimitives.Add(a.HostSpan, b.HostSpan, y.HostSpan);

    internal override void ElementwiseAddRowVector(Tensor<float> x, Tensor<float> bias, Tensor<float> y)
    {
        int n = (int)y.Length;
        int columns = (int)bias.Length;
        var xs = x.HostSpan;
        var ys = y.HostSpan;
        var bs = bias.HostSpan;
        for (int row = 0; row < n; row += columns)
        {
            TensorPrimitives.Add(xs.Slice(row, columns), bs, ys.Slice(row, columns));
        }
    }

    internal override void ElementwiseScale(Tensor<float> x, float alpha, Tensor<float> y) => TensorPrimitives.Multiply(x.HostSpan, alpha, y.HostSpan);

    internal override void ElementwiseAddScaled(Tensor<float> y, float alpha, Tensor<float> x)
    {
        var ys = y.HostSpan;
        TensorPrimitives.MultiplyAdd(x.HostSpan, alpha, ys, ys);
    }

    internal override void ElementwiseMultiply(Tensor<float> a, Tensor<float> b, Tensor<float> y) => TensorPrimitives.Multiply(a.HostSpan, b.HostSpan, y.HostSpan);

    internal override void ElementwiseTanh(Tensor<float> x, Tensor<float> y) => TensorPrimitives.Tanh(x.HostSpan, y.HostSpan);

    internal override void ElementwiseTanhBackward(Tensor<float> y, Tensor<float> dy, Tensor<float> dx)
    {
        var ys = y.HostSpan;
        var gs = dy.HostSpan;
        var ds = dx.HostSpan;
        for (int i = 0; i < ys.Length; i++)
        {
            ds[i] = gs[i] * (1f - (ys[i] * ys[i]));
        }
    }

    internal override void ElementwiseEpsilonShare(Tensor<float> dy, Tensor<float> z, Tensor<float> dx, float epsilon, int operands)
        => Elementwise.EpsilonShareHost(dy.HostSpan, z.HostSpan, dx.HostSpan, epsilon, operands);

    internal override void ElementwiseMultiplyRelevance(Tensor<float> dy, Tensor<float> a, Tensor<float> b, Tensor<float> output, float epsilon, int forA)
    {
        int n = (int)dy.Length;
        var g = dy.HostSpan;
        var x = a.HostSpan;
        var w = b.HostSpan;
        var d = output.HostSpan;
        for (int i = 0; i < n; i++)
        {
            d[i] = (forA != 0 ? w[i] : x[i]) * Elementwise.Share(g[i], x[i] * w[i], epsilon, 2f);
        }
    }
}

/// <summary>The element-wise ops' host SIMD code.</summary>
public static partial class Elementwise
{
    // dx = dy ⊙ z / (k·z + ε·sign z) on the host, 16 lanes at a time; dx may alias dy.
    internal static void EpsilonShareHost(ReadOnlySpan<float> dy, ReadOnlySpan<float> z, Span<float> dx, float epsilon, float operands)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var k = Vector512.Create(operands);
            var plus = Vector512.Create(epsilon);
            var minus = Vector512.Create(-epsilon);
            for (; i <= dx.Length - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var zv = Vector512.Create(z.Slice(i, Vector512<float>.Count));
                var e = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(zv, Vector512<float>.Zero), plus, minus);
                (Vector512.Create(dy.Slice(i, Vector512<float>.Count)) * zv / ((k * zv) + e)).CopyTo(dx.Slice(i, Vector512<float>.Count));
            }
        }

        for (; i < dx.Length; i++)
        {
            dx[i] = Share(dy[i], z[i], epsilon, operands);
        }
    }
}
