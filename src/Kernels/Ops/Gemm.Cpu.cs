using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Headlight.Kernels;

/// <summary>GEMM on the managed SIMD backend: <see cref="GemmCpu"/>'s packed, cache-blocked kernels on the device's workers.</summary>
internal sealed partial class CpuBackend
{
    internal override void GemmRun(Tensor<float> a, Tensor<float> b, Tensor<float> c, Tensor<float>? bias, Tensor<float>? pre,
        GemmDims d, GemmIsa isa, PackedWeight? packed, GemmKernel kernel)
    {
        GemmCpu.Run(Workers, a.HostSpan, b.HostSpan, c.HostSpan,
            bias is null ? default : bias.HostSpan, pre is null ? default : pre.HostSpan, d, isa, packed);
        GC.KeepAlive(packed); // its pinned strips were read through a pointer
    }

    internal override void GemmPrepack(PackedWeight weight) => weight.PackStrips();
}

/// <summary>The CPU's packed copy of a weight.</summary>
public sealed unsafe partial class PackedWeight
{
    // The strips of op(b) for the micro-kernel of Isa, packed once into pinned, 64-byte aligned memory owned here.
    internal void PackStrips()
    {
        if (K > 0 && N > 0)
        {
            int nr = GemmCpu.TileOf(Isa).Nr;
            long length = (long)K * ((N + nr - 1) / nr * nr);
            data = GC.AllocateUninitializedArray<float>(checked((int)(length + 16)), pinned: true);
            nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(data));
            Strips = (float*)((address + 63) & ~(nint)63);
            GemmCpu.PackWhole(Source.HostSpan, K, N, Transposed, Isa, Strips);
        }
    }
}
