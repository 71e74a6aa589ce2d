using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="Gemm.Relevance"/>, the ε-rule through a linear layer, against its relevance messages
/// in float64: <c>R_a[r, j] = Σ_o a[r, j]·W[j, o]·R_c[r, o] / (c[r, o] + ε·sign c[r, o])</c> with <c>R_c = c ⊙ dc</c>.
/// </summary>
public sealed class GemmLrpCases : IOpCaseSource
{
    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int rows in TestData.Sizes)
        {
            foreach (var (k, n) in new[] { (1, 3), (17, 33), (65, 17), (130, 67) })
            {
                bool tiny = rows <= 17 && k <= 17 && n <= 33;
                foreach (bool transposeB in new[] { false, true })
                {
                    string shape = $"a [{rows}, {k}] b {(transposeB ? $"[{n}, {k}]ᵀ" : $"[{k}, {n}]")}";
                    yield return new OpCase("Gemm.Relevance", shape, tiny, d => Linear(d, [rows], k, n, transposeB, Mode.Plain));
                }
            }
        }

        yield return new OpCase("Gemm.Relevance+accumulate", "a [2, 5, 17] b [17, 33]", true, d => Linear(d, [2, 5], 17, 33, false, Mode.Accumulate));
        yield return new OpCase("Gemm.Relevance", "a [2, 5, 17] b [17, 33] scratch=dc", true, d => Linear(d, [2, 5], 17, 33, false, Mode.ScratchIsDc));
        yield return new OpCase("Gemm.Relevance", "a [128, 384] b [384, 1536] (MiniLM's MLP)", false, d => Linear(d, [128], 384, 1536, false, Mode.Plain));
    }

    private enum Mode
    {
        Plain,
        Accumulate,
        ScratchIsDc,
    }

    private static void Linear(Device device, int[] lead, int k, int n, bool transposeB, Mode mode)
    {
        const float epsilon = 0.05f;
        int rows = lead.Aggregate(1, (x, y) => x * y);
        float[] a = TestData.Normal(811, rows * k);
        float[] w = TestData.Normal(812, k * n, 1f / MathF.Sqrt(k)); // W[j, o] at j·n + o
        float[] bias = TestData.Normal(813, n, 0.1f);
        float[] dc = TestData.Normal(814, rows * n);
        float[] stored = transposeB ? Transpose(w, k, n) : w;

        // c is the forward output the rule is given: a·W + bias, rounded to float.
        var c = new float[rows * n];
        for (int r = 0; r < rows; r++)
        {
            for (int o = 0; o < n; o++)
            {
                double sum = bias[o];
                for (int j = 0; j < k; j++)
                {
                    sum += (double)a[(r * k) + j] * w[(j * n) + o];
                }

                c[(r * n) + o] = (float)sum;
            }
        }

        float[] prior = TestData.Normal(815, rows * k);
        using var ta = device.FromHost<float>(a, [.. lead, k]);
        using var tb = device.FromHost<float>(stored, transposeB ? [n, k] : [k, n]);
        using var tc = device.FromHost<float>(c, [.. lead, n]);
        using var tdc = device.FromHost<float>(dc, [.. lead, n]);
        using var tda = mode == Mode.Accumulate ? device.FromHost<float>(prior, [.. lead, k]) : TestData.Poisoned(device, [.. lead, k]);
        using var scratch = TestData.Poisoned(device, [.. lead, n]);
        Gemm.Relevance(ta, tb, tc, tdc, tda, epsilon, mode == Mode.ScratchIsDc ? tdc : scratch, transposeB, accumulate: mode == Mode.Accumulate);

        var expected = new double[rows * k];
        for (int r = 0; r < rows; r++)
        {
            for (int o = 0; o < n; o++)
            {
                double z = c[(r * n) + o];
                double message = z * dc[(r * n) + o] / (z + (z >= 0 ? epsilon : -epsilon));
                for (int j = 0; j < k; j++)
                {
                    expected[(r * k) + j] += (double)a[(r * k) + j] * w[(j * n) + o] * message;
                }
            }

            if (mode == Mode.Accumulate)
            {
                for (int j = 0; j < k; j++)
                {
                    expected[(r * k) + j] += (double)a[(r * k) + j] * prior[(r * k) + j];
                }
            }
        }

        Compare.Close(ElementwiseLrpCases.Relevance(a, tda.ToArray()), expected, Tolerances.Gemm, "R_a = a ⊙ da");
    }

    private static float[] Transpose(float[] m, int rows, int columns)
    {
        var t = new float[m.Length];
        for (int r = 0; r < rows; r++)
        {
            for (int c = 0; c < columns; c++)
            {
                t[(c * rows) + r] = m[(r * columns) + c];
            }
        }

        return t;
    }
}
