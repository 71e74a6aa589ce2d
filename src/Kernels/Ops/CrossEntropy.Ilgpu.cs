using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>
/// The cross-entropy's row kernel on ILGPU: one warp per row (shuffles) where the backend has warps and the vocabulary is
/// at most <see cref="GroupReduce.MaxWarpRow"/> long, else one group per row (shared memory), as the softmax.
/// </summary>
internal sealed partial class IlgpuBackend
{
    // Reading the targets back would cost a round trip; the kernel treats a bad target as a row not counted instead.
    internal override (int Row, int Value)? CrossEntropyBadTarget(Tensor<int> targets, int vocab) => null;

    internal override void CrossEntropyRows(Tensor<float> logits, Tensor<int> targets, Tensor<float> loss, int rows, int vocab, float scale, bool gradient)
    {
        if (GroupReduce.UseWarpRows(this, vocab))
        {
            using var warpKernel = Launch("CrossEntropy.RowsWarp", static acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, float, int>(CrossEntropy.RowsWarpKernel));
            warpKernel.Kernel(warpKernel.Stream, GroupReduce.WarpRows(this, rows),
                logits.View, targets.View, loss.View, rows, vocab, scale, gradient ? 1 : 0);
            return;
        }

        using var launch = Launch("CrossEntropy.Rows", static acc => acc.LoadKernel<
            ArrayView<float>, ArrayView<int>, ArrayView<float>, int, float, int>(CrossEntropy.RowsKernel));
        launch.Kernel(launch.Stream, new KernelConfig(rows, GroupReduce.GroupSizeFor(this)),
            logits.View, targets.View, loss.View, vocab, scale, gradient ? 1 : 0);
    }
}

/// <summary>The cross-entropy's ILGPU kernels.</summary>
public static partial class CrossEntropy
{
    // One group per row. logits [rows, vocab], targets [rows] -> loss [rows]; with gradient, logits -> scale·(p − onehot)
    internal static void RowsKernel(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> loss, int vocab, float scale, int gradient)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int row = Grid.IdxX;
        long start = (long)row * vocab;
        int target = targets[row];
        bool counted = target >= 0 && target < vocab;
        float max = float.NegativeInfinity;
        for (int c = Group.IdxX; c < vocab; c += Group.DimX)
        {
            max = XMath.Max(max, logits[start + c]);
        }

        max = GroupReduce.Max(scratch, max);
        float sum = 0f;
        for (int c = Group.IdxX; c < vocab; c += Group.DimX)
        {
            sum += XMath.Exp(logits[start + c] - max);
        }

        // Every thread reads the target's logit before the barriers of the sum, so none reads it after it is replaced.
        float targetLogit = counted ? logits[start + target] : 0f;
        sum = GroupReduce.Sum(scratch, sum);
        if (Group.IdxX == 0)
        {
            loss[row] = counted ? XMath.Log(sum) + (max - targetLogit) : 0f;
        }

        if (gradient != 0)
        {
            float inverse = counted ? scale / sum : 0f;
            for (int c = Group.IdxX; c < vocab; c += Group.DimX)
            {
                logits[start + c] = Gradient(logits[start + c], max, inverse, c == target ? scale : 0f);
            }
        }
    }

    // One warp per row, several rows per group; a warp past the last row runs on an empty row and writes nothing.
    // logits [rows, vocab], targets [rows] -> loss [rows]; with gradient, logits -> scale·(p − onehot)
    internal static void RowsWarpKernel(ArrayView<float> logits, ArrayView<int> targets, ArrayView<float> loss, int rows, int vocab, float scale, int gradient)
    {
        int row = GroupReduce.WarpRow();
        bool live = row < rows;
        int width = live ? vocab : 0;
        int lane = Warp.LaneIdx;
        int lanes = Warp.WarpSize;
        long start = (long)row * vocab;
        int target = live ? targets[row] : -1;
        bool counted = target >= 0 && target < vocab;
        float max = float.NegativeInfinity;
        for (int c = lane; c < width; c += lanes)
        {
            max = XMath.Max(max, logits[start + c]);
        }

        max = GroupReduce.WarpMax(max);
        float sum = 0f;
        for (int c = lane; c < width; c += lanes)
        {
            sum += XMath.Exp(logits[start + c] - max);
        }

        float targetLogit = counted ? logits[start + target] : 0f;
        sum = GroupReduce.WarpSum(sum);
        if (live && lane == 0)
        {
            loss[row] = counted ? XMath.Log(sum) + (max - targetLogit) : 0f;
        }

        if (gradient != 0)
        {
            float inverse = counted ? scale / sum : 0f;
            for (int c = lane; c < width; c += lanes)
            {
                logits[start + c] = Gradient(logits[start + c], max, inverse, c == target ? scale : 0f);
            }
        }
    }

    // scale·(exp(l − max)/Σ − onehot), with inverse = scale/Σ (0 for a row not counted, whose onehot term is 0 too).
    private static float Gradient(float logit, float max, float inverse, float onehot) => (XMath.Exp(logit - max) * inverse) - onehot;
}
