using ILGPU;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>Philox on ILGPU: one thread per block of four elements.</summary>
internal sealed partial class IlgpuBackend
{
    internal override void PhiloxFill(Tensor<uint> output, ulong seed, ulong stream, ulong firstBlock)
    {
        int n = (int)output.Length;
        using var launch = Launch("Philox.Fill", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<uint>, int, ulong, ulong, ulong>(Philox.FillKernel));
        launch.Kernel(launch.Stream, Philox.BlockCount(n), output.View, n, seed, stream, firstBlock);
    }

    internal override void PhiloxUniform(Tensor<float> output, ulong seed, ulong stream, ulong firstBlock)
    {
        int n = (int)output.Length;
        using var launch = Launch("Philox.Uniform", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, int, ulong, ulong, ulong>(Philox.UniformKernel));
        launch.Kernel(launch.Stream, Philox.BlockCount(n), output.View, n, seed, stream, firstBlock);
    }
}

/// <summary>Philox's ILGPU kernels.</summary>
public static partial class Philox
{
    // One thread per block of four words: output [n]
    internal static void FillKernel(Index1D block, ArrayView<uint> output, int n, ulong seed, ulong stream, ulong firstBlock)
    {
        var words = BlockAt(seed, stream, firstBlock + (ulong)(int)block);
        int i = 4 * block;
        output[i] = words.X0;
        if (i + 1 < n)
        {
            output[i + 1] = words.X1;
        }

        if (i + 2 < n)
        {
            output[i + 2] = words.X2;
        }

        if (i + 3 < n)
        {
            output[i + 3] = words.X3;
        }
    }

    // One thread per block of four values: output [n] in [0, 1)
    internal static void UniformKernel(Index1D block, ArrayView<float> output, int n, ulong seed, ulong stream, ulong firstBlock)
    {
        var words = BlockAt(seed, stream, firstBlock + (ulong)(int)block);
        int i = 4 * block;
        output[i] = ToUnit(words.X0);
        if (i + 1 < n)
        {
            output[i + 1] = ToUnit(words.X1);
        }

        if (i + 2 < n)
        {
            output[i + 2] = ToUnit(words.X2);
        }

        if (i + 3 < n)
        {
            output[i + 3] = ToUnit(words.X3);
        }
    }
}
