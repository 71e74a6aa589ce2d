using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Headlight.Kernels;

/// <summary>
/// A job the CPU workers run: <see cref="Execute"/> is called once for every item in <c>[0, count)</c>, on
/// any of the workers or on the calling thread, in no particular order. Jobs are unmanaged structs (pointers
/// and sizes) that live on the caller's stack for the duration of <see cref="CpuWorkers.Run{T}"/>.
/// </summary>
internal interface ICpuJob
{
    /// <summary>Runs one item.</summary>
    void Execute(int item);
}

/// <summary>
/// The managed CPU backend's parallel runtime: <c>threads − 1</c> persistent worker threads plus the calling
/// thread run the items of one job at a time. A call allocates nothing: the job is a struct passed by
/// address and items are claimed with atomic tickets. Idle workers spin for a while (the next op of a forward
/// pass follows within microseconds, and waking a blocked thread costs far more on a virtual machine) before
/// they block.
/// </summary>
/// <remarks>
/// <para>Items are split into one contiguous home range per thread (the caller's first): each thread runs its
/// own range in order, then helps with the others'. Ops number items along rows, so a thread works on the same
/// rows op after op and finds them in its own cache; a thread that is late loses its range to the others.</para>
/// <para>Calls from several threads take turns: one job runs at a time, so two callers never put more threads
/// than cores to work. A job started from inside another job (an op called by an op) runs on the calling
/// thread alone. Workers start on the first job that has more than one item, and end with <see cref="Dispose"/>.</para>
/// </remarks>
internal sealed unsafe class CpuWorkers : IDisposable
{
    // A lane's ticket: generation in the high 32 bits, next item in the low 32. Closed marks a job being set up.
    private const long IndexMask = 0xFFFF_FFFFL;
    private const int Closed = int.MaxValue;

    // Longs between two lanes' tickets: 128 bytes, so no two share a cache line (or an adjacent-line prefetch).
    private const int LaneStride = 16;

    // How long an idle worker polls for the next job before it blocks.
    private static readonly long SpinTicks = Stopwatch.Frequency / 200; // 5 ms

    [ThreadStatic]
    private static bool insideJob;

    private readonly int threads;
    private readonly object turn = new();
    private readonly object startLock = new();
    private readonly long[] tickets;
    private Worker[]? workers;
    private long generation;

    // The current job; written only while every lane is closed.
    private delegate*<void*, int, void> body;
    private void* state;
    private int count;
    private int done;
    private int failed;
    private Exception? failure;
    private volatile bool disposed;

    public CpuWorkers(int threads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        this.threads = threads;
        tickets = new long[threads * LaneStride];
    }

    /// <summary>Threads that run a job's items, the caller included.</summary>
    public int Threads => threads;

    /// <summary>Bytes the worker threads have allocated on the managed heap, as of the end of their last job (tests check it stays put).</summary>
    public long WorkerAllocatedBytes
    {
        get
        {
            long sum = 0;
            foreach (var w in Volatile.Read(ref workers) ?? [])
            {
                sum += Volatile.Read(ref w.AllocatedBytes);
            }

            return sum;
        }
    }

    /// <summary>
    /// Runs <c>job.Execute(i)</c> for every <c>i</c> in <c>[0, items)</c> and returns when all have finished.
    /// The first exception an item throws is rethrown here (the other items still run).
    /// </summary>
    public void Run<T>(ref T job, int items)
        where T : unmanaged, ICpuJob
    {
        if (items <= 0)
        {
            return;
        }

        if (items == 1 || threads == 1 || insideJob || disposed)
        {
            RunInline(ref job, items);
            return;
        }

        EnsureStarted();
        lock (turn)
        {
            fixed (T* p = &job)
            {
                Post(&Invoke<T>, p, items);
                insideJob = true;
                try
                {
                    Work(0);
                    WaitForItems();
                }
                finally
                {
                    insideJob = false;
                }

                var error = failure;
                failure = null;
                failed = 0;
                if (error is not null)
                {
                    throw new AggregateException("A CPU op failed on a worker thread.", error);
                }
            }
        }
    }

    /// <summary>Stops the workers; later jobs run on the calling thread.</summary>
    public void Dispose()
    {
        if (disposed)
        {
            return;
        }

        lock (turn)
        {
            disposed = true;
            var all = workers;
            if (all is null)
            {
                return;
            }

            // Closed lanes and a new generation: every worker wakes, sees the flag and leaves.
            long next = Volatile.Read(ref generation) + 1;
            for (int lane = 0; lane < threads; lane++)
            {
                Interlocked.Exchange(ref tickets[lane * LaneStride], (next << 32) | Closed);
            }

            Volatile.Write(ref generation, next);
            foreach (var w in all)
            {
                w.Wake();
            }

            foreach (var w in all)
            {
                if (w.Thread != Thread.CurrentThread)
                {
                    w.Thread.Join();
                }
            }
        }
    }

    private static void RunInline<T>(ref T job, int items)
        where T : unmanaged, ICpuJob
    {
        bool outer = !insideJob;
        insideJob = true;
        try
        {
            for (int i = 0; i < items; i++)
            {
                job.Execute(i);
            }
        }
        finally
        {
            if (outer)
            {
                insideJob = false;
            }
        }
    }

    private static void Invoke<T>(void* job, int item)
        where T : unmanaged, ICpuJob
    {
        ((T*)job)->Execute(item);
    }

