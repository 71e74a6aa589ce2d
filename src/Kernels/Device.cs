using System.Collections.ObjectModel;
using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace Headlight.Kernels;

/// <summary>The kind of backend a <see cref="Device"/> runs its ops on.</summary>
public enum DeviceKind
{
    /// <summary>Managed SIMD code on the host CPU (Vector512/Vector256, TensorPrimitives): the fast CPU path.</summary>
    Cpu,

    /// <summary>ILGPU's CPU accelerator: runs the same kernels as the GPUs, by simulation; for tests, not speed.</summary>
    IlgpuCpu,

    /// <summary>An OpenCL device through ILGPU (OpenCL 2.0 or 3.0 with the generic address space).</summary>
    OpenCL,

    /// <summary>An NVIDIA GPU through ILGPU's CUDA backend.</summary>
    Cuda,
}

/// <summary>What one available device is, as listed by <see cref="Device.List"/>.</summary>
/// <param name="Name">The name that opens it with <see cref="Device.Open(string?)"/>.</param>
/// <param name="Kind">The backend.</param>
/// <param name="Description">The hardware, as the driver reports it.</param>
/// <param name="MemoryBytes">Device memory in bytes (host memory for CPU backends).</param>
/// <param name="Properties">Further properties: warp size, group size, compute capability, SIMD width and so on.</param>
public sealed record DeviceInfo(
    string Name,
    DeviceKind Kind,
    string Description,
    long MemoryBytes,
    IReadOnlyDictionary<string, string> Properties);

/// <summary>Thrown when a requested backend is not present on this machine.</summary>
public sealed class DeviceNotFoundException : Exception
{
    /// <summary>Creates the exception.</summary>
    public DeviceNotFoundException(string message) : base(message) { }

    /// <summary>Creates the exception.</summary>
    public DeviceNotFoundException() { }

    /// <summary>Creates the exception.</summary>
    public DeviceNotFoundException(string message, Exception innerException) : base(message, innerException) { }
}

/// <summary>
/// A place where tensors live and ops run: the managed SIMD CPU path or an ILGPU accelerator.
/// A device owns its accelerator and the kernels loaded on it; tensors it allocates must be
/// disposed before it is.
/// </summary>
public abstract class Device : IDisposable
{
    /// <summary>The environment variable read by <see cref="Open(string?)"/> when no name is given.</summary>
    public const string EnvironmentVariable = "HEADLIGHT_DEVICE";

    /// <summary>The names <see cref="Open(string?)"/> accepts.</summary>
    public static readonly ReadOnlyCollection<string> Names =
        new(["auto", "cuda", "opencl", "cpu", "ilgpu-cpu"]);

    private int disposed;
    private long allocatedBytes;
    private long liveTensors;

    /// <summary>Creates a device.</summary>
    private protected Device(string name, string description)
    {
        Name = name;
        Description = description;
    }

    /// <summary>The backend this device runs on.</summary>
    public abstract DeviceKind Kind { get; }

    /// <summary>The name it was opened with (<c>cpu</c>, <c>ilgpu-cpu</c>, <c>opencl</c>, <c>cuda</c>).</summary>
    public string Name { get; }

    /// <summary>The hardware, as the driver reports it.</summary>
    public string Description { get; }

    /// <summary>True once <see cref="Dispose()"/> has run.</summary>
    public bool IsDisposed => Volatile.Read(ref disposed) != 0;

    /// <summary>
    /// Bytes held right now by tensors allocated on this device and not yet disposed (views count
    /// nothing). Lets a service check that a workload gives back all it took; ILGPU's own pools and the
    /// loaded kernels are not included.
    /// </summary>
    public long AllocatedBytes => Interlocked.Read(ref allocatedBytes);

    /// <summary>The number of tensors allocated on this device and not yet disposed.</summary>
    public long LiveTensors => Interlocked.Read(ref liveTensors);

    /// <summary>Allocates an uninitialised float tensor of the given shape on this device.</summary>
    public Tensor<float> Allocate(params int[] shape) => Allocate<float>(shape);

