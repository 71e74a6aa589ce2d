namespace Headlight.Kernels;

/// <summary>
/// The managed SIMD backend: each op's <c>X.Cpu.cs</c> implements its entry points on host spans, with
/// the parallel part on <see cref="Workers"/>.
/// </summary>
internal sealed partial class CpuBackend : Backend
{
    internal CpuBackend(CpuWorkers workers) => Workers = workers;

    /// <summary>The threads every op's parallel part runs on.</summary>
    internal CpuWorkers Workers { get; }

    internal override CpuWorkers? HostWorkers => Workers;

    internal override bool PacksWeights => true;

    internal override void Upload<T>(Tensor<T> destination, ReadOnlySpan<T> source) => source.CopyTo(destination.HostSpan);

    internal override void Download<T>(Tensor<T> source, Span<T> destination) => source.HostSpan.CopyTo(destination);

    internal override void Copy<T>(Tensor<T> source, Tensor<T> destination) => source.HostSpan.CopyTo(destination.HostSpan);

    internal override void Fill<T>(Tensor<T> tensor, T value) => tensor.HostSpan.Fill(value);
}
