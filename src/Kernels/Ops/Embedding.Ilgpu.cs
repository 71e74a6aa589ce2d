using ILGPU;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>
/// The embedding ops on ILGPU: one thread per output element. Ids are checked on the device (no download):
/// a bad id is reported at the next download or <see cref="Device.Synchronize"/>, and the ops write nothing meanwhile.
/// </summary>
internal sealed partial class IlgpuBackend
{
    internal override void EmbeddingGather(Tensor<float> table, Tensor<int> ids, Tensor<float> y, int d, bool accumulate)
    {
        using var launch = Launch("Embedding.Gather", static acc => acc.LoadAutoGroupedKernel<
            Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<int>, int, int>(Embedding.GatherKernel));
        var slot = QueueStagedCheck(ids);
        launch.Kernel(launch.Stream, (int)y.Length, table.View, ids.View, y.View, slot, d, accumulate ? 1 : 0);
    }

    internal override void EmbeddingScatterAdd(Tensor<float> dy, Tensor<int> ids, Tensor<float> dTable, int d)
    {
        using var launch = Launch("Embedding.ScatterAdd", static acc => acc.LoadAutoGroupedKernel<
            Index1D, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<int>, int>(Embedding.ScatterAddKernel));
        var slot = QueueStagedCheck(ids);
        launch.Kernel(launch.Stream, (int)dy.Length, dy.View, ids.View, dTable.View, slot, d);
    }

    // Checked on the device, in the op's launch just before its kernel, which reads the check's slot.
    internal override void EmbeddingCheckIds(in OpArgs args, Tensor<int> ids, int vocab) => StageRangeCheck(args, ids, 0, vocab, RangeCheck.EmbeddingIds);
}

/// <summary>The embedding ops' ILGPU kernels.</summary>
public static partial class Embedding
{
    // table [vocab, d], ids [n] -> y [n, d]; nothing is written when the ids' check [2] failed.
    internal static void GatherKernel(Index1D i, ArrayView<float> table, ArrayView<int> ids, ArrayView<float> y, ArrayView<int> check, int d, int accumulate)
    {
        if (check[0] != 0)
        {
            return;
        }

        int row = i / d;
        float v = table[((long)ids[row] * d) + (i - (row * d))];
        y[i] = accumulate != 0 ? y[i] + v : v;
    }

    // dy [n, d], ids [n] -> dTable [vocab, d] (+=); repeated ids meet in the atomic add.
    internal static void ScatterAddKernel(Index1D i, ArrayView<float> dy, ArrayView<int> ids, ArrayView<float> dTable, ArrayView<int> check, int d)
    {
        if (check[0] != 0)
        {
            return;
        }

        int row = i / d;
        Atomic.Add(ref dTable[((long)ids[row] * d) + (i - (row * d))], dy[i]);
    }
}
