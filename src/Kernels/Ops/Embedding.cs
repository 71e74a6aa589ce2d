using System.Buffers;
using ILGPU;
using ILGPU.Runtime;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>
/// Embedding lookup: rows of a table gathered by id, and the backward scatter-add of their
/// gradients. Ids are checked on the host before anything runs, so a bad id is an
/// <see cref="ArgumentException"/> rather than a read outside the table.
/// </summary>
public static unsafe class Embedding
{
    private const int ParallelThreshold = 1 << 15;

    /// <summary>
    /// <c>y[i, :] = table[ids[i], :]</c>, or <c>y[i, :] += table[ids[i], :]</c> when <paramref name="accumulate"/>
    /// is set (to add position or token-type embeddings onto word embeddings).
    /// </summary>
    /// <param name="table">The embedding table <c>[vocab, d]</c>.</param>
    /// <param name="ids">Ids of any shape, each in <c>[0, vocab)</c>.</param>
    /// <param name="y">The output <c>[ids dims..., d]</c>.</param>
    /// <param name="accumulate">Add to <paramref name="y"/> instead of overwriting it.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, or an id is outside the table.</exception>
    public static void Gather(Tensor<float> table, Tensor<int> ids, Tensor<float> y, bool accumulate = false)
    {
        var args = new OpArgs("Embedding.Gather").Add("table", table).Add("ids", ids).Add("y", y);
        int d = Validate(args, table, "table", ids, y, "y");
        int n = (int)ids.Length;
        if (n == 0 || d == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Embedding.Gather", static acc => acc.LoadAutoGroupedKernel<
                Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>(GatherKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, (int)y.Length, table.View, ids.View, y.View, d, accumulate ? 1 : 0);
            }

            return;
        }

