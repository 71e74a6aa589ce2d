using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>The reductions on the managed SIMD backend: TensorPrimitives per row, row reductions over the device's workers.</summary>
internal sealed partial class CpuBackend
{
    internal override unsafe void ReduceRows(Tensor<float> x, Tensor<float> y, int rows, int columns, Reduce.RowKind kind)
    {
        fixed (float* px = x.HostSpan, py = y.HostSpan)
        {
            var job = new Reduce.RowJob { X = px, Y = py, Columns = columns, Rows = rows, Kind = kind, RowsPerItem = rows };
            if ((long)rows * columns >= Reduce.ParallelThreshold && Workers.Threads > 1)
            {
                job.RowsPerItem = Math.Max(1, (rows + (4 * Workers.Threads) - 1) / (4 * Workers.Threads));
            }

            Workers.Run(ref job, (rows + job.RowsPerItem - 1) / job.RowsPerItem);
        }
    }

    internal override void ReduceRowSumBackward(Tensor<float> dy, Tensor<float> dx, int columns)
    {
        var g = dy.HostSpan;
        var d = dx.HostSpan;
        for (int r = 0; r < g.Length; r++)
        {
            d.Slice(r * columns, columns).Fill(g[r]);
        }
    }

    internal override void ReduceRowL2NormBackward(Tensor<float> dy, Tensor<float> x, Tensor<float> y, Tensor<float> dx, int columns)
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

    internal override void ReduceColumnSum(Tensor<float> x, Tensor<float> y, int rows, int columns, bool accumulate)
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

/// <summary>The reductions' host code.</summary>
public static partial class Reduce
{
    internal const int ParallelThreshold = 1 << 15;

    /// <summary>Row reductions on the host; item = a range of rows.</summary>
    internal unsafe struct RowJob : ICpuJob
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
}
