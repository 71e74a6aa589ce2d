using ILGPU;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>GELU on ILGPU: one thread per element.</summary>
internal sealed partial class IlgpuBackend
{
    internal override void GeluForward(Tensor<float> x, Tensor<float> y, GeluForm form)
    {
        using var launch = Launch("Gelu.Forward", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(Gelu.ForwardKernel));
        launch.Kernel(launch.Stream, (int)x.Length, x.View, y.View, (int)form);
    }

    internal override void GeluBackward(Tensor<float> x, Tensor<float> dy, Tensor<float> dx, GeluForm form, bool relevance)
    {
        using var launch = relevance
            ? Launch("Gelu.Relevance", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(Gelu.RelevanceKernel))
            : Launch("Gelu.Backward", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(Gelu.BackwardKernel));
        launch.Kernel(launch.Stream, (int)x.Length, x.View, dy.View, dx.View, (int)form);
    }
}

/// <summary>GELU's ILGPU kernels.</summary>
public static partial class Gelu
{
    // x [n] -> y [n]
    internal static void ForwardKernel(Index1D i, ArrayView<float> x, ArrayView<float> y, int form) => y[i] = Value(x[i], form);

    // x [n], dy [n] -> dx [n]
    internal static void BackwardKernel(Index1D i, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx, int form)
        => dx[i] = dy[i] * Derivative(x[i], form);

    // x [n], dy [n] -> dx [n]
    internal static void RelevanceKernel(Index1D i, ArrayView<float> x, ArrayView<float> dy, ArrayView<float> dx, int form)
        => dx[i] = dy[i] * Gate(x[i], form);
}