        var cpu = (CpuDevice)args.Device;
        fixed (float* pt = table.HostSpan, py = y.HostSpan)
        fixed (int* pids = ids.HostSpan)
        {
            var job = new GatherJob { Table = pt, Ids = pids, Y = py, D = d, Rows = n, Accumulate = accumulate, RowsPerItem = n };
            if ((long)n * d >= ParallelThreshold && cpu.Threads > 1)
            {
                job.RowsPerItem = Math.Max(1, (n + (4 * cpu.Threads) - 1) / (4 * cpu.Threads));
            }

            cpu.Workers.Run(ref job, (n + job.RowsPerItem - 1) / job.RowsPerItem);
        }
    }

    /// <summary>
    /// Backward of <see cref="Gather"/>: <c>dTable[ids[i], :] += dy[i, :]</c>. It always accumulates (clear
    /// <paramref name="dTable"/> first for a fresh gradient); repeated ids add up.
    /// </summary>
    /// <param name="dy">The gradient of the gathered rows <c>[ids dims..., d]</c>.</param>
    /// <param name="ids">The ids the forward gathered, each in <c>[0, vocab)</c>.</param>
    /// <param name="dTable">The table gradient <c>[vocab, d]</c>, added to.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, or an id is outside the table.</exception>
    public static void ScatterAdd(Tensor<float> dy, Tensor<int> ids, Tensor<float> dTable)
    {
        var args = new OpArgs("Embedding.ScatterAdd").Add("dy", dy).Add("ids", ids).Add("dTable", dTable);
        int d = Validate(args, dTable, "dTable", ids, dy, "dy");
        int n = (int)ids.Length;
        if (n == 0 || d == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Embedding.ScatterAdd", static acc => acc.LoadAutoGroupedKernel<
                Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int>(ScatterAddKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, (int)dy.Length, dy.View, ids.View, dTable.View, d);
            }

            return;
        }

        // Workers own disjoint column ranges of the table, so repeated ids never race; each keeps the id order.
        var cpu = (CpuDevice)args.Device;
        int chunk = (long)n * d < ParallelThreshold || cpu.Threads == 1
            ? d
            : RoundUp((d + cpu.Threads - 1) / cpu.Threads, 16);
        fixed (float* pdy = dy.HostSpan, pt = dTable.HostSpan)
        fixed (int* pids = ids.HostSpan)
        {
            var job = new ScatterJob { Dy = pdy, Ids = pids, Table = pt, D = d, Rows = n, Chunk = chunk };
            cpu.Workers.Run(ref job, (d + chunk - 1) / chunk);
        }
    }

    /// <summary>Gather on the host; item = a range of rows.</summary>
    private unsafe struct GatherJob : ICpuJob
    {
        public float* Table;
        public int* Ids;
        public float* Y;
        public int D;
        public int Rows;
        public int RowsPerItem;
        public bool Accumulate;

        // table [vocab, d], ids [n] -> y [n, d]
        public readonly void Execute(int item)
        {
            int end = Math.Min(Rows, (item + 1) * RowsPerItem);
            for (int i = item * RowsPerItem; i < end; i++)
            {
                var source = new ReadOnlySpan<float>(Table + ((long)Ids[i] * D), D);
                var target = new Span<float>(Y + ((long)i * D), D);
                if (Accumulate)
                {
                    TensorPrimitives.Add(target, source, target);
                }
                else
                {
                    source.CopyTo(target);
                }
            }
        }
    }

    /// <summary>Scatter-add on the host; item = a range of table columns, so no two items write one element.</summary>
    private unsafe struct ScatterJob : ICpuJob
    {
        public float* Dy;
        public int* Ids;
        public float* Table;
        public int D;
        public int Rows;
        public int Chunk;

        // Columns [c0, c0 + width) of dTable [vocab, d] += dy [n, d] by ids [n], in id order.
        public readonly void Execute(int item)
        {
            int c0 = item * Chunk;
            int width = Math.Min(Chunk, D - c0);
            for (int i = 0; i < Rows; i++)
            {
                var target = new Span<float>(Table + ((long)Ids[i] * D) + c0, width);
                TensorPrimitives.Add(target, new ReadOnlySpan<float>(Dy + ((long)i * D) + c0, width), target);
            }
        }
    }

    // Shapes, then every id against [0, vocab): all before anything is written. Returns d.
    private static int Validate(OpArgs args, Tensor<float> table, string tableName, Tensor<int> ids, Tensor<float> rows, string rowsName)
    {
        args.Require(table.Shape.Rank == 2, $"'{tableName}' must be [vocab, d]");
        int vocab = table.Shape[0];
        int d = table.Shape[1];
        var rowDims = rows.Shape.Dims;
        if (rowDims.Length != ids.Shape.Rank + 1 || !rowDims[..^1].SequenceEqual(ids.Shape.Dims) || rowDims[^1] != d)
        {
            var expected = new int[ids.Shape.Rank + 1];
            ids.Shape.Dims.CopyTo(expected);
            expected[^1] = d;
            args.RequireShape(rowsName, rows, expected);
        }

        int n = (int)ids.Length;
        if (n == 0)
        {
            return d;
        }

        if (ids.Device is CpuDevice)
        {
            CheckIds(args, ids.Shape, ids.HostSpan, vocab);
            return d;
        }

        // Ids are small next to the rows they select; download them once from the accelerator to check.
        int[] host = ArrayPool<int>.Shared.Rent(n);
        try
        {
            ids.CopyTo(host.AsSpan(0, n));
            CheckIds(args, ids.Shape, host.AsSpan(0, n), vocab);
        }
        finally
        {
            ArrayPool<int>.Shared.Return(host);
        }

        return d;
    }

    private static void CheckIds(OpArgs args, TensorShape shape, ReadOnlySpan<int> ids, int vocab)
    {
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)vocab)
            {
                args.Fail($"ids{Position(shape, i)} = {ids[i]} is outside the table's rows [0, {vocab})");
            }
        }
    }

    // A flat index as the position in the ids' own dimensions: [1, 4] for flat 9 of [2, 5].
    private static string Position(TensorShape shape, int flat)
    {
        var index = new int[Math.Max(shape.Rank, 1)];
        for (int axis = shape.Rank - 1; axis >= 0; axis--)
        {
            index[axis] = flat % shape[axis];
            flat /= shape[axis];
        }

        return TensorShape.Format(index);
    }

    private static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;

    // table [vocab, d], ids [n] -> y [n, d]
    private static void GatherKernel(Index1D i, ArrayView<float> table, ArrayView<int> ids, ArrayView<float> y, int d, int accumulate)
    {
        int row = i / d;
        float v = table[((long)ids[row] * d) + (i - (row * d))];
        y[i] = accumulate != 0 ? y[i] + v : v;
    }

    // dy [n, d], ids [n] -> dTable [vocab, d] (+=); repeated ids meet in the atomic add.
    private static void ScatterAddKernel(Index1D i, ArrayView<float> dy, ArrayView<int> ids, ArrayView<float> dTable, int d)
    {
        int row = i / d;
        Atomic.Add(ref dTable[((long)ids[row] * d) + (i - (row * d))], dy[i]);
    }
}
