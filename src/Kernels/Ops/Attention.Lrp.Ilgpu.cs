using ILGPU;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>Attention's LRP on ILGPU.</summary>
internal sealed partial class IlgpuBackend
{
    internal override void AttentionProbabilityGradient(Tensor<float> v, Tensor<float> dOutput, Tensor<int>? mask, Tensor<float> dProbabilities, Attention.Layout layout, int n)
    {
        using var launch = Launch("Attention.ProbabilityGradient", static acc =>
            acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, Attention.Layout>(Attention.ProbabilityGradientKernel));
        var maskView = Attention.ViewOr(mask, dProbabilities.View.Cast<int>());
        launch.Kernel(launch.Stream, n, v.View, dOutput.View, maskView, dProbabilities.View, layout);
    }
}

/// <summary>Attention's LRP kernels.</summary>
public static partial class Attention
{
    // One thread per entry: v, dO [batch, seq, width] -> dP [batch, heads, query, key]
    internal static void ProbabilityGradientKernel(Index1D index, ArrayView<float> v, ArrayView<float> dO, ArrayView<int> mask, ArrayView<float> dP, Layout p)
    {
        int j = index % p.KeyLength;
        int row = index / p.KeyLength; // (b·heads + h)·query + i
        int i = row % p.QueryLength;
        int bh = row / p.QueryLength;
        int h = bh % p.Heads;
        int b = bh / p.Heads;
        float value = 0f;
        bool visible = (p.HasMask == 0 || mask[(b * p.KeyLength) + j] != 0) && (p.Causal == 0 || j <= i + p.CausalOffset);
        if (visible)
        {
            int dim = p.HeadDim;
            int gBase = (((b * p.QueryLength) + i) * p.GStride) + p.GColumn + (h * dim);
            int vBase = (((b * p.KeyLength) + j) * p.VStride) + p.VColumn + ((h / p.Group) * dim);
            for (int d = 0; d < dim; d++)
            {
                value += dO[gBase + d] * v[vBase + d];
            }
        }

        dP[index] = value;
    }
}
