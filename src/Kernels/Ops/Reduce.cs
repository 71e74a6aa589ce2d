using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>
/// Reductions over the rows or columns of a matrix view <c>[rows, columns]</c> (all leading
/// dimensions of the input are rows). Sums are accumulated in float32 per thread, then combined
/// in a tree, which keeps the error near <c>log2(columns)</c> roundings.
/// </summary>
public static unsafe class Reduce
{
    private const int ParallelThreshold = 1 << 15;

    /// <summary><c>y[r] = Σ_c x[r, c]</c>.</summary>
    /// <remarks>Backward: <see cref="RowSumBackward"/>.</remarks>
    public static void RowSum(Tensor<float> x, Tensor<float> y) => RowReduce("Reduce.RowSum", x, y, RowKind.Sum);

    /// <summary><c>y[r] = max_c x[r, c]</c> (−∞ for an empty row).</summary>
    /// <remarks>Not differentiated: the gradient of a maximum is taken through the ops that use it (softmax, attention).</remarks>
    public static void RowMax(Tensor<float> x, Tensor<float> y) => RowReduce("Reduce.RowMax", x, y, RowKind.Max);

    /// <summary><c>y[r] = ‖x[r, :]‖₂</c>, as saliency needs per token.</summary>
    /// <remarks>Backward: <see cref="RowL2NormBackward"/>.</remarks>
    public static void RowL2Norm(Tensor<float> x, Tensor<float> y) => RowReduce("Reduce.RowL2Norm", x, y, RowKind.L2);

