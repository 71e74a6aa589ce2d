using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>Rope on ILGPU: one grid-stride kernel over (token, head, pair or copied dimension); positions are clamped to the table.</summary>
internal sealed partial class IlgpuBackend
{
    // Devices do not download the positions: the kernel clamps them to [0, P − 1] instead.
    internal override void RopeCheckPositions(in OpArgs args, Tensor<int> positions, int tableRows)
    {
    }

    internal override void RopeApply(Tensor<float> src, Tensor<float> dst, Tensor<float>? z, Tensor<int> positions, Tensor<float> table,
        RopeLayout layout, RopeMode mode, float epsilon, bool accumulate)
    {
        int total = layout.Rows * layout.Heads * layout.ItemsPerHead;
        if (total == 0)
        {
            return;
        }

        int threads = GridStrideThreads(total);
        using var launch = Launch("Rope.Apply", static acc => acc.LoadAutoGroupedKernel<
            Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, RopeLayout, int, float, int, int, int>(Rope.ApplyKernel));
        // With nothing to rotate the table is not read (and may be empty): src stands in for it.
        var angles = layout.Half == 0 ? src.View : table.View;
        launch.Kernel(launch.Stream, threads, src.View, dst.View, (z ?? src).View, positions.View, angles, layout,
            (int)mode, epsilon, accumulate ? 1 : 0, total, threads);
    }
}

/// <summary>Rope's ILGPU kernel.</summary>
public static partial class Rope
{
    // src, z [tokens, width] -> dst [tokens, width′]; positions [tokens]; table [P, 2·half]. Item i = (token, head, k):
    // k < half rotates the pair (k, k + half), k ≥ half copies dimension k + half. dst may be exactly src's region.
    internal static void ApplyKernel(Index1D index, ArrayView<float> src, ArrayView<float> dst, ArrayView<float> z, ArrayView<int> positions,
        ArrayView<float> table, RopeLayout p, int mode, float epsilon, int accumulate, int total, int stride)
    {
        int perHead = p.ItemsPerHead;
        float sign = mode == (int)RopeMode.Forward ? 1f : -1f;
        for (int i = index; i < total; i += stride)
        {
            int rest = i / perHead;
            int k = i - (rest * perHead);
            int row = rest / p.Heads;
            int head = rest - (row * p.Heads);
            long x0 = ((long)row * p.InStride) + p.InColumn + (head * p.HeadDim);
            long y0 = ((long)row * p.OutStride) + p.OutColumn + (head * p.HeadDim);
            long z0 = ((long)row * p.ZStride) + p.ZColumn + (head * p.HeadDim);
            if (k < p.Half)
            {
                float a = src[x0 + k];
                float b = src[x0 + p.Half + k];
                if (mode == (int)RopeMode.Relevance)
                {
                    a *= Ratio(z[z0 + k], epsilon);
                    b *= Ratio(z[z0 + p.Half + k], epsilon);
                }

                int t = XMath.Clamp(positions[row], 0, p.Positions - 1);
                long c0 = (long)t * 2 * p.Half;
                float c = table[c0 + k];
                float s = table[c0 + p.Half + k] * sign;
                float y1 = (a * c) - (b * s);
                float y2 = (b * c) + (a * s);
                if (accumulate != 0)
                {
                    y1 += dst[y0 + k];
                    y2 += dst[y0 + p.Half + k];
                }

                dst[y0 + k] = y1;
                dst[y0 + p.Half + k] = y2;
            }
            else
            {
                int j = k + p.Half;
                float v = src[x0 + j];
                if (mode == (int)RopeMode.Relevance)
                {
                    v *= Ratio(z[z0 + j], epsilon);
                }

                dst[y0 + j] = accumulate != 0 ? dst[y0 + j] + v : v;
            }
        }
    }
}
