using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>The reductions on ILGPU: one warp per row (shuffles) or one group per row (shared memory) for row reductions, one thread per element or column otherwise.</summary>
internal sealed partial class IlgpuBackend
{
    internal override void ReduceRows(Tensor<float> x, Tensor<float> y, int rows, int columns, Reduce.RowKind kind)
    {
        if (GroupReduce.UseWarpRows(this, columns))
        {
            using var warpKernel = Launch("Reduce.RowsWarp", static acc =>
                acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, int, int>(Reduce.RowReduceWarpKernel));
            warpKernel.Kernel(warpKernel.Stream, GroupReduce.WarpRows(this, rows), x.View, y.View, rows, columns, (int)kind);
            return;
        }

        int group = GroupReduce.GroupSizeFor(this);
        using var launch = Launch("Reduce.Rows", static acc =>
            acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, int>(Reduce.RowReduceKernel));
        launch.Kernel(launch.Stream, new KernelConfig(rows, group), x.View, y.View, columns, (int)kind);
    }

    internal override void ReduceRowSumBackward(Tensor<float> dy, Tensor<float> dx, int columns)
    {
        using var launch = Launch("Reduce.RowSumBackward", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(Reduce.BroadcastRowsKernel));
        launch.Kernel(launch.Stream, (int)dx.Length, dy.View, dx.View, columns);
    }

    internal override void ReduceRowL2NormBackward(Tensor<float> dy, Tensor<float> x, Tensor<float> y, Tensor<float> dx, int columns)
    {
        using var launch = Launch("Reduce.RowL2NormBackward", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(Reduce.L2BackwardKernel));
        launch.Kernel(launch.Stream, (int)x.Length, dy.View, x.View, y.View, dx.View, columns);
    }

    internal override void ReduceColumnSum(Tensor<float> x, Tensor<float> y, int rows, int columns, bool accumulate)
    {
        using var launch = Launch("Reduce.ColumnSum", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int>(Reduce.ColumnSumKernel));
        launch.Kernel(launch.Stream, columns, x.View, y.View, rows, columns, accumulate ? 1 : 0);
    }
}

/// <summary>The reductions' ILGPU kernels.</summary>
public static partial class Reduce
{
    // One group per row: x [rows, columns] -> y [rows]
    internal static void RowReduceKernel(ArrayView<float> x, ArrayView<float> y, int columns, int kind)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int row = Grid.IdxX;
        long start = (long)row * columns;
        float acc = kind == (int)RowKind.Max ? float.NegativeInfinity : 0f;
        for (int c = Group.IdxX; c < columns; c += Group.DimX)
        {
            float v = x[start + c];
            acc = kind == (int)RowKind.Max ? XMath.Max(acc, v) : kind == (int)RowKind.L2 ? acc + (v * v) : acc + v;
        }

        float total = kind == (int)RowKind.Max ? GroupReduce.Max(scratch, acc) : GroupReduce.Sum(scratch, acc);
        if (Group.IdxX == 0)
        {
            y[row] = kind == (int)RowKind.L2 ? XMath.Sqrt(total) : total;
        }
    }

    // One warp per row, several rows per group (shuffles, no shared memory or barrier): x [rows, columns] -> y [rows]
    internal static void RowReduceWarpKernel(ArrayView<float> x, ArrayView<float> y, int rows, int columns, int kind)
    {
        int row = GroupReduce.WarpRow();
        int width = row < rows ? columns : 0;
        long start = (long)row * columns;
        float acc = kind == (int)RowKind.Max ? float.NegativeInfinity : 0f;
        for (int c = Warp.LaneIdx; c < width; c += Warp.WarpSize)
        {
            float v = x[start + c];
            acc = kind == (int)RowKind.Max ? XMath.Max(acc, v) : kind == (int)RowKind.L2 ? acc + (v * v) : acc + v;
        }

        float total = kind == (int)RowKind.Max ? GroupReduce.WarpMax(acc) : GroupReduce.WarpSum(acc);
        if (Warp.LaneIdx == 0 && row < rows)
        {
            y[row] = kind == (int)RowKind.L2 ? XMath.Sqrt(total) : total;
        }
    }

    // dy [rows] -> dx [rows, columns]
    internal static void BroadcastRowsKernel(Index1D i, ArrayView<float> dy, ArrayView<float> dx, int columns) => dx[i] = dy[i / columns];

    // dy [rows], x [rows, columns], y [rows] -> dx [rows, columns]
    internal static void L2BackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dx, int columns)
    {
        int row = i / columns;
        float norm = y[row];
        dx[i] = norm > 0f ? dy[row] * x[i] / norm : 0f;
    }

    // One thread per column; neighbouring threads read neighbouring addresses. x [rows, columns] -> y [columns]
    internal static void ColumnSumKernel(Index1D column, ArrayView<float> x, ArrayView<float> y, int rows, int columns, int accumulate)
    {
        float sum = 0f;
        for (int r = 0; r < rows; r++)
        {
            sum += x[((long)r * columns) + column];
        }

        y[column] = accumulate != 0 ? y[column] + sum : sum;
    }
}
