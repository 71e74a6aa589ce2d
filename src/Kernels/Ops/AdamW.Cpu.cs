namespace Headlight.Kernels;

/// <summary>AdamW on the managed backend: chunks over the device's workers.</summary>
internal sealed partial class CpuBackend
{
    internal override unsafe void AdamWStep(Tensor<float> parameter, Tensor<float> gradient, Tensor<float> m, Tensor<float> v,
        Tensor<float>? gradientScale, AdamW.Parameters p)
    {
        int n = (int)parameter.Length;
        float g = gradientScale is null ? 1f : gradientScale.HostSpan[0];
        fixed (float* pp = parameter.HostSpan, pg = gradient.HostSpan, pm = m.HostSpan, pv = v.HostSpan)
        {
            var job = new AdamW.HostJob { Parameter = pp, Gradient = pg, M = pm, V = pv, Length = n, GradientScale = g, P = p };
            Workers.Run(ref job, (n + AdamW.Chunk - 1) / AdamW.Chunk);
        }
    }
}

/// <summary>AdamW's host code.</summary>
public static partial class AdamW
{
    internal const int Chunk = 1 << 14;

    /// <summary>One chunk of <see cref="Chunk"/> elements per item.</summary>
    internal unsafe struct HostJob : ICpuJob
    {
        public float* Parameter;
        public float* Gradient;
        public float* M;
        public float* V;
        public int Length;
        public float GradientScale;
        public Parameters P;

        public readonly void Execute(int item)
        {
            int end = Math.Min(Length, (item + 1) * Chunk);
            for (int i = item * Chunk; i < end; i++)
            {
                Update(ref Parameter[i], Gradient[i] * GradientScale, ref M[i], ref V[i], P);
            }
        }
    }

    /// <summary>One element's update; usable inside ILGPU kernels.</summary>
    internal static void Update(ref float parameter, float g, ref float m, ref float v, Parameters p)
    {
        float mNew = (p.Beta1 * m) + ((1f - p.Beta1) * g);
        float vNew = (p.Beta2 * v) + ((1f - p.Beta2) * g * g);
        m = mNew;
        v = vNew;
        parameter = (parameter * p.Decay) - (p.StepSize * mNew / ((ILGPU.Algorithms.XMath.Sqrt(vNew) * p.InverseRootCorrection) + p.Epsilon));
    }
}
