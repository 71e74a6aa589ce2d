using System.Diagnostics;
using Headlight.Kernels;

namespace Headlight.Tests.Kernels;

/// <summary>
/// The CPU backend's parallel runtime: every item of a job runs exactly once, jobs from several threads
/// take turns, a job inside a job runs inline, a failing item surfaces on the caller, idle workers that
/// went to sleep wake for the next job, and disposal stops the threads.
/// </summary>
public sealed unsafe class CpuWorkersTests
{
    /// <summary>Adds one to counts[item] and records which thread ran it.</summary>
    private struct CountJob : ICpuJob
    {
        public int* Counts;
        public int* Threads;

        public readonly void Execute(int item)
        {
            Interlocked.Increment(ref Counts[item]);
            Threads[item] = Environment.CurrentManagedThreadId;
        }
    }

    /// <summary>Runs a nested job from inside each item.</summary>
    private struct NestedJob : ICpuJob
    {
        public nint Workers;
        public int* Counts;
        public int Inner;

        public readonly void Execute(int item)
        {
            var workers = (CpuWorkers)System.Runtime.InteropServices.GCHandle.FromIntPtr(Workers).Target!;
            var inner = new CountJob { Counts = Counts + (item * Inner), Threads = Counts + (item * Inner) + (Inner / 2) };
            int thread = Environment.CurrentManagedThreadId;
            workers.Run(ref inner, Inner / 2);
            for (int i = 0; i < Inner / 2; i++)
            {
                // Ran inline: on this thread.
                if (inner.Threads[i] != thread)
                {
                    throw new InvalidOperationException("nested item ran on another thread");
                }
            }
        }
    }

    /// <summary>Throws on one item.</summary>
    private struct FailingJob : ICpuJob
    {
        public int Bad;

        public readonly void Execute(int item)
        {
            if (item == Bad)
            {
                throw new InvalidOperationException($"item {item} failed");
            }
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 2)]
    [InlineData(2, 1000)]
    [InlineData(3, 37)]
    public void Every_item_runs_exactly_once(int threads, int items)
    {
        using var workers = new CpuWorkers(threads);
        var counts = new int[items];
        var ran = new int[items];
        fixed (int* c = counts, r = ran)
        {
            for (int round = 0; round < 50; round++)
            {
                var job = new CountJob { Counts = c, Threads = r };
                workers.Run(ref job, items);
            }
        }

        Assert.All(counts, n => Assert.Equal(50, n));
    }

    [Fact]
    public void A_worker_thread_joins_the_caller()
    {
        using var workers = new CpuWorkers(2);
        var ran = new int[2];
        fixed (int* r = ran)
        {
            var job = new MeetJob { Threads = r, Items = 2 };
            workers.Run(ref job, 2);
        }

        Assert.NotEqual(ran[0], ran[1]);
    }

    /// <summary>Each item records its thread, then waits (up to 10 s) until another thread has run an item too.</summary>
    private struct MeetJob : ICpuJob
    {
        public int* Threads;
        public int Items;

