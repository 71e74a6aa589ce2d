using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>
/// Softmax on ILGPU: one warp per row (shuffle reductions) where the backend has warps and rows are at most
/// <see cref="GroupReduce.MaxWarpRow"/> long, else one group per row (shared-memory reductions).
/// </summary>
internal sealed partial class IlgpuBackend
{
    internal override void SoftmaxForward(Tensor<float> x, Tensor<float> y, Tensor<int>? keyMask,
        int rows, int cols, int perBatch, int count, float scale, bool causal)
    {
        int flags = (keyMask is not null ? Softmax.FlagMask : 0) | (causal ? Softmax.FlagCausal : 0);

        // Without a mask the kernel never reads it; any int view of the right device stands in.
        var mask = keyMask?.View ?? x.View.Cast<int>();
        if (GroupReduce.UseWarpRows(this, cols))
        {
            using var warpKernel = Launch("Softmax.ForwardWarp", static acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int, float, int>(Softmax.ForwardWarpKernel));
            warpKernel.Kernel(warpKernel.Stream, GroupReduce.WarpRows(this, count),
                x.View, y.View, mask, count, rows, cols, perBatch, scale, flags);
            return;
        }

        using var launch = Launch("Softmax.Forward", static acc => acc.LoadKernel<
            ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, float, int>(Softmax.ForwardKernel));
        launch.Kernel(launch.Stream, new KernelConfig(count, LayerNorm.RowGroupSize(this, cols)),
            x.View, y.View, mask, rows, cols, perBatch, scale, flags);
    }

    internal override void SoftmaxBackward(Tensor<float> y, Tensor<float> dy, Tensor<float> dx, int rows, int cols, float scale)
    {
        if (GroupReduce.UseWarpRows(this, cols))
        {
            using var warpKernel = Launch("Softmax.BackwardWarp", static acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, float>(Softmax.BackwardWarpKernel));
            warpKernel.Kernel(warpKernel.Stream, GroupReduce.WarpRows(this, rows), y.View, dy.View, dx.View, rows, cols, scale);
            return;
        }

        using var launch = Launch("Softmax.Backward", static acc => acc.LoadKernel<
            ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float>(Softmax.BackwardKernel));
        launch.Kernel(launch.Stream, new KernelConfig(rows, LayerNorm.RowGroupSize(this, cols)),
            y.View, dy.View, dx.View, cols, scale);
    }

    internal override void SoftmaxRelevance(Tensor<float> x, Tensor<float> y, Tensor<float> relevance, Tensor<float> result, Tensor<int>? keyMask,
        int rows, int cols, int perBatch, int count, float scale, bool causal)
    {
        int flags = (keyMask is not null ? Softmax.FlagMask : 0) | (causal ? Softmax.FlagCausal : 0);
        var mask = keyMask?.View ?? x.View.Cast<int>();
        if (GroupReduce.UseWarpRows(this, cols))
        {
            using var warpKernel = Launch("Softmax.RelevanceWarp", static acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int, float, int>(Softmax.RelevanceWarpKernel));
            warpKernel.Kernel(warpKernel.Stream, GroupReduce.WarpRows(this, count),
                x.View, y.View, relevance.View, result.View, mask, count, rows, cols, perBatch, scale, flags);
            return;
        }

        using var launch = Launch("Softmax.Relevance", static acc => acc.LoadKernel<
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, float, int>(Softmax.RelevanceKernel));
        launch.Kernel(launch.Stream, new KernelConfig(count, LayerNorm.RowGroupSize(this, cols)),
            x.View, y.View, relevance.View, result.View, mask, rows, cols, perBatch, scale, flags);
    }
}

/// <summary>Softmax's ILGPU kernels.</summary>
public static partial class Softmax
{
    internal const int FlagMask = 1;
    internal const int FlagCausal = 2;