    /// <summary>Allocates an uninitialised tensor of the given shape on this device.</summary>
    /// <exception cref="ArgumentException">A dimension is negative or the element count overflows.</exception>
    public Tensor<T> Allocate<T>(params int[] shape)
        where T : unmanaged
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var checkedShape = TensorShape.Create(shape, nameof(Allocate));
        var storage = CreateStorage<T>(checkedShape.ElementCount);
        long bytes = checkedShape.ElementCount * Unsafe.SizeOf<T>();
        Interlocked.Add(ref allocatedBytes, bytes);
        Interlocked.Increment(ref liveTensors);
        storage.Released = () =>
        {
            Interlocked.Add(ref allocatedBytes, -bytes);
            Interlocked.Decrement(ref liveTensors);
        };
        return new Tensor<T>(this, storage, 0, checkedShape, owner: true);
    }

    /// <summary>Allocates a tensor and copies <paramref name="data"/> into it.</summary>
    public Tensor<T> FromHost<T>(ReadOnlySpan<T> data, params int[] shape)
        where T : unmanaged
    {
        var tensor = Allocate<T>(shape);
        try
        {
            tensor.CopyFrom(data);
        }
        catch
        {
            tensor.Dispose();
            throw;
        }

        return tensor;
    }

    /// <summary>Waits until every op queued on this device has finished.</summary>
    public abstract void Synchronize();

    internal abstract DeviceStorage<T> CreateStorage<T>(long length)
        where T : unmanaged;

    /// <summary>Runs the ops on this device: the one seam between an op's validation and its backend code.</summary>
    internal abstract Backend Backend { get; }

    /// <summary>
    /// Opens a device by name: <c>auto</c> (CUDA, then an OpenCL GPU, then <c>cpu</c>), <c>cuda</c>,
    /// <c>opencl</c>, <c>cpu</c> (managed SIMD) or <c>ilgpu-cpu</c>. With no name, reads
    /// <see cref="EnvironmentVariable"/>, else <c>auto</c>. A name may carry an index, <c>cuda:1</c>.
    /// </summary>
    /// <exception cref="DeviceNotFoundException">The backend is not present; the message lists what was found.</exception>
    /// <exception cref="ArgumentException">The name is not one of <see cref="Names"/>.</exception>
    public static Device Open(string? name = null)
    {
        name ??= Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(name))
        {
            name = "auto";
        }

        var (baseName, index) = ParseName(name.Trim().ToLowerInvariant());
        return baseName switch
        {
            "cpu" => new CpuDevice(),
            "auto" => OpenAuto(),
            "cuda" => IlgpuDevice.Open(DeviceKind.Cuda, index),
            "opencl" => IlgpuDevice.Open(DeviceKind.OpenCL, index),
            "ilgpu-cpu" => IlgpuDevice.Open(DeviceKind.IlgpuCpu, index),
            _ => throw new ArgumentException(
                $"Unknown device '{name}'. Expected one of: {string.Join(", ", Names)} (optionally with ':index').",
                nameof(name)),
        };
    }

    /// <summary>Lists every device present on this machine, in the order <c>auto</c> prefers them.</summary>
    public static IReadOnlyList<DeviceInfo> List()
    {
        var list = new List<DeviceInfo>();
        list.AddRange(IlgpuDevice.ListDevices(DeviceKind.Cuda));
        list.AddRange(IlgpuDevice.ListDevices(DeviceKind.OpenCL));
        list.Add(CpuDevice.Describe());
        list.AddRange(IlgpuDevice.ListDevices(DeviceKind.IlgpuCpu));
        return list;
    }

    private static Device OpenAuto()
    {
        if (IlgpuDevice.ListDevices(DeviceKind.Cuda).Count > 0)
        {
            return IlgpuDevice.Open(DeviceKind.Cuda, 0);
        }

        var openClGpu = IlgpuDevice.ListDevices(DeviceKind.OpenCL)
            .Select((info, i) => (info, i))
            .FirstOrDefault(p => p.info.Properties.TryGetValue("type", out var t) && t == "GPU");
        if (openClGpu.info is not null)
        {
            return IlgpuDevice.Open(DeviceKind.OpenCL, openClGpu.i);
        }

        return new CpuDevice();
    }

    private static (string Name, int Index) ParseName(string name)
    {
        int colon = name.IndexOf(':', StringComparison.Ordinal);
        if (colon < 0)
        {
            return (name, 0);
        }

        if (!int.TryParse(name.AsSpan(colon + 1), out int index) || index < 0)
        {
            throw new ArgumentException($"Device name '{name}': the index after ':' must be a non-negative integer.", nameof(name));
        }

        return (name[..colon], index);
    }

    /// <summary>Releases the device and everything loaded on it.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref disposed, 1) == 0)
        {
            Dispose(true);
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>Releases resources.</summary>
    protected virtual void Dispose(bool disposing) { }

    /// <inheritdoc />
    public override string ToString() => $"{Name} ({Description})";
}
