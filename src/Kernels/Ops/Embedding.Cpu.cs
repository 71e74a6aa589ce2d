using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>The embedding ops on the managed SIMD backend: rows or column ranges over the device's workers.</summary>
internal sealed partial class CpuBackend
{
    internal override unsafe void EmbeddingGather(Tensor<float> table, Tensor<int> ids, Tensor<float> y, int d, bool accumulate)
    {
        int n = (int)ids.Length;
        fixed (float* pt = table.HostSpan, py = y.HostSpan)
        fixed (int* pids = ids.HostSpan)
        {
            var job = new Embedding.GatherJob { Table = pt, Ids = pids, Y = py, D = d, Rows = n, Accumulate = accumulate, RowsPerItem = n };
            if ((long)n * d >= Embedding.ParallelThreshold && Workers.Threads > 1)
            {
                job.RowsPerItem = Math.Max(1, (n + (4 * Workers.Threads) - 1) / (4 * Workers.Threads));
            }

            Workers.Run(ref job, (n + job.RowsPerItem - 1) / job.RowsPerItem);
        }
    }

    internal override unsafe void EmbeddingScatterAdd(Tensor<float> dy, Tensor<int> ids, Tensor<float> dTable, int d)
    {
        // Workers own disjoint column ranges of the table, so repeated ids never race; each keeps the id order.
        int n = (int)ids.Length;
        int chunk = (long)n * d < Embedding.ParallelThreshold || Workers.Threads == 1
            ? d
            : Embedding.RoundUp((d + Workers.Threads - 1) / Workers.Threads, 16);
        fixed (float* pdy = dy.HostSpan, pt = dTable.HostSpan)
        fixed (int* pids = ids.HostSpan)
        {
            var job = new Embedding.ScatterJob { Dy = pdy, Ids = pids, Table = pt, D = d, Rows = n, Chunk = chunk };
            Workers.Run(ref job, (d + chunk - 1) / chunk);
        }
    }

    // The ids are host memory already: checked in place.
    internal override void EmbeddingCheckIds(in OpArgs args, Tensor<int> ids, int vocab) => Embedding.CheckIds(args, ids.Shape, ids.HostSpan, vocab);
}

/// <summary>The embedding ops' host code: the gather and scatter-add jobs.</summary>
public static partial class Embedding
{
    internal const int ParallelThreshold = 1 << 15;

    /// <summary>Gather on the host; item = a range of rows.</summary>
    internal unsafe struct GatherJob : ICpuJob
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
    internal unsafe struct ScatterJob : ICpuJob
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

    internal static int RoundUp(int value, int multiple) => (value + multiple - 1) / multiple * multiple;
}