    // One group per row of every matrix. x [outer, rows, cols], mask [batch, cols] -> y [outer, rows, cols]
    internal static void ForwardKernel(ArrayView<float> x, ArrayView<float> y, ArrayView<int> mask,
        int rows, int cols, int perBatch, float scale, int flags)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int row = Grid.IdxX;
        long start = (long)row * cols;
        int i = row % rows;
        long maskStart = (long)(row / rows / perBatch) * cols;
        int visible = cols;
        if ((flags & FlagCausal) != 0)
        {
            visible = XMath.Clamp(i + (cols - rows) + 1, 0, cols);
        }

        bool masked = (flags & FlagMask) != 0;
        float max = float.NegativeInfinity;
        for (int c = Group.IdxX; c < visible; c += Group.DimX)
        {
            if (!masked || mask[maskStart + c] != 0)
            {
                max = XMath.Max(max, scale * x[start + c]);
            }
        }

        max = GroupReduce.Max(scratch, max);

        // Every entry masked: the whole group takes this branch, so no barrier is skipped by some threads only.
        if (max == float.NegativeInfinity)
        {
            for (int c = Group.IdxX; c < cols; c += Group.DimX)
            {
                y[start + c] = 0f;
            }

            return;
        }

        float sum = 0f;
        for (int c = Group.IdxX; c < cols; c += Group.DimX)
        {
            float e = 0f;
            if (c < visible && (!masked || mask[maskStart + c] != 0))
            {
                e = XMath.Exp((scale * x[start + c]) - max);
            }

            y[start + c] = e;
            sum += e;
        }

