using System.Buffers;
using System.Runtime.Intrinsics;

namespace Headlight.Kernels;

/// <summary>The gradient norm on the managed backend: fixed blocks over the device's workers, then the blocks in order.</summary>
internal sealed partial class CpuBackend
{
    internal override unsafe void GradientAccumulateSquares(Tensor<float> x, Tensor<float> sumOfSquares, int length)
    {
        // The blocks are fixed by the length alone, so the sum does not depend on the number of workers.
        int blocks = (length + GradientNorm.Block - 1) / GradientNorm.Block;
        double[] partials = ArrayPool<double>.Shared.Rent(blocks);
        try
        {
            fixed (float* px = x.HostSpan)
            fixed (double* pp = partials)
            {
                var job = new GradientNorm.SquaresJob { X = px, Partials = pp, Length = length };
                Workers.Run(ref job, blocks);
            }

            double total = 0;
            for (int b = 0; b < blocks; b++)
            {
                total += partials[b];
            }

            sumOfSquares.HostSpan[0] += (float)total;
        }
        finally
        {
            ArrayPool<double>.Shared.Return(partials);
        }
    }

    internal override void GradientClipFactor(Tensor<float> sumOfSquares, float maxNorm, Tensor<float> factor)
        => factor.HostSpan[0] = GradientNorm.Factor(sumOfSquares.HostSpan[0], maxNorm);
}

/// <summary>The gradient norm's host code.</summary>
public static partial class GradientNorm
{
    internal const int Block = 1 << 14;

    /// <summary>The sum of squares of one block of <see cref="Block"/> elements per item, in double.</summary>
    internal unsafe struct SquaresJob : ICpuJob
    {
        public float* X;
        public double* Partials;
        public int Length;

        public readonly void Execute(int item)
        {
            int start = item * Block;
            int end = Math.Min(Length, start + Block);
            int i = start;
            var low = Vector128<double>.Zero;
            var high = Vector128<double>.Zero;
            for (; i <= end - Vector128<float>.Count; i += Vector128<float>.Count)
            {
                var f = Vector128.Load(X + i);
                var a = Vector128.WidenLower(f);
                var b = Vector128.WidenUpper(f);
                low += a * a;
                high += b * b;
            }

            double sum = Vector128.Sum(low + high);
            for (; i < end; i++)
            {
                sum += (double)X[i] * X[i];
            }

            Partials[item] = sum;
        }
    }
}
