using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>
/// RmsNorm on ILGPU: one warp per row (shuffle reductions) where the backend has warps and rows are at most
/// <see cref="GroupReduce.MaxWarpRow"/> long, else one group per row (shared-memory reductions). dGamma is a column
/// kernel; the relevance rule, which needs no reduction, is element-wise.
/// </summary>
internal sealed partial class IlgpuBackend
{
    internal override void RmsNormForward(Tensor<float> x, Tensor<float> gamma, Tensor<float> y, float epsilon, Tensor<float>? rstd, int rows, int d)
    {
        int flags = rstd is not null ? 1 : 0;
        if (GroupReduce.UseWarpRows(this, d))
        {
            using var warpKernel = Launch("RmsNorm.ForwardWarp", static acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float, int>(RmsNorm.ForwardWarpKernel));
            warpKernel.Kernel(warpKernel.Stream, GroupReduce.WarpRows(this, rows), x.View, gamma.View, y.View, (rstd ?? x).View, rows, d, epsilon, flags);
            return;
        }

        using var launch = Launch("RmsNorm.Forward", static acc => acc.LoadKernel<
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float, int>(RmsNorm.ForwardKernel));
        launch.Kernel(launch.Stream, new KernelConfig(rows, LayerNorm.RowGroupSize(this, d)), x.View, gamma.View, y.View, (rstd ?? x).View, d, epsilon, flags);
    }

    internal override void RmsNormBackward(Tensor<float> dOutput, Tensor<float> input, Tensor<float> gamma, Tensor<float> rstd,
        Tensor<float> dInput, Tensor<float>? dGamma, bool accumulateInput, int rows, int d)
    {
        // The column sums run first: they read dOutput and input, which dInput may overwrite.
        if (dGamma is not null)
        {
            using var columns = Launch("RmsNorm.GammaGradient", static acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(RmsNorm.GammaGradientKernel));
            // Up to 32 columns by up to 8 row lanes; fewer for tiny shapes.
            int max = GroupReduce.GroupSizeFor(this);
            int perGroup = Math.Min(Math.Min(LayerNorm.ColumnsPerGroup, LayerNorm.PowerOfTwoAtLeast(d)), max);
            int group = perGroup * Math.Min(max / perGroup, LayerNorm.PowerOfTwoAtLeast(rows));
            columns.Kernel(columns.Stream, new KernelConfig((d + perGroup - 1) / perGroup, group),
                dOutput.View, input.View, rstd.View, dGamma.View, rows, d, perGroup);
        }

        int accumulate = accumulateInput ? 1 : 0;
        if (GroupReduce.UseWarpRows(this, d))
        {
            using var warpKernel = Launch("RmsNorm.BackwardWarp", static acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(RmsNorm.BackwardWarpKernel));
            warpKernel.Kernel(warpKernel.Stream, GroupReduce.WarpRows(this, rows),
                dOutput.View, input.View, gamma.View, rstd.View, dInput.View, rows, d, accumulate);
            return;
        }

        using var launch = Launch("RmsNorm.Backward", static acc => acc.LoadKernel<
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(RmsNorm.BackwardKernel));
        launch.Kernel(launch.Stream, new KernelConfig(rows, LayerNorm.RowGroupSize(this, d)),
            dOutput.View, input.View, gamma.View, rstd.View, dInput.View, d, accumulate);
    }

    internal override void RmsNormRelevance(Tensor<float> dOutput, Tensor<float> gamma, Tensor<float> rstd, Tensor<float> dInput, bool accumulate, int rows, int d)
    {
        int total = rows * d;
        int threads = GridStrideThreads(total);
        using var launch = Launch("RmsNorm.Relevance", static acc => acc.LoadAutoGroupedKernel<
            Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int, int>(RmsNorm.RelevanceKernel));
        launch.Kernel(launch.Stream, threads, dOutput.View, gamma.View, rstd.View, dInput.View, d, total, threads, accumulate ? 1 : 0);
    }
}

/// <summary>RmsNorm's ILGPU kernels.</summary>
public static partial class RmsNorm
{
    // One warp per row, several rows per group; a warp past the last row runs on an empty row and writes nothing.
    // x [rows, d], gamma [d] -> y [rows, d] (may be x), rstd [rows]
    internal static void ForwardWarpKernel(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> y, ArrayView<float> rstd,
        int rows, int d, float epsilon, int flags)
    {
        int row = GroupReduce.WarpRow();
        int width = row < rows ? d : 0;
        int lane = Warp.LaneIdx;
        long start = (long)row * d;
        float acc = 0f;
        for (int c = lane; c < width; c += Warp.WarpSize)
        {
            float v = x[start + c];
            acc += v * v;
        }

        float rs = 1f / XMath.Sqrt((GroupReduce.WarpSum(acc) / d) + epsilon);
        for (int c = lane; c < width; c += Warp.WarpSize)
        {
            y[start + c] = x[start + c] * rs * gamma[c];
        }

        if (lane == 0 && row < rows && flags != 0)
        {
            rstd[row] = rs;
        }
    }

