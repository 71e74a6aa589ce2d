using Headlight.Models.Loading;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Models;

/// <summary>Sentence embeddings from token states, as sentence-transformers defines each pooling mode.</summary>
internal static class SentencePooling
{
    // hidden [batch, seq, d], mask [batch, seq] -> [batch][d]
    public static float[][] Pool(ReadOnlySpan<float> hidden, ReadOnlySpan<int> mask, int batch, int seq, int d, PoolingMode mode, bool normalize)
    {
        var result = new float[batch][];
        for (int b = 0; b < batch; b++)
        {
            var pooled = new float[d];
            int count = 0;
            int last = 0;
            for (int t = 0; t < seq; t++)
            {
                if (mask[(b * seq) + t] != 0)
                {
                    count++;
                    last = t;
                }
            }

            var row = hidden.Slice(b * seq * d, seq * d);
            switch (mode)
            {
                case PoolingMode.Cls:
                    row[..d].CopyTo(pooled);
                    break;
                case PoolingMode.LastToken:
                    row.Slice(last * d, d).CopyTo(pooled);
                    break;
                case PoolingMode.Max:
                    pooled.AsSpan().Fill(float.NegativeInfinity);
                    for (int t = 0; t < seq; t++)
                    {
                        if (mask[(b * seq) + t] != 0)
                        {
                            TensorPrimitives.Max(pooled, row.Slice(t * d, d), pooled);
                        }
                    }

                    break;
                default:
                    for (int t = 0; t < seq; t++)
                    {
                        if (mask[(b * seq) + t] != 0)
                        {
                            TensorPrimitives.Add(pooled, row.Slice(t * d, d), pooled);
                        }
                    }

                    float divisor = mode == PoolingMode.MeanSqrtLength ? MathF.Sqrt(Math.Max(count, 1)) : Math.Max(count, 1);
                    TensorPrimitives.Divide(pooled, divisor, pooled);
                    break;
            }

            if (normalize)
            {
                float norm = TensorPrimitives.Norm(pooled);
                if (norm > 0)
                {
                    TensorPrimitives.Divide(pooled, norm, pooled);
                }
            }

            result[b] = pooled;
        }

        return result;
    }
}
