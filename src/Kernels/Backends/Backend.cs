namespace Headlight.Kernels;

/// <summary>
/// Runs the ops on one kind of device. Each op declares the entry points it needs as abstract members of
/// this class in its own file (<c>Ops/X.cs</c>) and implements them in <c>Ops/X.Cpu.cs</c> (<see cref="CpuBackend"/>)
/// and <c>Ops/X.Ilgpu.cs</c> (<see cref="IlgpuBackend"/>), so a backend that lacks an op does not compile.
/// Operands are validated by the op before its entry point is called.
/// </summary>
internal abstract partial class Backend
{
    /// <summary>
    /// The host threads this backend runs its parallel parts on, or null where ops run on an accelerator;
    /// host code that prepares data for the device (weight packing, random weights) uses them when present.
    /// </summary>
    internal virtual CpuWorkers? HostWorkers => null;

    /// <summary>True where GEMMs read weights packed once for the host kernels (<see cref="Gemm.Prepack"/>).</summary>
    internal virtual bool PacksWeights => false;

    /// <summary>Copies host data into <paramref name="destination"/> (same element count, checked by the caller).</summary>
    internal abstract void Upload<T>(Tensor<T> destination, ReadOnlySpan<T> source)
        where T : unmanaged;

    /// <summary>Copies <paramref name="source"/> into host memory and waits for the copy.</summary>
    internal abstract void Download<T>(Tensor<T> source, Span<T> destination)
        where T : unmanaged;

    /// <summary>Copies one tensor into another of the same element count on this device.</summary>
    internal abstract void Copy<T>(Tensor<T> source, Tensor<T> destination)
        where T : unmanaged;

    /// <summary>Sets every element of <paramref name="tensor"/> to <paramref name="value"/>.</summary>
    internal abstract void Fill<T>(Tensor<T> tensor, T value)
        where T : unmanaged;
}
