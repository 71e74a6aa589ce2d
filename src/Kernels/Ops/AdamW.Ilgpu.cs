using ILGPU;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>AdamW on ILGPU: one thread per element.</summary>
internal sealed partial class IlgpuBackend
{
    internal override void AdamWStep(Tensor<float> parameter, Tensor<float> gradient, Tensor<float> m, Tensor<float> v,
        Tensor<float>? gradientScale, AdamW.Parameters p)
    {
        using var launch = Launch("AdamW.Step", static acc => acc.LoadAutoGroupedKernel<
            Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, AdamW.Parameters>(AdamW.StepKernel));

        // Without a scale the kernel never reads it; the gradient's view stands in.
        launch.Kernel(launch.Stream, (int)parameter.Length, parameter.View, gradient.View, m.View, v.View,
            gradientScale?.View ?? gradient.View, gradientScale is null ? 0 : 1, p);
    }
}

/// <summary>AdamW's ILGPU kernel.</summary>
public static partial class AdamW
{
    // parameter, gradient, m, v [n] (in place); gradientScale [1] when scaled
    internal static void StepKernel(Index1D i, ArrayView<float> parameter, ArrayView<float> gradient, ArrayView<float> m, ArrayView<float> v,
        ArrayView<float> gradientScale, int scaled, Parameters p)
    {
        float g = gradient[i];
        if (scaled != 0)
        {
            g *= gradientScale[0];
        }

        float pi = parameter[i];
        float mi = m[i];
        float vi = v[i];
        Update(ref pi, g, ref mi, ref vi, p);
        parameter[i] = pi;
        m[i] = mi;
        v[i] = vi;
    }
}