        float inverse = 1f / GroupReduce.Sum(scratch, sum);
        for (int c = Group.IdxX; c < cols; c += Group.DimX)
        {
            y[start + c] *= inverse;
        }
    }

    // One group per row. y, dy [rows, cols] -> dx [rows, cols]
    internal static void BackwardKernel(ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx, int cols, float scale)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        long start = (long)Grid.IdxX * cols;
        float dot = 0f;
        for (int c = Group.IdxX; c < cols; c += Group.DimX)
        {
            dot += y[start + c] * dy[start + c];
        }

        dot = GroupReduce.Sum(scratch, dot);
        for (int c = Group.IdxX; c < cols; c += Group.DimX)
        {
            dx[start + c] = scale * y[start + c] * (dy[start + c] - dot);
        }
    }

    // One group per row. x, y, relevance [outer, rows, cols], mask [batch, cols] -> result [outer, rows, cols]
    internal static void RelevanceKernel(ArrayView<float> x, ArrayView<float> y, ArrayView<float> relevance, ArrayView<float> result,
        ArrayView<int> mask, int rows, int cols, int perBatch, float scale, int flags)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int row = Grid.IdxX;
        long start = (long)row * cols;
        long maskStart = (long)(row / rows / perBatch) * cols;
        int visible = cols;
        if ((flags & FlagCausal) != 0)
        {
            visible = XMath.Clamp((row % rows) + (cols - rows) + 1, 0, cols);
        }

        bool masked = (flags & FlagMask) != 0;
        float total = 0f;
        for (int c = Group.IdxX; c < visible; c += Group.DimX)
        {
            if (!masked || mask[maskStart + c] != 0)
            {
                total += relevance[start + c];
            }
        }

        // Every thread reads its own columns before writing them, so result may be relevance.
        total = GroupReduce.Sum(scratch, total);
        for (int c = Group.IdxX; c < cols; c += Group.DimX)
        {
            bool allowed = c < visible && (!masked || mask[maskStart + c] != 0);
            result[start + c] = allowed ? scale * x[start + c] * (relevance[start + c] - (y[start + c] * total)) : 0f;
        }
    }

    // One warp per row of every matrix, several rows per group (shuffles, no shared memory or barrier); a warp
    // past the last row runs the same steps on an empty row and writes nothing.
    // x [outer, rows, cols], mask [batch, cols] -> y [outer, rows, cols]; count = outer · rows
    internal static void ForwardWarpKernel(ArrayView<float> x, ArrayView<float> y, ArrayView<int> mask,
        int count, int rows, int cols, int perBatch, float scale, int flags)
    {
        int row = GroupReduce.WarpRow();
        int width = row < count ? cols : 0;
        int lane = Warp.LaneIdx;
        int lanes = Warp.WarpSize;
        long start = (long)row * cols;
        long maskStart = (long)(row / rows / perBatch) * cols;
        int visible = width;
        if ((flags & FlagCausal) != 0)
        {
            visible = XMath.Clamp((row % rows) + (cols - rows) + 1, 0, width);
        }

        bool masked = (flags & FlagMask) != 0;
        float max = float.NegativeInfinity;
        for (int c = lane; c < visible; c += lanes)
        {
            if (!masked || mask[maskStart + c] != 0)
            {
                max = XMath.Max(max, scale * x[start + c]);
            }
        }

        max = GroupReduce.WarpMax(max);

        // Every entry masked (or no row): the whole warp takes this branch.
        if (max == float.NegativeInfinity)
        {
            for (int c = lane; c < width; c += lanes)
            {
                y[start + c] = 0f;
            }

            return;
        }

        float sum = 0f;
        for (int c = lane; c < width; c += lanes)
        {
            float e = 0f;
            if (c < visible && (!masked || mask[maskStart + c] != 0))
            {
                e = XMath.Exp((scale * x[start + c]) - max);
            }

            y[start + c] = e;
            sum += e;
        }

        float inverse = 1f / GroupReduce.WarpSum(sum);
        for (int c = lane; c < width; c += lanes)
        {
            y[start + c] *= inverse;
        }
    }

    // One warp per row, as ForwardWarpKernel. y, dy [rows, cols] -> dx [rows, cols]
    internal static void BackwardWarpKernel(ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx, int rows, int cols, float scale)
    {
        int row = GroupReduce.WarpRow();
        int width = row < rows ? cols : 0;
        int lane = Warp.LaneIdx;
        int lanes = Warp.WarpSize;
        long start = (long)row * cols;
        float dot = 0f;
        for (int c = lane; c < width; c += lanes)
        {
            dot += y[start + c] * dy[start + c];
        }

        dot = GroupReduce.WarpSum(dot);
        for (int c = lane; c < width; c += lanes)
        {
            dx[start + c] = scale * y[start + c] * (dy[start + c] - dot);
        }
    }

    // One warp per row, as ForwardWarpKernel. x, y, relevance [outer, rows, cols], mask [batch, cols] -> result [outer, rows, cols]
    internal static void RelevanceWarpKernel(ArrayView<float> x, ArrayView<float> y, ArrayView<float> relevance, ArrayView<float> result,
        ArrayView<int> mask, int count, int rows, int cols, int perBatch, float scale, int flags)
    {
        int row = GroupReduce.WarpRow();
        int width = row < count ? cols : 0;
        int lane = Warp.LaneIdx;
        int lanes = Warp.WarpSize;
        long start = (long)row * cols;
        long maskStart = (long)(row / rows / perBatch) * cols;
        int visible = width;
        if ((flags & FlagCausal) != 0)
        {
            visible = XMath.Clamp((row % rows) + (cols - rows) + 1, 0, width);
        }

        bool masked = (flags & FlagMask) != 0;
        float total = 0f;
        for (int c = lane; c < visible; c += lanes)
        {
            if (!masked || mask[maskStart + c] != 0)
            {
                total += relevance[start + c];
            }
        }

        // Every lane reads its own columns before writing them, so result may be relevance.
        total = GroupReduce.WarpSum(total);
        for (int c = lane; c < width; c += lanes)
        {
            bool allowed = c < visible && (!masked || mask[maskStart + c] != 0);
            result[start + c] = allowed ? scale * x[start + c] * (relevance[start + c] - (y[start + c] * total)) : 0f;
        }
    }
}
