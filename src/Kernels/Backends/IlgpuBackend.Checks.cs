using ILGPU;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>
/// Index checks on the device: an op whose indices select rows (embedding ids, coalition features) checks
/// them in a kernel instead of downloading them, so a forward or backward pass makes no host round trip.
/// </summary>
/// <remarks>
/// <para>
/// The op's validation stages the check (<see cref="StageRangeCheck"/>); the op's launch then takes a slot of a
/// small status buffer owned by this backend, queues the check kernel, which records in the slot the first
/// position whose value is out of range and that value, and queues the op's kernel, which reads the slot and
/// writes nothing when the check failed. All three go out under one hold of the launch lock.
/// </para>
/// <para>
/// The host reads the slots only where it waits for the device anyway: in <see cref="Download{T}"/> (so
/// <see cref="Tensor{T}.CopyTo(Span{T})"/> and <c>ToArray</c>) and in <see cref="IlgpuDevice.Synchronize"/>. A
/// failure is raised as the op's <see cref="ArgumentException"/> by the next such call on the thread that
/// launched the op (first failure first); a wait on another thread only collects it. Only when every slot is
/// taken with no wait in between does a launch wait for the device first.
/// </para>
/// </remarks>
internal sealed partial class IlgpuBackend
{
    // Checks that may wait for the next download; each takes two ints of the status buffer.
    private const int CheckSlots = 64;

    // Failures kept for threads that have not waited since: the oldest go beyond this many.
    private const int MaxKeptFailures = 64;

    // The staged check of this thread's current op: set by the op's validation, taken by its launch.
    [ThreadStatic]
    private static StagedCheck staged;

    // Per slot: [int.MaxValue − first bad position (0 when none), the value there]. Zero when free.
    private MemoryBuffer1D<int, Stride1D.Dense>? checkStatus;
    private readonly PendingCheck[] pendingChecks = new PendingCheck[CheckSlots];
    private readonly int[] checkHost = new int[2 * CheckSlots];
    private readonly List<(int Thread, PendingCheck Check, int Position, int Value)> failures = [];
    private int pendingCount;

    /// <summary>What a failed check reports.</summary>
    internal enum RangeCheck
    {
        /// <summary>Embedding ids against the table's rows.</summary>
        EmbeddingIds,

        /// <summary>Coalition feature indices against [−1, M).</summary>
        Features,
    }

    /// <summary>
    /// Stages a check that every value of <paramref name="values"/> (not empty) lies in [<paramref name="low"/>,
    /// <paramref name="high"/>), failing for <paramref name="args"/>; the op's launch on this thread queues it
    /// (<see cref="QueueStagedCheck"/>).
    /// </summary>
    internal void StageRangeCheck(in OpArgs args, Tensor<int> values, int low, int high, RangeCheck kind)
        => staged = new StagedCheck(this, values, new PendingCheck(args, values.Shape, low, high, kind, Environment.CurrentManagedThreadId));

    /// <summary>
    /// Queues the check staged for <paramref name="values"/> and returns its slot <c>[2]</c> for the op's kernel,
    /// which must be launched before the lock is released. Without a staged check, a slot that stays clear.
    /// Under the launch lock.
    /// </summary>
    internal ArrayView<int> QueueStagedCheck(Tensor<int> values)
    {
        var check = staged;
        staged = default;
        if (!ReferenceEquals(check.Backend, this) || !ReferenceEquals(check.Values, values))
        {
            throw new InvalidOperationException("An index check must be staged by the op's validation before its launch.");
        }

        if (pendingCount == CheckSlots)
        {
            CollectChecks(WaitForChecks());
        }

        int slot = pendingCount++;
        pendingChecks[slot] = check.Check;
        var slotView = StatusBuffer().View.SubView(2 * slot, 2);
        var range = Kernel("Checks.Range", static acc => acc.LoadAutoGroupedKernel<
            Index1D, ArrayView<int>, ArrayView<int>, int, int>(DeviceChecks.RangeKernel));
        range(Stream, (int)values.Length, values.View, slotView, check.Check.Low, check.Check.High);
        var capture = Kernel("Checks.Capture", static acc => acc.LoadAutoGroupedKernel<
            Index1D, ArrayView<int>, ArrayView<int>>(DeviceChecks.CaptureKernel));
        capture(Stream, 1, values.View, slotView);
        return slotView;
    }

