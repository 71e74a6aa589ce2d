using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="Softmax.Relevance"/>, AttnLRP's softmax rule on relevance:
/// <c>R_x = s ⊙ (R_y − y·Σ R_y)</c> at the scores <c>s = scale·x</c> over the allowed columns, 0 where masked.
/// </summary>
public sealed class SoftmaxLrpCases : IOpCaseSource
{
    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int rows in TestData.Sizes)
        {
            foreach (int cols in new[] { 1, 17, 130 })
            {
                bool tiny = rows <= 17 && cols <= 17;
                yield return new OpCase("Softmax.Relevance", $"[2, {rows}, {cols}]", tiny, d => Taylor(d, 2, rows, cols, masked: false, causal: false, inPlace: false));
            }
        }

        foreach (bool causal in new[] { false, true })
        {
            yield return new OpCase("Softmax.Relevance", $"[3, 2, 17, 17] mask{(causal ? " causal" : "")}", true, d => Taylor(d, 6, 17, 17, masked: true, causal, inPlace: false));
            yield return new OpCase("Softmax.Relevance", $"[3, 2, 65, 130] mask{(causal ? " causal" : "")}", false, d => Taylor(d, 6, 65, 130, masked: true, causal, inPlace: false));
        }

        yield return new OpCase("Softmax.Relevance", "[2, 17, 17] result=relevance", true, d => Taylor(d, 2, 17, 17, masked: false, causal: true, inPlace: true));
    }

    private static void Taylor(Device device, int outer, int rows, int cols, bool masked, bool causal, bool inPlace)
    {
        const float scale = 0.7f;
        int batch = masked ? 3 : 1;
        float[] x = TestData.Normal(841, outer * rows * cols, 2f);
        float[] relevance = TestData.Normal(842, outer * rows * cols);
        int[]? mask = masked ? Enumerable.Range(0, batch * cols).Select(i => i % 5 == 3 ? 0 : 1).ToArray() : null;
        bool Allowed(int o, int i, int j) => (mask is null || mask[(o / (outer / batch) * cols) + j] != 0) && (!causal || j <= i + (cols - rows));

        // y: the masked softmax in float64, given to the op as float.
        var y = new float[x.Length];
        var expected = new double[x.Length];
        for (int o = 0; o < outer; o++)
        {
            for (int i = 0; i < rows; i++)
            {
                int start = ((o * rows) + i) * cols;
                var allowed = Enumerable.Range(0, cols).Where(j => Allowed(o, i, j)).ToArray();
                if (allowed.Length == 0)
                {
                    continue;
                }

                double max = allowed.Max(j => scale * (double)x[start + j]);
                double sum = allowed.Sum(j => Math.Exp((scale * (double)x[start + j]) - max));
                foreach (int j in allowed)
                {
                    y[start + j] = (float)(Math.Exp((scale * (double)x[start + j]) - max) / sum);
                }

                double total = allowed.Sum(j => (double)relevance[start + j]);
                foreach (int j in allowed)
                {
                    expected[start + j] = scale * (double)x[start + j] * (relevance[start + j] - (y[start + j] * total));
                }
            }
        }

        using var tx = device.FromHost<float>(x, outer, rows, cols);
        using var ty = device.FromHost<float>(y, outer, rows, cols);
        using var tr = device.FromHost<float>(relevance, outer, rows, cols);
        using var tm = mask is null ? null : device.FromHost<int>(mask, batch, cols);
        using var poisoned = TestData.Poisoned(device, outer, rows, cols);
        var result = inPlace ? tr : poisoned;
        Softmax.Relevance(tx, ty, tr, result, scale, tm, causal);
        Compare.Close(result.ToArray(), expected, Tolerances.Reduce, "R_x"); // y·ΣR sums up to 130 O(1) terms
    }
}