    private void EnsureStarted()
    {
        if (Volatile.Read(ref workers) is not null)
        {
            return;
        }

        lock (startLock)
        {
            if (workers is not null)
            {
                return;
            }

            // Each worker starts from the generation before any job it must take part in: read here, not when its
            // thread first runs, which on a loaded machine can be after the first job was posted.
            long current = Volatile.Read(ref generation);
            var created = new Worker[threads - 1];
            for (int i = 0; i < created.Length; i++)
            {
                created[i] = new Worker(this, i + 1, current);
            }

            Volatile.Write(ref workers, created);
            foreach (var w in created)
            {
                w.Thread.Start();
            }
        }
    }

    // The first item of a lane's home range; the range ends where the next lane's begins.
    private int LaneStart(int lane, int items) => (int)((long)lane * items / threads);

    // Publishes a job: close every lane (so no worker claims against half-written fields), write the job, open
    // each lane at the start of its range, then announce the generation.
    private void Post(delegate*<void*, int, void> fn, void* job, int items)
    {
        long next = Volatile.Read(ref generation) + 1;
        for (int lane = 0; lane < threads; lane++)
        {
            Interlocked.Exchange(ref tickets[lane * LaneStride], (next << 32) | Closed);
        }

        body = fn;
        state = job;
        count = items;
        Volatile.Write(ref done, 0);
        for (int lane = 0; lane < threads; lane++)
        {
            Interlocked.Exchange(ref tickets[lane * LaneStride], (next << 32) | (uint)LaneStart(lane, items));
        }

        Volatile.Write(ref generation, next);
        foreach (var w in workers!)
        {
            w.Wake();
        }
    }

    // Runs the items of the current job: this lane's range first, then what is left of the others'.
    private void Work(int home)
    {
        for (int k = 0; k < threads; k++)
        {
            int lane = home + k < threads ? home + k : home + k - threads;
            if (!WorkLane(lane))
            {
                return;
            }
        }
    }

    // Claims and runs items of one lane until its range is done; false when the workers are stopping.
    private bool WorkLane(int lane)
    {
        ref long slot = ref tickets[lane * LaneStride];
        while (true)
        {
            long t = Volatile.Read(ref slot);
            int index = (int)(t & IndexMask);
            if (index == Closed)
            {
                // A job is being posted (a few stores) or the workers are stopping.
                if (disposed)
                {
                    return false;
                }

                Thread.SpinWait(1);
                continue;
            }

            // Read after the ticket: while the lane still holds this ticket, these are this job's fields.
            var fn = body;
            var job = state;
            int items = count;
            if (index >= LaneStart(lane + 1, items))
            {
                return true;
            }

            if (Interlocked.CompareExchange(ref slot, t + 1, t) != t)
            {
                continue;
            }

            try
            {
                fn(job, index);
            }
            catch (Exception e)
            {
                if (Interlocked.Exchange(ref failed, 1) == 0)
                {
                    failure = e;
                }
            }

            Interlocked.Increment(ref done);
        }
    }

    private void WaitForItems()
    {
        var spin = default(SpinWait);
        while (Volatile.Read(ref done) < count)
        {
            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    /// <summary>One persistent worker thread.</summary>
    private sealed class Worker
    {
        private readonly CpuWorkers owner;
        private readonly int lane;
        private readonly long firstSeen;
        private readonly SemaphoreSlim signal = new(0, int.MaxValue);
        private int sleeping;

        /// <summary>This thread's managed allocations so far, updated after each job.</summary>
        public long AllocatedBytes;

        public Worker(CpuWorkers owner, int lane, long firstSeen)
        {
            this.owner = owner;
            this.lane = lane;
            this.firstSeen = firstSeen;
            Thread = new Thread(Loop)
            {
                IsBackground = true,
                Name = $"headlight-cpu-{lane}",
            };
        }

        public Thread Thread { get; }

        /// <summary>Wakes the worker if it is blocked; one release per sleep, so permits never pile up.</summary>
        public void Wake()
        {
            if (Interlocked.Exchange(ref sleeping, 0) == 1)
            {
                signal.Release();
            }
        }

        private void Loop()
        {
            insideJob = true;
            long seen = firstSeen;
            while (true)
            {
                seen = WaitForGeneration(seen);
                if (owner.disposed)
                {
                    return;
                }

                owner.Work(lane);
                Volatile.Write(ref AllocatedBytes, GC.GetAllocatedBytesForCurrentThread());
            }
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private long WaitForGeneration(long seen)
        {
            long start = Stopwatch.GetTimestamp();
            int polls = 0;
            while (true)
            {
                long current = Volatile.Read(ref owner.generation);
                if (current != seen || owner.disposed)
                {
                    return current;
                }

                if (++polls % 64 != 0 || Stopwatch.GetTimestamp() - start < SpinTicks)
                {
                    Thread.SpinWait(8);
                    continue;
                }

                // Block: announce it, look once more (a job posted in between would otherwise be missed), wait.
                Volatile.Write(ref sleeping, 1);
                Interlocked.MemoryBarrier();
                current = Volatile.Read(ref owner.generation);
                if (current != seen || owner.disposed)
                {
                    if (Interlocked.Exchange(ref sleeping, 0) == 0)
                    {
                        signal.Wait(); // the poster cleared the flag and released once: take that permit
                    }

                    return current;
                }

                signal.Wait();
                start = Stopwatch.GetTimestamp();
                polls = 0;
            }
        }
    }
}
