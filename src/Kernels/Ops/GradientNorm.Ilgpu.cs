using ILGPU;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>
/// The gradient norm on ILGPU: one group strides over the buffer (compensated per-thread sums, then a fixed tree), so
/// the order is fixed without atomics or a second buffer, at the bandwidth of one multiprocessor on large buffers; the
/// clipping factor is one thread.
/// </summary>
internal sealed partial class IlgpuBackend
{
    internal override void GradientAccumulateSquares(Tensor<float> x, Tensor<float> sumOfSquares, int length)
    {
        using var launch = Launch("GradientNorm.AccumulateSquares", static acc => acc.LoadKernel<
            ArrayView<float>, ArrayView<float>, int>(GradientNorm.SquaresKernel));
        launch.Kernel(launch.Stream, new KernelConfig(1, GroupReduce.GroupSizeFor(this)), x.View, sumOfSquares.View, length);
    }

    internal override void GradientClipFactor(Tensor<float> sumOfSquares, float maxNorm, Tensor<float> factor)
    {
        using var launch = Launch("GradientNorm.ClipFactor", static acc => acc.LoadAutoGroupedKernel<
            Index1D, ArrayView<float>, float, ArrayView<float>>(GradientNorm.ClipFactorKernel));
        launch.Kernel(launch.Stream, 1, sumOfSquares.View, maxNorm, factor.View);
    }
}

/// <summary>The gradient norm's ILGPU kernels.</summary>
public static partial class GradientNorm
{
    // One group. x [n] -> sumOfSquares [1] += Σ x²
    internal static void SquaresKernel(ArrayView<float> x, ArrayView<float> sumOfSquares, int length)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        float sum = 0f;
        float carry = 0f;
        for (int i = Group.IdxX; i < length; i += Group.DimX)
        {
            // Kahan: a thread sums length / group values, which float alone would round a few thousand times.
            float term = (x[i] * x[i]) - carry;
            float next = sum + term;
            carry = (next - sum) - term;
            sum = next;
        }

        sum = GroupReduce.Sum(scratch, sum);
        if (Group.IdxX == 0)
        {
            sumOfSquares[0] += sum;
        }
    }

    // sumOfSquares [1] -> factor [1]
    internal static void ClipFactorKernel(Index1D i, ArrayView<float> sumOfSquares, float maxNorm, ArrayView<float> factor)
        => factor[i] = Factor(sumOfSquares[i], maxNorm);
}
