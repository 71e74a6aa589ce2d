using System.Buffers;
using ILGPU;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>The embedding ops on ILGPU: one thread per output element.</summary>
internal sealed partial class IlgpuBackend
{
    internal override void EmbeddingGather(Tensor<float> table, Tensor<int> ids, Tensor<float> y, int d, bool accumulate)
    {
        using var launch = Launch("Embedding.Gather", static acc => acc.LoadAutoGroupedKernel<
            Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int>(Embedding.GatherKernel));
        launch.Kernel(launch.Stream, (int)y.Length, table.View, ids.View, y.View, d, accumulate ? 1 : 0);
    }

    internal override void EmbeddingScatterAdd(Tensor<float> dy, Tensor<int> ids, Tensor<float> dTable, int d)
    {
        using var launch = Launch("Embedding.ScatterAdd", static acc => acc.LoadAutoGroupedKernel<
            Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, int>(Embedding.ScatterAddKernel));
        launch.Kernel(launch.Stream, (int)dy.Length, dy.View, ids.View, dTable.View, d);
    }

    // Ids are small next to the rows they select; download them once from the accelerator to check.
    internal override void EmbeddingCheckIds(in OpArgs args, Tensor<int> ids, int vocab)
    {
        int n = (int)ids.Length;
        int[] host = ArrayPool<int>.Shared.Rent(n);
        try
        {
            ids.CopyTo(host.AsSpan(0, n));
            Embedding.CheckIds(args, ids.Shape, host.AsSpan(0, n), vocab);
        }
        finally
        {
            ArrayPool<int>.Shared.Return(host);
        }
    }
}

/// <summary>The embedding ops' ILGPU kernels.</summary>
public static partial class Embedding
{
    // table [vocab, d], ids [n] -> y [n, d]
    internal static void GatherKernel(Index1D i, ArrayView<float> table, ArrayView<int> ids, ArrayView<float> y, int d, int accumulate)
    {
        int row = i / d;
        float v = table[((long)ids[row] * d) + (i - (row * d))];
        y[i] = accumulate != 0 ? y[i] + v : v;
    }

    // dy [n, d], ids [n] -> dTable [vocab, d] (+=); repeated ids meet in the atomic add.
    internal static void ScatterAddKernel(Index1D i, ArrayView<float> dy, ArrayView<int> ids, ArrayView<float> dTable, int d)
    {
        int row = i / d;
        Atomic.Add(ref dTable[((long)ids[row] * d) + (i - (row * d))], dy[i]);
    }
}
