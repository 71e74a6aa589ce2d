using ILGPU;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>Coalitions on ILGPU: one thread per unit when sampling, one per output token when masking (feature indices checked on the device first).</summary>
internal sealed partial class IlgpuBackend
{
    internal override void CoalitionsSample(Tensor<byte> masks, Tensor<uint> thresholds, int units, Coalitions.SampleParams p)
    {
        using var launch = Launch("Coalitions.Sample", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<byte>, ArrayView<uint>, Coalitions.SampleParams>(Coalitions.SampleKernel));
        launch.Kernel(launch.Stream, units, masks.View, thresholds.View, p);
    }

    internal override void CoalitionsMaskInputs(
        Tensor<byte> masks, Tensor<int> featureOf, Tensor<int> ids, Tensor<int> keyMask, Tensor<int> maskedIds, Tensor<int> maskedKeyMask, int rows, Coalitions.MaskParams p)
    {
        using var launch = Launch("Coalitions.MaskInputs", static acc => acc.LoadAutoGroupedKernel<
            Index1D, ArrayView<byte>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>, Coalitions.MaskParams>(Coalitions.MaskInputsKernel));
        launch.Kernel(launch.Stream, rows * p.Seq, masks.View, featureOf.View, ids.View, keyMask.View, maskedIds.View, maskedKeyMask.View, QueueStagedCheck(featureOf), p);
    }

    // Checked on the device, in the masking launch just before its kernel, which reads the check's slot: no download.
    internal override void CoalitionsCheckFeatures(in OpArgs args, Tensor<int> featureOf, int m) => StageRangeCheck(args, featureOf, -1, m, RangeCheck.Features);
}

/// <summary>Coalitions' ILGPU kernels.</summary>
public static partial class Coalitions
{
    // One thread per unit: masks [units · (paired + 1), M]; thresholds [classes]
    internal static void SampleKernel(Index1D u, ArrayView<byte> masks, ArrayView<uint> thresholds, SampleParams p)
    {
        long row = (long)(int)u * (p.Paired + 1) * p.M;
        var words = Philox.Block(0, (uint)(int)u, p.Stream, 0, p.Key0, p.Key1);
        int size = p.SmallestSize;
        for (int j = 0; j < p.Classes - 1; j++)
        {
            size += thresholds[j] <= words.X0 ? 1 : 0;
        }

        int k = XMin(size, p.M - size);
        byte fill = (byte)(size > p.M - size ? 1 : 0);
        byte mark = (byte)(1 - fill);
        for (int f = 0; f < p.M; f++)
        {
            masks[row + f] = fill;
        }

        for (int w = 1; w <= k; w++)
        {
            if ((w & 3) == 0)
            {
                words = Philox.Block((uint)(w >> 2), (uint)(int)u, p.Stream, 0, p.Key0, p.Key1);
            }

            int j = p.M - k + w - 1;
            int t = Philox.Below(words[w & 3], j + 1);
            if (masks[row + t] == mark)
            {
                masks[row + j] = mark;
            }
            else
            {
                masks[row + t] = mark;
            }
        }

        if (p.Paired != 0)
        {
            for (int f = 0; f < p.M; f++)
            {
                masks[row + p.M + f] = (byte)(1 - masks[row + f]);
            }
        }
    }

    // masks [rows, M], featureOf/ids/keyMask [seq] -> maskedIds/maskedKeyMask [rows, seq]; nothing is written
    // when featureOf's check [2] failed.
    internal static void MaskInputsKernel(
        Index1D i, ArrayView<byte> masks, ArrayView<int> featureOf, ArrayView<int> ids, ArrayView<int> keyMask, ArrayView<int> maskedIds, ArrayView<int> maskedKeyMask,
        ArrayView<int> check, MaskParams p)
    {
        if (check[0] != 0)
        {
            return;
        }

        int r = i / p.Seq;
        int t = i - (r * p.Seq);
        int f = featureOf[t];
        bool kept = f < 0 || masks[((long)r * p.M) + f] != 0;
        maskedIds[i] = kept || p.Replacement < 0 ? ids[t] : p.Replacement;
        maskedKeyMask[i] = kept || p.Replacement >= 0 ? keyMask[t] : 0;
    }

    private static int XMin(int a, int b) => a < b ? a : b;
}
