using System.Runtime.Intrinsics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>Attention's LRP on the managed SIMD backend.</summary>
internal sealed partial class CpuBackend
{
    internal override void AttentionProbabilityGradient(Tensor<float> v, Tensor<float> dOutput, Tensor<int>? mask, Tensor<float> dProbabilities, Attention.Layout layout, int n)
        => Attention.ProbabilityGradientManaged(Workers, v, dOutput, mask, dProbabilities, layout, n);
}

/// <summary>Attention's LRP host code: the rules' signals row by row, and dP per (batch, head).</summary>
public static partial class Attention
{
    internal static unsafe void ProbabilityGradientManaged(CpuWorkers workers, Tensor<float> tv, Tensor<float> tdO, Tensor<int>? tmask, Tensor<float> tdP, Layout p, int n)
    {
        int pairs = p.Batch * p.Heads;
        fixed (float* v = tv.HostSpan, dO = tdO.HostSpan, dP = tdP.HostSpan)
        fixed (int* mask = tmask is null ? default : tmask.HostSpan)
        {
            var job = new ProbabilityGradientJob { V = v, DOutput = dO, Mask = tmask is null ? null : mask, DP = dP, P = p };
            if (pairs == 1 || (long)n * p.HeadDim < (1 << 16))
            {
                for (int bh = 0; bh < pairs; bh++)
                {
                    job.Execute(bh);
                }
            }
            else
            {
                workers.Run(ref job, pairs);
            }
        }
    }

    /// <summary><see cref="ProbabilityGradient"/>'s operands as pinned pointers; item = batch·heads + head.</summary>
    private unsafe struct ProbabilityGradientJob : ICpuJob
    {
        public float* V;
        public float* DOutput;
        public int* Mask;
        public float* DP;
        public Layout P;

        public readonly void Execute(int item) => ProbabilityGradientItem(this, item);
    }

    // g [dim] -> padded [dim]: OutputSignal lane by lane.
    private static void OutputSignalRow(ReadOnlySpan<float> g, ReadOnlySpan<float> o, Span<float> padded, Layout p)
    {
        if (p.Rule == RuleGradient)
        {
            g.CopyTo(padded);
            return;
        }

        for (int d = 0; d < g.Length; d++)
        {
            padded[d] = OutputSignal(g[d], o[d], p);
        }
    }

    /// <summary><c>ds ⊙= S/(2S + ε·sign S)</c> over <paramref name="n"/> entries (a multiple of 16); masked scores (−∞) give 0.</summary>
    private static unsafe void ScoreShareRow(float* ds, float* scores, float epsilon, int n)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var plus = Vector512.Create(epsilon);
            var minus = Vector512.Create(-epsilon);
            var two = Vector512.Create(2f);
            for (; j < n; j += 16)
            {
                var s = Vector512.Load(scores + j);
                var e = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(s, Vector512<float>.Zero), plus, minus);
                var share = Vector512.ConditionalSelect(Vector512.Equals(s, Vector512.Create(float.NegativeInfinity)), Vector512<float>.Zero, s / ((two * s) + e));
                (Vector512.Load(ds + j) * share).Store(ds + j);
            }
        }

        for (; j < n; j++)
        {
            ds[j] = float.IsNegativeInfinity(scores[j]) ? 0f : Elementwise.Share(ds[j], scores[j], epsilon, 2f);
        }
    }

    // One (batch, head) pair on the host: v, dO [batch, seq, width] -> dP [batch, heads, query, key]; head h reads value head h / group
    private static unsafe void ProbabilityGradientItem(in ProbabilityGradientJob job, int bh)
    {
        var p = job.P;
        int b = bh / p.Heads;
        int h = bh % p.Heads;
        int kvHead = h / p.Group;
        int dim = p.HeadDim;
        var ms = job.Mask is null ? default : new ReadOnlySpan<int>(job.Mask + ((long)b * p.KeyLength), p.KeyLength);
        float* output = job.DP + ((long)bh * p.QueryLength * p.KeyLength);
        for (int i = 0; i < p.QueryLength; i++)
        {
            var g = new ReadOnlySpan<float>(job.DOutput + ((((long)b * p.QueryLength) + i) * p.GStride) + p.GColumn + (h * dim), dim);
            var row = new Span<float>(output + ((long)i * p.KeyLength), p.KeyLength);
            int visible = VisibleKeys(p, i, 0, p.KeyLength);
            for (int j = 0; j < p.KeyLength; j++)
            {
                bool keep = j < visible && (ms.IsEmpty || ms[j] != 0);
                row[j] = keep ? TensorPrimitives.Dot(g, new ReadOnlySpan<float>(job.V + ((((long)b * p.KeyLength) + j) * p.VStride) + p.VColumn + (kvHead * dim), dim)) : 0f;
            }
        }
    }
}
