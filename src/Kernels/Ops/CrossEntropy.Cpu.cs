using System.Numerics.Tensors;

namespace Headlight.Kernels;

/// <summary>The cross-entropy's row kernel on the managed backend: TensorPrimitives per row, rows over the device's workers.</summary>
internal sealed partial class CpuBackend
{
    internal override (int Row, int Value)? CrossEntropyBadTarget(Tensor<int> targets, int vocab)
    {
        var t = targets.HostSpan;
        for (int r = 0; r < t.Length; r++)
        {
            if (t[r] < -1 || t[r] >= vocab)
            {
                return (r, t[r]);
            }
        }

        return null;
    }

    internal override unsafe void CrossEntropyRows(Tensor<float> logits, Tensor<int> targets, Tensor<float> loss, int rows, int vocab, float scale, bool gradient)
    {
        fixed (float* pl = logits.HostSpan, ploss = loss.HostSpan)
        fixed (int* pt = targets.HostSpan)
        {
            var job = new CrossEntropy.RowJob { Logits = pl, Targets = pt, Loss = ploss, Vocab = vocab, Scale = scale, Gradient = gradient };
            Workers.Run(ref job, rows);
        }
    }
}

/// <summary>The cross-entropy's host row code.</summary>
public static partial class CrossEntropy
{
    /// <summary>One row of logits per item: loss, and the logits replaced by the scaled gradient.</summary>
    internal unsafe struct RowJob : ICpuJob
    {
        public float* Logits;
        public int* Targets;
        public float* Loss;
        public int Vocab;
        public float Scale;
        public bool Gradient;

        public readonly void Execute(int item)
        {
            var row = new Span<float>(Logits + ((long)item * Vocab), Vocab); // [vocab]
            int target = Targets[item];
            bool counted = target >= 0 && target < Vocab;
            float targetLogit = counted ? row[target] : 0f;

            // The row becomes exp(l − max) in place: no exp of a large value, and the scratch is ours to overwrite.
            float max = TensorPrimitives.Max((ReadOnlySpan<float>)row);
            TensorPrimitives.Subtract(row, max, row);
            TensorPrimitives.Exp(row, row);
            float sum = TensorPrimitives.Sum((ReadOnlySpan<float>)row);

            // logsumexp − logit[t] = log Σ exp(l − max) + (max − logit[t])
            Loss[item] = counted ? MathF.Log(sum) + (max - targetLogit) : 0f;
            if (!Gradient)
            {
                return;
            }

            if (!counted)
            {
                row.Clear();
                return;
            }

            TensorPrimitives.Multiply(row, Scale / sum, row);
            row[target] -= Scale;
        }
    }
}
