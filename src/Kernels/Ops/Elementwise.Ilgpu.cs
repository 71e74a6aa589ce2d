using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>The element-wise ops on ILGPU: one thread per element.</summary>
internal sealed partial class IlgpuBackend
{
    internal override void ElementwiseAdd(Tensor<float> a, Tensor<float> b, Tensor<float> y)
    {
        using var launch = Launch("Elementwise.Add", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(Elementwise.AddKernel));
        launch.Kernel(launch.Stream, (int)y.Length, a.View, b.View, y.View);
    }

    internal override void ElementwiseAddRowVector(Tensor<float> x, Tensor<float> bias, Tensor<float> y)
    {
        using var launch = Launch("Elementwise.AddRowVector", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(Elementwise.AddRowVectorKernel));
        launch.Kernel(launch.Stream, (int)y.Length, x.View, bias.View, y.View, (int)bias.Length);
    }

    internal override void ElementwiseScale(Tensor<float> x, float alpha, Tensor<float> y)
    {
        using var launch = Launch("Elementwise.Scale", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, float, ArrayView<float>>(Elementwise.ScaleKernel));
        launch.Kernel(launch.Stream, (int)y.Length, x.View, alpha, y.View);
    }

    internal override void ElementwiseAddScaled(Tensor<float> y, float alpha, Tensor<float> x)
    {
        using var launch = Launch("Elementwise.AddScaled", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, float, ArrayView<float>>(Elementwise.AddScaledKernel));
        launch.Kernel(launch.Stream, (int)y.Length, y.View, alpha, x.View);
    }

    internal override void ElementwiseMultiply(Tensor<float> a, Tensor<float> b, Tensor<float> y)
    {
        using var launch = Launch("Elementwise.Multiply", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(Elementwise.MultiplyKernel));
        launch.Kernel(launch.Stream, (int)y.Length, a.View, b.View, y.View);
    }

    internal override void ElementwiseTanh(Tensor<float> x, Tensor<float> y)
    {
        using var launch = Launch("Elementwise.Tanh", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>>(Elementwise.TanhKernel));
        launch.Kernel(launch.Stream, (int)y.Length, x.View, y.View);
    }

    internal override void ElementwiseTanhBackward(Tensor<float> y, Tensor<float> dy, Tensor<float> dx)
    {
        using var launch = Launch("Elementwise.TanhBackward", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(Elementwise.TanhBackwardKernel));
        launch.Kernel(launch.Stream, (int)y.Length, y.View, dy.View, dx.View);
    }

    internal override void ElementwiseEpsilonShare(Tensor<float> dy, Tensor<float> z, Tensor<float> dx, float epsilon, int operands)
    {
        using var launch = Launch("Elementwise.EpsilonShare", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, float>(Elementwise.EpsilonShareKernel));
        launch.Kernel(launch.Stream, (int)dx.Length, dy.View, z.View, dx.View, epsilon, operands);
    }

    internal override void ElementwiseMultiplyRelevance(Tensor<float> dy, Tensor<float> a, Tensor<float> b, Tensor<float> output, float epsilon, int forA)
    {
        using var launch = Launch("Elementwise.MultiplyRelevance", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, int>(Elementwise.MultiplyRelevanceKernel));
        launch.Kernel(launch.Stream, (int)dy.Length, dy.View, a.View, b.View, output.View, epsilon, forA);
    }
}

/// <summary>The element-wise ops' ILGPU kernels.</summary>
public static partial class Elementwise
{
    // y [n] = a [n] + b [n]
    internal static void AddKernel(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[i] = a[i] + b[i];

    // y [rows, columns] = x [rows, columns] + bias [columns]
    internal static void AddRowVectorKernel(Index1D i, ArrayView<float> x, ArrayView<float> bias, ArrayView<float> y, int columns)
        => y[i] = x[i] + bias[i % columns];

    internal static void ScaleKernel(Index1D i, ArrayView<float> x, float alpha, ArrayView<float> y) => y[i] = alpha * x[i];

    internal static void AddScaledKernel(Index1D i, ArrayView<float> y, float alpha, ArrayView<float> x) => y[i] += alpha * x[i];

    internal static void TanhKernel(Index1D i, ArrayView<float> x, ArrayView<float> y) => y[i] = XMath.Tanh(x[i]);

    internal static void TanhBackwardKernel(Index1D i, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx)
        => dx[i] = dy[i] * (1f - (y[i] * y[i]));

    internal static void MultiplyKernel(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[i] = a[i] * b[i];

    // dy, z [n] -> dx [n]
    internal static void EpsilonShareKernel(Index1D i, ArrayView<float> dy, ArrayView<float> z, ArrayView<float> dx, float epsilon, float operands)
        => dx[i] = Share(dy[i], z[i], epsilon, operands);

    // dy, a, b [n] -> output [n] = (the other operand) ⊙ the share of dy at y = a ⊙ b: da when forA, else db
    internal static void MultiplyRelevanceKernel(Index1D i, ArrayView<float> dy, ArrayView<float> a, ArrayView<float> b,
        ArrayView<float> output, float epsilon, int forA)
        => output[i] = (forA != 0 ? b[i] : a[i]) * Share(dy[i], a[i] * b[i], epsilon, 2f);
}
