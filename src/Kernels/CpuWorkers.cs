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
/// address, items are claimed from one atomic ticket, and idle workers spin briefly (the next op of a
/// forward pass follows within microseconds) before they block.
/// </summary>
/// <remarks>
/// Calls from several threads take turns: one job runs at a time, so two callers never put more threads
/// than cores to work. A job started from inside another job (an op called by an op) runs on the calling
/// thread alone. Workers start on the first job that has more than one item, and end with <see cref="Dispose"/>.
/// </remarks>
internal sealed unsafe class CpuWorkers : IDisposable
{
    // Ticket: generation in the high 32 bits, next item in the low 32. Closed marks a job being set up.
    private const long IndexMask = 0xFFFF_FFFFL;
    private const int Closed = int.MaxValue;

    // How long an idle worker polls for the next job before it blocks.
    private static readonly long SpinTicks = Stopwatch.Frequency / 5000; // 200 µs

    [ThreadStatic]
    private static bool insideJob;

    private readonly int threads;
    private readonly object turn = new();
    private readonly object startLock = new();
    private Worker[]? workers;
    private long ticket;

    // The current job; written only while the ticket is closed.
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
                    Work();
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

            // A new generation wakes every worker, which then sees the flag and leaves.
            Interlocked.Exchange(ref ticket, (((ticket >> 32) + 1) << 32) | Closed);
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

            var created = new Worker[threads - 1];
            for (int i = 0; i < created.Length; i++)
            {
                created[i] = new Worker(this, i);
            }

            Volatile.Write(ref workers, created);
            foreach (var w in created)
            {
                w.Thread.Start();
            }
        }
    }

    // Publishes a job: close the ticket (so no worker claims against half-written fields), write the job, open it.
    private void Post(delegate*<void*, int, void> fn, void* job, int items)
    {
        long generation = (Volatile.Read(ref ticket) >> 32) + 1;
        Interlocked.Exchange(ref ticket, (generation << 32) | Closed);
        body = fn;
        state = job;
        count = items;
        Volatile.Write(ref done, 0);
        Interlocked.Exchange(ref ticket, generation << 32);
        foreach (var w in workers!)
        {
            w.Wake();
        }
    }

    // Claims and runs items of the current job until none is left.
    private void Work()
    {
        while (true)
        {
            long t = Volatile.Read(ref ticket);
            int index = (int)(t & IndexMask);
            if (index == Closed)
            {
                // A job is being posted (a few stores) or the workers are stopping.
                if (disposed)
                {
                    return;
                }

                Thread.SpinWait(1);
                continue;
            }

            // Read after the ticket: while it still holds this generation, these are this job's fields.
            var fn = body;
            var job = state;
            int items = count;
            if (index >= items)
            {
                return;
            }

            if (Interlocked.CompareExchange(ref ticket, t + 1, t) != t)
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

    private long Generation => Volatile.Read(ref ticket) >> 32;

    /// <summary>One persistent worker thread.</summary>
    private sealed class Worker
    {
        private readonly CpuWorkers owner;
        private readonly SemaphoreSlim signal = new(0, int.MaxValue);
        private int sleeping;

        /// <summary>This thread's managed allocations so far, updated after each job.</summary>
        public long AllocatedBytes;

        public Worker(CpuWorkers owner, int index)
        {
            this.owner = owner;
            Thread = new Thread(Loop)
            {
                IsBackground = true,
                Name = $"headlight-cpu-{index + 1}",
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
            long seen = owner.Generation;
            while (true)
            {
                long generation = WaitForGeneration(seen);
                if (owner.disposed)
                {
                    return;
                }

                seen = generation;
                owner.Work();
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
                long generation = owner.Generation;
                if (generation != seen || owner.disposed)
                {
                    return generation;
                }

                if (++polls % 64 != 0 || Stopwatch.GetTimestamp() - start < SpinTicks)
                {
                    Thread.SpinWait(8);
                    continue;
                }

                // Block: announce it, look once more (a job posted in between would otherwise be missed), wait.
                Volatile.Write(ref sleeping, 1);
                Interlocked.MemoryBarrier();
                generation = owner.Generation;
                if (generation != seen || owner.disposed)
                {
                    if (Interlocked.Exchange(ref sleeping, 0) == 0)
                    {
                        signal.Wait(); // the poster cleared the flag and released once: take that permit
                    }

                    return generation;
                }

                signal.Wait();
                start = Stopwatch.GetTimestamp();
                polls = 0;
            }
        }
    }
}