    // One group per row. x [rows, d], gamma [d] -> y [rows, d] (may be x), rstd [rows]
    internal static void ForwardKernel(ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> y, ArrayView<float> rstd, int d, float epsilon, int flags)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int row = Grid.IdxX;
        long start = (long)row * d;
        float acc = 0f;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            float v = x[start + c];
            acc += v * v;
        }

        float rs = 1f / XMath.Sqrt((GroupReduce.Sum(scratch, acc) / d) + epsilon);
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            y[start + c] = x[start + c] * rs * gamma[c];
        }

        if (Group.IdxX == 0 && flags != 0)
        {
            rstd[row] = rs;
        }
    }

    // One warp per row, as ForwardWarpKernel: dx = rs·g − x·rs³·Σ(g·x)/d with g = dy·gamma.
    // dy, x [rows, d], gamma [d], rstd [rows] -> dx [rows, d]
    internal static void BackwardWarpKernel(ArrayView<float> dy, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> rstd,
        ArrayView<float> dx, int rows, int d, int accumulate)
    {
        int row = GroupReduce.WarpRow();
        bool active = row < rows;
        int width = active ? d : 0;
        int lane = Warp.LaneIdx;
        long start = (long)row * d;
        float rs = active ? rstd[row] : 0f;
        float dot = 0f;
        for (int c = lane; c < width; c += Warp.WarpSize)
        {
            dot += dy[start + c] * gamma[c] * x[start + c];
        }

        float k = rs * rs * rs * GroupReduce.WarpSum(dot) / d;
        for (int c = lane; c < width; c += Warp.WarpSize)
        {
            float value = (dy[start + c] * gamma[c] * rs) - (x[start + c] * k);
            dx[start + c] = accumulate != 0 ? dx[start + c] + value : value;
        }
    }

    // One group per row, as BackwardWarpKernel. dy, x [rows, d], gamma [d], rstd [rows] -> dx [rows, d]
    internal static void BackwardKernel(ArrayView<float> dy, ArrayView<float> x, ArrayView<float> gamma, ArrayView<float> rstd,
        ArrayView<float> dx, int d, int accumulate)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int row = Grid.IdxX;
        long start = (long)row * d;
        float rs = rstd[row];
        float dot = 0f;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            dot += dy[start + c] * gamma[c] * x[start + c];
        }

        float k = rs * rs * rs * GroupReduce.Sum(scratch, dot) / d;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            float value = (dy[start + c] * gamma[c] * rs) - (x[start + c] * k);
            dx[start + c] = accumulate != 0 ? dx[start + c] + value : value;
        }
    }

    // Column sums without atomics, as LayerNorm's parameter gradient: a group covers perGroup columns with
    // Group.DimX / perGroup row lanes, then adds the lanes in shared memory. dy, x [rows, d], rstd [rows] -> dGamma [d] (+=)
    internal static void GammaGradientKernel(ArrayView<float> dy, ArrayView<float> x, ArrayView<float> rstd, ArrayView<float> dGamma,
        int rows, int d, int perGroup)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int tid = Group.IdxX;
        int lane = tid / perGroup;
        int lanes = Group.DimX / perGroup;
        int column = (Grid.IdxX * perGroup) + (tid - (lane * perGroup));
        float sum = 0f;
        if (column < d)
        {
            for (int r = lane; r < rows; r += lanes)
            {
                long i = ((long)r * d) + column;
                sum += dy[i] * x[i] * rstd[r];
            }
        }

        scratch[tid] = sum;
        Group.Barrier();
        for (int stride = lanes / 2; stride > 0; stride /= 2)
        {
            if (lane < stride)
            {
                scratch[tid] += scratch[tid + (stride * perGroup)];
            }

            Group.Barrier();
        }

        if (lane == 0 && column < d)
        {
            dGamma[column] += scratch[tid];
        }
    }

    // Element-wise, grid-stride: dx = dy·gamma·rstd (or +=). dy [rows, d], gamma [d], rstd [rows] -> dx [rows, d]
    internal static void RelevanceKernel(Index1D index, ArrayView<float> dy, ArrayView<float> gamma, ArrayView<float> rstd, ArrayView<float> dx,
        int d, int total, int stride, int accumulate)
    {
        for (int i = index; i < total; i += stride)
        {
            int row = i / d;
            float value = dy[i] * gamma[i - (row * d)] * rstd[row];
            dx[i] = accumulate != 0 ? dx[i] + value : value;
        }
    }
}
