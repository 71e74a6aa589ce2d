using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>
/// Reductions for row kernels. <see cref="Sum"/> and <see cref="Max"/> reduce across one group through
/// shared memory and barriers (every thread of the group must call them); they serve backends without warps
/// (PoCL reports no sub-groups) and rows longer than <see cref="MaxWarpRow"/>. <see cref="WarpSum"/> and
/// <see cref="WarpMax"/> reduce across one warp with shuffles, no shared memory and no barrier: the row
/// kernels' warp-per-row path on backends that report a warp (CUDA, ILGPU's CPU simulator).
/// </summary>
internal static class GroupReduce
{
    /// <summary>Threads per group for row-wise kernels; shared scratch arrays are this long.</summary>
    public const int MaxGroupSize = 256;

    /// <summary>The longest row a warp-per-row kernel takes: 32 elements per lane of a 32-lane warp.</summary>
    public const int MaxWarpRow = 1024;

    // Set (on this thread only) by ForceSharedRows: tests run the shared-memory path where a warp exists.
    [ThreadStatic]
    private static bool sharedRowsOnly;

    /// <summary>
    /// Until disposed, row kernels launched from this thread take the shared-memory path even where the
    /// backend has warps (so tests run both paths on one backend).
    /// </summary>
    internal static SharedRowsScope ForceSharedRows()
    {
        bool previous = sharedRowsOnly;
        sharedRowsOnly = true;
        return new SharedRowsScope(previous);
    }

    internal static void RestoreSharedRows(bool previous) => sharedRowsOnly = previous;

    /// <summary>
    /// True when rows of <paramref name="length"/> elements take the warp-per-row kernels on
    /// <paramref name="backend"/>: it has warps of a power-of-two size that fit a row group, and the row is at
    /// most <see cref="MaxWarpRow"/> long.
    /// </summary>
    public static bool UseWarpRows(IlgpuBackend backend, int length)
    {
        int warp = backend.WarpSize;
        return !sharedRowsOnly && warp > 1 && (warp & (warp - 1)) == 0 && warp <= GroupSizeFor(backend) && length <= MaxWarpRow;
    }

    /// <summary>
    /// The launch of a warp-per-row kernel over <paramref name="rows"/> rows: groups of up to
    /// <see cref="MaxGroupSize"/> threads, one warp per row, fewer warps when there are fewer rows.
    /// </summary>
    public static KernelConfig WarpRows(IlgpuBackend backend, int rows)
    {
        int warp = backend.WarpSize;
        int perGroup = GroupSizeFor(backend) / warp;
        while (perGroup > 1 && perGroup / 2 >= rows)
        {
            perGroup /= 2;
        }

        return new KernelConfig((rows + perGroup - 1) / perGroup, perGroup * warp);
    }

    /// <summary>The row of this warp in a warp-per-row launch: warp w of group g takes row g · (warps per group) + w.</summary>
    public static int WarpRow() => (Grid.IdxX * (Group.DimX / Warp.WarpSize)) + Warp.WarpIdx;

    /// <summary>Sum of <paramref name="value"/> over the warp by butterfly shuffles; every lane gets the result. Every lane must call it.</summary>
    public static float WarpSum(float value)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
        {
            value += Warp.ShuffleXor(value, offset);
        }

        return value;
    }

    /// <summary>Maximum of <paramref name="value"/> over the warp; every lane gets the result. Every lane must call it.</summary>
    public static float WarpMax(float value)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
        {
            value = XMath.Max(value, Warp.ShuffleXor(value, offset));
        }

        return value;
    }

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

/// <summary>Restores the row-kernel path choice of <see cref="GroupReduce.ForceSharedRows"/>.</summary>
internal readonly struct SharedRowsScope(bool previous) : IDisposable
{
    public void Dispose() => GroupReduce.RestoreSharedRows(previous);
}
