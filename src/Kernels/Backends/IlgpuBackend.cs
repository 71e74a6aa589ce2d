using System.Collections.Concurrent;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>
/// The ILGPU backend (CUDA, OpenCL, ILGPU's CPU simulator): each op's <c>X.Ilgpu.cs</c> holds its kernels
/// and implements its entry points by launching them through <see cref="Launch{TKernel}"/>, the one place
/// that looks kernels up, picks the stream and serialises callers.
/// </summary>
internal sealed partial class IlgpuBackend : Backend
{
    // Loading compiles a kernel (100 ms or more), so each is loaded once per accelerator.
    private readonly ConcurrentDictionary<string, Lazy<object>> kernels = new(StringComparer.Ordinal);

    internal IlgpuBackend(Accelerator accelerator) => Accelerator = accelerator;

    /// <summary>The accelerator; owned by the device.</summary>
    internal Accelerator Accelerator { get; }

    /// <summary>Serialises launches and copies from concurrent callers on the accelerator's default stream.</summary>
    internal Lock SyncRoot { get; } = new();

    /// <summary>Threads that run in lock step (1 when the backend reports none, as PoCL does).</summary>
    internal int WarpSize => Math.Max(1, Accelerator.WarpSize);

    /// <summary>True on ILGPU's CPU accelerator, which simulates groups and barriers: some ops take a per-thread kernel there.</summary>
    internal bool IsSimulator => Accelerator.AcceleratorType == AcceleratorType.CPU;

    /// <summary>The largest group this accelerator runs.</summary>
    internal int MaxGroupSize => Accelerator.MaxNumThreadsPerGroup;

    /// <summary>
    /// Takes the launch lock and returns the kernel stored under <paramref name="key"/>, loading it with
    /// <paramref name="load"/> on first use; dispose the result (a <c>using</c>) to release the lock.
    /// Pass a static lambda so no delegate is allocated per call.
    /// </summary>
    internal LaunchScope<TKernel> Launch<TKernel>(string key, Func<Accelerator, TKernel> load)
        where TKernel : class
    {
        var kernel = Kernel(key, load);
        return new LaunchScope<TKernel>(kernel, Accelerator.DefaultStream, SyncRoot.EnterScope());
    }

    /// <summary>The kernel stored under <paramref name="key"/>, loaded on first use, without taking the lock.</summary>
    internal TKernel Kernel<TKernel>(string key, Func<Accelerator, TKernel> load)
        where TKernel : class
    {
        if (!kernels.TryGetValue(key, out var lazy))
        {
            lazy = kernels.GetOrAdd(key, _ => new Lazy<object>(() => load(Accelerator), LazyThreadSafetyMode.ExecutionAndPublication));
        }

        return (TKernel)lazy.Value;
    }

    /// <summary>Takes the launch lock for a sequence of launches and copies on the default stream.</summary>
    internal Lock.Scope Enter() => SyncRoot.EnterScope();

    /// <summary>The stream every launch and copy goes to.</summary>
    internal AcceleratorStream Stream => Accelerator.DefaultStream;

    // Host round trips since the backend was made: cheap counters for tests that pin how many a pass makes.
    private long uploads;
    private long downloads;
    private long synchronizations;

    /// <summary>Uploads, downloads and waits for the device (each upload and download waits once) so far.</summary>
    internal (long Uploads, long Downloads, long Synchronizations) RoundTrips =>
        (Interlocked.Read(ref uploads), Interlocked.Read(ref downloads), Interlocked.Read(ref synchronizations));

    private void CountSynchronize() => Interlocked.Increment(ref synchronizations);

    internal override void Upload<T>(Tensor<T> destination, ReadOnlySpan<T> source)
    {
        using (Enter())
        {
            destination.View.CopyFromCPU(Stream, source);
            Interlocked.Increment(ref uploads);

            // The source span is the caller's: the copy must finish before this returns.
            Stream.Synchronize();
            CountSynchronize();
        }
    }

    internal override void Download<T>(Tensor<T> source, Span<T> destination)
    {
        using (Enter())
        {
            source.View.CopyToCPU(Stream, destination);
            Interlocked.Increment(ref downloads);

            // The same wait reads the device index checks queued since the last one (IlgpuBackend.Checks.cs).
            CollectChecks(WaitForChecks());
            ThrowIfCheckFailed();
        }
    }

    internal override void Copy<T>(Tensor<T> source, Tensor<T> destination)
    {
        using (Enter())
        {
            source.View.CopyTo(Stream, destination.View);
        }
    }

    internal override void Fill<T>(Tensor<T> tensor, T value)
    {
        // Through a host buffer: rare (initialisation and tests), and it needs no kernel per type.
        var host = new T[tensor.Length];
        host.AsSpan().Fill(value);
        Upload(tensor, host);
    }
}

/// <summary>A kernel, the stream to launch it on and the held launch lock; disposing releases the lock.</summary>
internal ref struct LaunchScope<TKernel>
    where TKernel : class
{
    private Lock.Scope held;

    internal LaunchScope(TKernel kernel, AcceleratorStream stream, Lock.Scope held)
    {
        Kernel = kernel;
        Stream = stream;
        this.held = held;
    }

    /// <summary>The loaded kernel.</summary>
    public TKernel Kernel { get; }

    /// <summary>The stream to launch on.</summary>
    public AcceleratorStream Stream { get; }

    /// <summary>Releases the launch lock.</summary>
    public void Dispose() => held.Dispose();
}
