using System.Globalization;
using System.Runtime.Intrinsics;

namespace Headlight.Kernels;

/// <summary>
/// The managed SIMD CPU backend: ops run as Vector512/Vector256 code and TensorPrimitives on the
/// host, with one level of parallelism over <see cref="Threads"/> threads (persistent workers owned by
/// the device, plus the calling thread). This is the fast CPU path; ILGPU's CPU accelerator
/// (<c>ilgpu-cpu</c>) is a simulator for testing kernels.
/// </summary>
/// <remarks>
/// Ops may be called from several threads at once; their parallel parts take turns on the workers.
/// Dispose the device to stop its worker threads.
/// </remarks>
public sealed class CpuDevice : Device
{
    private readonly CpuBackend backend;

    /// <summary>Creates the CPU device using every logical processor.</summary>
    public CpuDevice() : this(Environment.ProcessorCount) { }

    /// <summary>Creates the CPU device using <paramref name="threads"/> workers.</summary>
    public CpuDevice(int threads) : base("cpu", HostDescription())
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(threads, 1);
        Threads = threads;
        ParallelOptions = new ParallelOptions { MaxDegreeOfParallelism = threads };
        Workers = new CpuWorkers(threads);
        backend = new CpuBackend(Workers);
    }

    /// <inheritdoc />
    public override DeviceKind Kind => DeviceKind.Cpu;

    /// <summary>How many workers ops use.</summary>
    public int Threads { get; }

    /// <summary>The widest SIMD vector the ops use on this machine, in bits (512, 256 or 128).</summary>
    public static int VectorBits => Vector512.IsHardwareAccelerated ? 512 : Vector256.IsHardwareAccelerated ? 256 : 128;

    /// <summary>Options for code outside the ops that parallelises with <see cref="Parallel"/> (benchmark baselines).</summary>
    internal ParallelOptions ParallelOptions { get; }

    /// <summary>The threads every op's parallel part runs on.</summary>
    internal CpuWorkers Workers { get; }

    /// <inheritdoc />
    public override void Synchronize() { }

    internal override Backend Backend => backend;

    /// <summary>Stops the worker threads.</summary>
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Workers.Dispose();
        }

        base.Dispose(disposing);
    }

    internal override DeviceStorage<T> CreateStorage<T>(long length)
    {
        if (length > Array.MaxLength)
        {
            throw new ArgumentException($"cpu: a tensor of {length} elements exceeds the managed array limit of {Array.MaxLength}.");
        }

        return new HostStorage<T>(length);
    }

    internal static DeviceInfo Describe()
    {
        var props = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["type"] = "CPU",
            ["threads"] = Environment.ProcessorCount.ToString(CultureInfo.InvariantCulture),
            ["simd_bits"] = VectorBits.ToString(CultureInfo.InvariantCulture),
            ["fma"] = System.Runtime.Intrinsics.X86.Fma.IsSupported.ToString(),
        };
        long memory = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        return new DeviceInfo("cpu", DeviceKind.Cpu, HostDescription(), memory, props);
    }

    private static string HostDescription()
    {
        string model = "CPU";
        try
        {
            if (File.Exists("/proc/cpuinfo"))
            {
                string? line = File.ReadLines("/proc/cpuinfo")
                    .FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
                if (line is not null)
                {
                    model = line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
                }
            }
        }
        catch (IOException)
        {
            // The model name is cosmetic.
        }

        return $"{model}, {Environment.ProcessorCount} threads, {VectorBits}-bit SIMD";
    }
}