    /// <summary>Backward of <see cref="RowSum"/>: <c>dx[r, c] = dy[r]</c>.</summary>
    public static void RowSumBackward(Tensor<float> dy, Tensor<float> dx)
    {
        var args = new OpArgs("Reduce.RowSumBackward").Add("dy", dy).Add("dx", dx)
            .Require(dx.Shape.Rank >= 1 && dy.Length == dx.Shape.Rows, "dy must have one element per row of dx");
        int columns = dx.Shape.Rank == 0 ? 1 : dx.Shape[-1];
        int n = (int)dx.Length;
        if (n == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Reduce.RowSumBackward", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(BroadcastRowsKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, dy.View, dx.View, columns);
            }
        }
        else
        {
            var g = dy.HostSpan;
            var d = dx.HostSpan;
            for (int r = 0; r < g.Length; r++)
            {
                d.Slice(r * columns, columns).Fill(g[r]);
            }
        }
    }

    /// <summary>Backward of <see cref="RowL2Norm"/>: <c>dx[r, c] = dy[r] · x[r, c] / y[r]</c> (0 where <c>y[r] = 0</c>).</summary>
    public static void RowL2NormBackward(Tensor<float> dy, Tensor<float> x, Tensor<float> y, Tensor<float> dx)
    {
        var args = new OpArgs("Reduce.RowL2NormBackward").Add("dy", dy).Add("x", x).Add("y", y).Add("dx", dx)
            .Require(x.Shape == dx.Shape, "x and dx must have the same shape")
            .Require(x.Shape.Rank >= 1 && dy.Length == x.Shape.Rows && y.Length == x.Shape.Rows, "dy and y must have one element per row of x");
        int columns = x.Shape[-1];
        int n = (int)x.Length;
        if (n == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Reduce.RowL2NormBackward", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(L2BackwardKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, dy.View, x.View, y.View, dx.View, columns);
            }
        }
        else
        {
            var g = dy.HostSpan;
            var xs = x.HostSpan;
            var norms = y.HostSpan;
            var d = dx.HostSpan;
            for (int r = 0; r < g.Length; r++)
            {
                float factor = norms[r] > 0 ? g[r] / norms[r] : 0f;
                TensorPrimitives.Multiply(xs.Slice(r * columns, columns), factor, d.Slice(r * columns, columns));
            }
        }
    }

    /// <summary>
    /// <c>y[c] = Σ_r x[r, c]</c>, or <c>y[c] += …</c> when <paramref name="accumulate"/> is set: the bias gradient of a linear layer.
    /// </summary>
    /// <remarks>Backward: <c>dx[r, c] = dy[c]</c> (<see cref="Elementwise.AddRowVector"/> onto zeros).</remarks>
    public static void ColumnSum(Tensor<float> x, Tensor<float> y, bool accumulate = false)
    {
        var args = new OpArgs("Reduce.ColumnSum").Add("x", x).Add("y", y)
            .Require(x.Shape.Rank >= 1 && y.Length == x.Shape[-1], "y must have one element per column of x");
        int columns = (int)y.Length;
        int rows = columns == 0 ? 0 : (int)(x.Length / columns);
        if (columns == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Reduce.ColumnSum", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int, int>(ColumnSumKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, columns, x.View, y.View, rows, columns, accumulate ? 1 : 0);
            }
        }
        else
        {
            var xs = x.HostSpan;
            var ys = y.HostSpan;
            if (!accumulate)
            {
                ys.Clear();
            }

            for (int r = 0; r < rows; r++)
            {
                TensorPrimitives.Add(ys, xs.Slice(r * columns, columns), ys);
            }
        }
    }

    private enum RowKind
    {
        Sum = 0,
        Max = 1,
        L2 = 2,
    }

    private static void RowReduce(string op, Tensor<float> x, Tensor<float> y, RowKind kind)
    {
        var args = new OpArgs(op).Add("x", x).Add("y", y)
            .Require(x.Shape.Rank >= 1, "x must have at least one dimension")
            .Require(y.Length == x.Shape.Rows, "y must have one element per row of x");
        int rows = (int)y.Length;
        int columns = x.Shape[-1];
        if (rows == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Reduce.Rows", static acc =>
                acc.LoadKernel<ArrayView<float>, ArrayView<float>, int, int>(RowReduceKernel));
            int group = GroupReduce.GroupSizeFor(gpu);
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, new KernelConfig(rows, group), x.View, y.View, columns, (int)kind);
            }

            return;
        }

        var cpu = (CpuDevice)args.Device;
        fixed (float* px = x.HostSpan, py = y.HostSpan)
        {
            var job = new RowJob { X = px, Y = py, Columns = columns, Rows = rows, Kind = kind, RowsPerItem = rows };
            if ((long)rows * columns >= ParallelThreshold && cpu.Threads > 1)
            {
                job.RowsPerItem = Math.Max(1, (rows + (4 * cpu.Threads) - 1) / (4 * cpu.Threads));
            }

            cpu.Workers.Run(ref job, (rows + job.RowsPerItem - 1) / job.RowsPerItem);
        }
    }

    /// <summary>Row reductions on the host; item = a range of rows.</summary>
    private unsafe struct RowJob : ICpuJob
    {
        public float* X;
        public float* Y;
        public int Columns;
        public int Rows;
        public int RowsPerItem;
        public RowKind Kind;

        public readonly void Execute(int item)
        {
            int end = Math.Min(Rows, (item + 1) * RowsPerItem);
            for (int r = item * RowsPerItem; r < end; r++)
            {
                Y[r] = ReduceRow(new ReadOnlySpan<float>(X + ((long)r * Columns), Columns), Kind);
            }
        }
    }

    private static float ReduceRow(ReadOnlySpan<float> row, RowKind kind) => kind switch
    {
        RowKind.Sum => TensorPrimitives.Sum(row),
        RowKind.Max => row.IsEmpty ? float.NegativeInfinity : TensorPrimitives.Max(row),
        _ => TensorPrimitives.Norm(row),
    };

    // One group per row: x [rows, columns] -> y [rows]
    private static void RowReduceKernel(ArrayView<float> x, ArrayView<float> y, int columns, int kind)
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

    // dy [rows] -> dx [rows, columns]
    private static void BroadcastRowsKernel(Index1D i, ArrayView<float> dy, ArrayView<float> dx, int columns) => dx[i] = dy[i / columns];

    // dy [rows], x [rows, columns], y [rows] -> dx [rows, columns]
    private static void L2BackwardKernel(Index1D i, ArrayView<float> dy, ArrayView<float> x, ArrayView<float> y, ArrayView<float> dx, int columns)
    {
        int row = i / columns;
        float norm = y[row];
        dx[i] = norm > 0f ? dy[row] * x[i] / norm : 0f;
    }

    // One thread per column; neighbouring threads read neighbouring addresses. x [rows, columns] -> y [columns]
    private static void ColumnSumKernel(Index1D column, ArrayView<float> x, ArrayView<float> y, int rows, int columns, int accumulate)
    {
        float sum = 0f;
        for (int r = 0; r < rows; r++)
        {
            sum += x[((long)r * columns) + column];
        }

        y[column] = accumulate != 0 ? y[column] + sum : sum;
    }
}