    /// <summary>Waits for the device and throws this thread's first failed check; for <see cref="IlgpuDevice.Synchronize"/>.</summary>
    internal void Synchronize()
    {
        using (Enter())
        {
            CollectChecks(WaitForChecks());
            ThrowIfCheckFailed();
        }
    }

    // Queues the read of the pending slots (when there are any), waits for the stream, and returns how many
    // were read. Under the launch lock.
    private int WaitForChecks()
    {
        int count = pendingCount;
        if (count > 0)
        {
            StatusBuffer().View.SubView(0, 2 * count).CopyToCPU(Stream, checkHost.AsSpan(0, 2 * count));
        }

        Stream.Synchronize();
        CountSynchronize();
        return count;
    }

    // After WaitForChecks: keeps the failures among the slots it read for their threads and frees the slots.
    // Under the launch lock.
    private void CollectChecks(int count)
    {
        if (count == 0)
        {
            return;
        }

        bool failed = false;
        for (int slot = 0; slot < count; slot++)
        {
            int bad = checkHost[2 * slot];
            if (bad != 0)
            {
                failed = true;
                if (failures.Count == MaxKeptFailures)
                {
                    failures.RemoveAt(0);
                }

                var check = pendingChecks[slot];
                failures.Add((check.Thread, check, int.MaxValue - bad, checkHost[(2 * slot) + 1]));
            }
        }

        // Ordered after every launch so far on the stream; the next checks start from zero.
        if (failed)
        {
            StatusBuffer().View.SubView(0, 2 * count).MemSetToZero(Stream);
        }

        Array.Clear(pendingChecks, 0, count);
        pendingCount = 0;
    }

    // Throws (and forgets) the first failure kept for the calling thread. Under the launch lock.
    private void ThrowIfCheckFailed()
    {
        int thread = Environment.CurrentManagedThreadId;
        int index = failures.FindIndex(f => f.Thread == thread);
        if (index < 0)
        {
            return;
        }

        var (_, check, position, value) = failures[index];
        failures.RemoveAt(index);
        string expectation = check.Kind == RangeCheck.EmbeddingIds
            ? Embedding.IdOutsideTable(check.Shape, position, value, check.High)
            : Coalitions.FeatureOutsideMask(position, value, check.High);
        check.Args.Fail(expectation + " (checked on the device, reported at the next download or Synchronize)");
    }

    private MemoryBuffer1D<int, Stride1D.Dense> StatusBuffer()
    {
        if (checkStatus is null)
        {
            checkStatus = Accelerator.Allocate1D<int>(2 * CheckSlots);
            checkStatus.View.MemSetToZero(Stream);
        }

        return checkStatus;
    }

    private readonly record struct PendingCheck(OpArgs Args, TensorShape Shape, int Low, int High, RangeCheck Kind, int Thread);

    private readonly record struct StagedCheck(IlgpuBackend? Backend, Tensor<int>? Values, PendingCheck Check);
}

/// <summary>The kernels of the device index checks.</summary>
internal static class DeviceChecks
{
    // values [n] -> slot [2]: slot[0] keeps int.MaxValue − the first bad position (the largest wins).
    internal static void RangeKernel(Index1D i, ArrayView<int> values, ArrayView<int> slot, int low, int high)
    {
        int v = values[i];
        if (v < low || v >= high)
        {
            Atomic.Max(ref slot[0], int.MaxValue - i);
        }
    }

    // One thread, after RangeKernel: the value at the first bad position, read before later ops change it.
    internal static void CaptureKernel(Index1D i, ArrayView<int> values, ArrayView<int> slot)
    {
        int bad = slot[0];
        if (bad != 0)
        {
            slot[1] = values[int.MaxValue - bad];
        }
    }
}
