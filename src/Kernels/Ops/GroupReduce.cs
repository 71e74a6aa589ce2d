using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>
/// Reductions across the threads of one group through shared memory and barriers only. Warp
/// shuffles are not used: PoCL reports no sub-groups, and one code path serves every backend.
/// Every thread of the group must call these (they contain barriers).
/// </summary>
internal static class GroupReduce
{
    /// <summary>Threads per group for row-wise kernels; shared scratch arrays are this long.</summary>
    public const int MaxGroupSize = 256;

    /// <summary>The group size row kernels launch with on <paramref name="backend"/>: a power of two, at most <see cref="MaxGroupSize"/>.</summary>
    public static int GroupSizeFor(IlgpuBackend backend)
    {
        int size = MaxGroupSize;
        while (size > backend.MaxGroupSize)
        {
            size /= 2;
        }

        return size;
    }

    /// <summary>Sum of <paramref name="value"/> over the group; every thread gets the result.</summary>
    /// <param name="scratch">Shared memory of at least the group size.</param>
    /// <param name="value">This thread's part.</param>
    public static float Sum(ArrayView<float> scratch, float value)
    {
        int tid = Group.IdxX;
        scratch[tid] = value;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (tid < stride)
            {
                scratch[tid] += scratch[tid + stride];
            }

            Group.Barrier();
        }

        float result = scratch[0];

        // Keep scratch intact until every thread has read it, so it can be reused right away.
        Group.Barrier();
        return result;
    }

    /// <summary>Maximum of <paramref name="value"/> over the group; every thread gets the result.</summary>
    public static float Max(ArrayView<float> scratch, float value)
    {
        int tid = Group.IdxX;
        scratch[tid] = value;
        Group.Barrier();
        for (int stride = Group.DimX / 2; stride > 0; stride /= 2)
        {
            if (tid < stride)
            {
                scratch[tid] = XMath.Max(scratch[tid], scratch[tid + stride]);
            }

            Group.Barrier();
        }

        float result = scratch[0];
        Group.Barrier();
        return result;
    }
}
