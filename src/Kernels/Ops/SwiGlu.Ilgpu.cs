using ILGPU;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>SwiGLU on ILGPU: element-wise grid-stride kernels over [rows, n].</summary>
internal sealed partial class IlgpuBackend
{
    /// <summary>Threads for a grid-stride launch over <paramref name="total"/> items: at most enough to fill the accelerator once.</summary>
    internal int GridStrideThreads(int total) =>
        (int)Math.Min(total, Math.Max(1L, (long)Accelerator.NumMultiprocessors * Accelerator.MaxNumThreadsPerMultiprocessor));

    internal override void SwiGluForward(Tensor<float> gateUp, Tensor<float> y, int rows, int n)
    {
        int total = rows * n;
        int threads = GridStrideThreads(total);
        using var launch = Launch("SwiGlu.Forward", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int>(SwiGlu.ForwardKernel));
        launch.Kernel(launch.Stream, threads, gateUp.View, y.View, n, total, threads);
    }

    internal override void SwiGluBackward(Tensor<float> gateUp, Tensor<float> dy, Tensor<float> dGateUp, int rows, int n, bool relevance)
    {
        int total = rows * n;
        int threads = GridStrideThreads(total);
        using var launch = Launch("SwiGlu.Backward", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(SwiGlu.BackwardKernel));
        launch.Kernel(launch.Stream, threads, gateUp.View, dy.View, dGateUp.View, n, total, threads, relevance ? 1 : 0);
    }
}

/// <summary>SwiGLU's ILGPU kernels.</summary>
public static partial class SwiGlu
{
    // gateUp [rows, 2n] -> y [rows, n]; item i = (row, j), stride = the launch's thread count.
    internal static void ForwardKernel(Index1D index, ArrayView<float> gateUp, ArrayView<float> y, int n, int total, int stride)
    {
        for (int i = index; i < total; i += stride)
        {
            int row = i / n;
            long at = ((long)row * 2 * n) + (i - (row * n));
            float g = gateUp[at];
            y[i] = g * Sigmoid(g) * gateUp[at + n];
        }
    }

    // gateUp [rows, 2n], dy [rows, n] -> dGateUp [rows, 2n] (may be gateUp: each item reads its pair before writing it).
    internal static void BackwardKernel(Index1D index, ArrayView<float> gateUp, ArrayView<float> dy, ArrayView<float> dGateUp,
        int n, int total, int stride, int relevance)
    {
        for (int i = index; i < total; i += stride)
        {
            int row = i / n;
            long at = ((long)row * 2 * n) + (i - (row * n));
            float g = gateUp[at];
            float u = gateUp[at + n];
            float d = dy[i];
            float s = Sigmoid(g);
            if (relevance != 0)
            {
                dGateUp[at] = 0.5f * d * u * s;
                dGateUp[at + n] = 0.5f * d * g * s;
            }
            else
            {
                dGateUp[at] = d * u * s * (1f + (g * (1f - s)));
                dGateUp[at + n] = d * g * s;
            }
        }
    }
}
