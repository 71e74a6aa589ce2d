using System.Collections.Concurrent;
using System.Globalization;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace Headlight.Kernels;

/// <summary>
/// A device backed by an ILGPU accelerator (CUDA, OpenCL or ILGPU's CPU simulator). It owns its
/// ILGPU context and accelerator, and keeps every kernel it has loaded so that each kernel is
/// compiled once per accelerator.
/// </summary>
public sealed class IlgpuDevice : Device
{
    // ILGPU's kernels use groups of up to 256 threads; its default CPU device allows only 16.
    private const int RequiredGroupSize = 256;

    private static readonly ConcurrentDictionary<DeviceKind, IReadOnlyList<DeviceInfo>> Listings = new();

    // ILGPU's first OpenCL device scan is not thread-safe: two contexts created at once can leave
    // one of them with no OpenCL device (seen with PoCL 6), so contexts are created one at a time.
    private static readonly Lock ContextGate = new();

    private readonly Context context;
    private readonly IlgpuBackend backend;

    static IlgpuDevice() => IlgpuLibraryResolver.Register();

    private IlgpuDevice(DeviceKind kind, Context context, Accelerator accelerator, string name)
        : base(name, accelerator.Name)
    {
        Kind = kind;
        this.context = context;
        backend = new IlgpuBackend(accelerator);
    }

    /// <inheritdoc />
    public override DeviceKind Kind { get; }

    /// <summary>The ILGPU accelerator; owned by this device.</summary>
    internal Accelerator Accelerator => backend.Accelerator;

    /// <summary>Threads that run in lock step (1 when the backend reports none, as PoCL does).</summary>
    public int WarpSize => backend.WarpSize;

    /// <summary>The largest group this accelerator runs.</summary>
    public int MaxGroupSize => backend.MaxGroupSize;

    internal override Backend Backend => backend;

    /// <inheritdoc />
    /// <exception cref="ArgumentException">An op queued since the last download or synchronisation found an index out of range on the device.</exception>
    public override void Synchronize() => backend.Synchronize();

    internal override DeviceStorage<T> CreateStorage<T>(long length)
    {
        return new AcceleratorStorage<T>(Accelerator.Allocate1D<T>(length));
    }

    internal static Device Open(DeviceKind kind, int index)
    {
        var context = CreateContext(kind);
        try
        {
            var candidates = Candidates(context, kind);
            if (candidates.Count == 0)
            {
                throw new DeviceNotFoundException(
                    $"No {BackendName(kind)} device was found. {DescribeAvailable()}");
            }

            if (index >= candidates.Count)
            {
                throw new DeviceNotFoundException(
                    $"{BackendName(kind)} device index {index} was asked for, but only {candidates.Count} exist. {DescribeAvailable()}");
            }

            var accelerator = candidates[index].CreateAccelerator(context);
            string name = index == 0 ? BackendName(kind) : $"{BackendName(kind)}:{index}";
            return new IlgpuDevice(kind, context, accelerator, name);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    internal static IReadOnlyList<DeviceInfo> ListDevices(DeviceKind kind)
    {
        return Listings.GetOrAdd(kind, static k =>
        {
            try
            {
                using var context = CreateContext(k);
                return Candidates(context, k)
                    .Select((d, i) => Describe(k, d, i))
                    .ToList();
            }
            catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or EntryPointNotFoundException or InvalidOperationException or NotSupportedException)
            {
                // A missing or broken driver means no device of this kind.
                return [];
            }
        });
    }

    private static string DescribeAvailable()
    {
        var all = List();
        return "Available: " + string.Join("; ", all.Select(d => $"{d.Name} ({d.Description})")) + ".";
    }

    private static string BackendName(DeviceKind kind) => kind switch
    {
        DeviceKind.Cuda => "cuda",
        DeviceKind.OpenCL => "opencl",
        DeviceKind.IlgpuCpu => "ilgpu-cpu",
        _ => "cpu",
    };

    private static Context CreateContext(DeviceKind kind)
    {
        lock (ContextGate)
        {
            return Context.Create(builder =>
            {
                builder.Math(MathMode.Default).EnableAlgorithms();
                switch (kind)
                {
                    case DeviceKind.Cuda:
                        builder.Cuda();
                        break;
                    case DeviceKind.OpenCL:
                        builder.OpenCL();
                        break;
                    default:
                        builder.CPU(_ => true);
                        break;
                }
            });
        }
    }

    private static List<ILGPU.Runtime.Device> Candidates(Context context, DeviceKind kind)
    {
        var type = kind switch
        {
            DeviceKind.Cuda => AcceleratorType.Cuda,
            DeviceKind.OpenCL => AcceleratorType.OpenCL,
            _ => AcceleratorType.CPU,
        };
        var devices = context.Devices.Where(d => d.AcceleratorType == type);
        if (kind == DeviceKind.IlgpuCpu)
        {
            // Prefer the smallest simulated device that still runs 256-thread groups.
            devices = devices
                .Where(d => d.MaxNumThreadsPerGroup >= RequiredGroupSize)
                .OrderBy(d => d.MaxNumThreadsPerGroup)
                .ThenBy(d => d.WarpSize);
        }

        return devices.ToList();
    }

    private static DeviceInfo Describe(DeviceKind kind, ILGPU.Runtime.Device device, int index)
    {
        var props = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["warp_size"] = device.WarpSize.ToString(CultureInfo.InvariantCulture),
            ["max_group_size"] = device.MaxNumThreadsPerGroup.ToString(CultureInfo.InvariantCulture),
            ["max_shared_memory_per_group"] = device.MaxSharedMemoryPerGroup.ToString(CultureInfo.InvariantCulture),
            ["multiprocessors"] = device.NumMultiprocessors.ToString(CultureInfo.InvariantCulture),
        };
        switch (device)
        {
            case CudaDevice cuda:
                props["type"] = "GPU";
                props["architecture"] = cuda.Architecture?.ToString() ?? "unknown";
                props["driver"] = cuda.DriverVersion.ToString();
                break;
            case CLDevice cl:
                props["type"] = cl.DeviceType.ToString();
                props["platform"] = cl.PlatformName;
                props["opencl_c"] = cl.CVersion.ToString();
                break;
            default:
                props["type"] = "CPU (simulated)";
                break;
        }

        string name = BackendName(kind) + (index == 0 ? string.Empty : ":" + index.ToString(CultureInfo.InvariantCulture));
        return new DeviceInfo(name, kind, device.Name, device.MemorySize, props);
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            using (backend.Enter())
            {
                Accelerator.Dispose();
                context.Dispose();
            }
        }
    }
}