        public readonly void Execute(int item)
        {
            int me = Environment.CurrentManagedThreadId;
            Volatile.Write(ref Threads[item], me);
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed.TotalSeconds < 10)
            {
                for (int i = 0; i < Items; i++)
                {
                    int other = Volatile.Read(ref Threads[i]);
                    if (other != 0 && other != me)
                    {
                        return;
                    }
                }

                Thread.Sleep(1);
            }
        }
    }

    /// <summary>Like <see cref="CountJob"/>, but each item takes a millisecond.</summary>
    private struct SlowJob : ICpuJob
    {
        public int* Counts;
        public int* Threads;

        public readonly void Execute(int item)
        {
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed.TotalMilliseconds < 1)
            {
                Thread.SpinWait(10);
            }

            Interlocked.Increment(ref Counts[item]);
            Threads[item] = Environment.CurrentManagedThreadId;
        }
    }

    [Fact]
    public void Callers_on_several_threads_take_turns_and_all_complete()
    {
        using var workers = new CpuWorkers(2);
        const int Callers = 4;
        const int Items = 97;
        var counts = new int[Callers][];
        var callers = Enumerable.Range(0, Callers).Select(caller => new Thread(() =>
        {
            counts[caller] = new int[Items];
            var ran = new int[Items];
            fixed (int* c = counts[caller], r = ran)
            {
                for (int round = 0; round < 200; round++)
                {
                    var job = new CountJob { Counts = c, Threads = r };
                    workers.Run(ref job, Items);
                }
            }
        })).ToArray();
        foreach (var t in callers)
        {
            t.Start();
        }

        Assert.All(callers, t => Assert.True(t.Join(TimeSpan.FromMinutes(2)), "a caller did not finish"));
        Assert.All(counts, perCaller => Assert.All(perCaller, n => Assert.Equal(200, n)));
    }

    [Fact]
    public void A_job_started_inside_a_job_runs_inline()
    {
        using var workers = new CpuWorkers(2);
        const int Outer = 8;
        const int Inner = 20;
        var counts = new int[Outer * Inner];
        var handle = System.Runtime.InteropServices.GCHandle.Alloc(workers);
        try
        {
            fixed (int* c = counts)
            {
                var job = new NestedJob { Workers = System.Runtime.InteropServices.GCHandle.ToIntPtr(handle), Counts = c, Inner = Inner };
                workers.Run(ref job, Outer);
            }
        }
        finally
        {
            handle.Free();
        }

        for (int o = 0; o < Outer; o++)
        {
            Assert.All(counts.AsSpan(o * Inner, Inner / 2).ToArray(), n => Assert.Equal(1, n));
        }
    }

    [Fact]
    public void A_failing_item_throws_on_the_caller_and_the_workers_keep_working()
    {
        using var workers = new CpuWorkers(2);
        var job = new FailingJob { Bad = 13 };
        var e = Assert.Throws<AggregateException>(() => workers.Run(ref job, 40));
        Assert.Contains("item 13 failed", e.InnerException!.Message, StringComparison.Ordinal);

        var counts = new int[40];
        var ran = new int[40];
        fixed (int* c = counts, r = ran)
        {
            var ok = new CountJob { Counts = c, Threads = r };
            workers.Run(ref ok, 40);
        }

        Assert.All(counts, n => Assert.Equal(1, n));
    }

    [Fact]
    public void Workers_that_went_to_sleep_wake_for_the_next_job()
    {
        using var workers = new CpuWorkers(2);
        var counts = new int[16];
        var ran = new int[16];
        fixed (int* c = counts, r = ran)
        {
            for (int round = 0; round < 3; round++)
            {
                var job = new SlowJob { Counts = c, Threads = r };
                workers.Run(ref job, 16);
                Thread.Sleep(20); // far longer than the workers spin: they block
            }
        }

        Assert.All(counts, n => Assert.Equal(3, n));
    }

    [Fact]
    public void Disposed_workers_stop_and_later_jobs_run_on_the_caller()
    {
        var workers = new CpuWorkers(2);
        var counts = new int[32];
        var ran = new int[32];
        fixed (int* c = counts, r = ran)
        {
            var job = new CountJob { Counts = c, Threads = r };
            workers.Run(ref job, 32);
            workers.Dispose();
            workers.Dispose();
            workers.Run(ref job, 32);
        }

        Assert.All(counts, n => Assert.Equal(2, n));
        Assert.All(ran, id => Assert.Equal(Environment.CurrentManagedThreadId, id));
    }

    [Fact]
    public void A_cpu_device_stops_its_workers_when_disposed()
    {
        var device = new CpuDevice(2);
        using (var a = device.FromHost<float>(Enumerable.Range(0, 1 << 16).Select(i => (float)i).ToArray(), 256, 256))
        using (var y = device.Allocate(256))
        {
            Reduce.RowSum(a, y);
        }

        var workers = device.Workers;
        device.Dispose();
        var counts = new int[8];
        var ran = new int[8];
        fixed (int* c = counts, r = ran)
        {
            var job = new CountJob { Counts = c, Threads = r };
            workers.Run(ref job, 8);
        }

        Assert.All(ran, id => Assert.Equal(Environment.CurrentManagedThreadId, id));
    }
}
