using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for the LRP rules of <see cref="Elementwise"/>: the ε-normalised share and the uniform rule through an
/// element-wise product, against relevance messages written out in float64 (<c>R_in = contribution · R_out / (k·z + ε·sign z)</c>).
/// </summary>
public sealed class ElementwiseLrpCases : IOpCaseSource
{
    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int rows in TestData.Sizes)
        {
            foreach (int columns in new[] { 1, 17, 130 })
            {
                bool tiny = rows <= 17 && columns <= 17;
                string shape = $"[{rows}, {columns}]";
                foreach (int operands in new[] { 1, 2 })
                {
                    yield return new OpCase("Elementwise.EpsilonShare", $"{shape} operands={operands}", tiny, d => EpsilonShare(d, rows, columns, operands, inPlace: false));
                }

                yield return new OpCase("Elementwise.MultiplyRelevance", shape, tiny, d => MultiplyRelevance(d, rows, columns));
            }
        }

        yield return new OpCase("Elementwise.EpsilonShare", "[17, 33] dx=dy", true, d => EpsilonShare(d, 17, 33, 1, inPlace: true));
        yield return new OpCase("Elementwise.EpsilonShare", "z = 0 gives 0", true, ZeroOutput);
    }

    private static void EpsilonShare(Device device, int rows, int columns, int operands, bool inPlace)
    {
        const float epsilon = 0.05f;
        float[] dy = TestData.Normal(801, rows * columns);
        float[] z = TestData.Normal(802, rows * columns);
        using var tdy = device.FromHost<float>(dy, rows, columns);
        using var tz = device.FromHost<float>(z, rows, columns);
        using var poisoned = TestData.Poisoned(device, rows, columns);
        var tdx = inPlace ? tdy : poisoned;
        Elementwise.EpsilonShare(tdy, tz, tdx, epsilon, operands);

        // The relevance at z is z·dy; what each unit of an input's contribution receives is that over k·z + ε·sign z.
        var expected = new double[z.Length];
        for (int i = 0; i < z.Length; i++)
        {
            double relevance = (double)z[i] * dy[i];
            expected[i] = relevance / ((operands * (double)z[i]) + (z[i] >= 0 ? epsilon : -epsilon));
        }

        Compare.Close(tdx.ToArray(), expected, Tolerances.Elementwise, "dx");
    }

    private static void MultiplyRelevance(Device device, int rows, int columns)
    {
        const float epsilon = 0.01f;
        float[] a = TestData.Normal(803, rows * columns);
        float[] b = TestData.Normal(804, rows * columns);
        float[] dy = TestData.Normal(805, rows * columns);
        using var ta = device.FromHost<float>(a, rows, columns);
        using var tb = device.FromHost<float>(b, rows, columns);
        using var tdy = device.FromHost<float>(dy, rows, columns);
        using var tda = TestData.Poisoned(device, rows, columns);
        using var tdb = TestData.Poisoned(device, rows, columns);
        Elementwise.MultiplyRelevance(tdy, ta, tb, tda, tdb, epsilon);

        // y = a·b has one term, a·b, shared by both operands: each gets (a·b)·R_y / (2y + ε·sign y).
        var expected = new double[a.Length];
        for (int i = 0; i < a.Length; i++)
        {
            double y = (double)a[i] * b[i];
            expected[i] = y * (y * dy[i]) / ((2 * y) + (y >= 0 ? epsilon : -epsilon));
        }

        Compare.Close(Relevance(a, tda.ToArray()), expected, Tolerances.Elementwise, "R_a = a ⊙ da");
        Compare.Close(Relevance(b, tdb.ToArray()), expected, Tolerances.Elementwise, "R_b = b ⊙ db");
    }

    private static void ZeroOutput(Device device)
    {
        using var dy = device.FromHost<float>([1f, -2f, 3f], 3);
        using var z = device.FromHost<float>([0f, 0f, -0f], 3);
        using var dx = TestData.Poisoned(device, 3);
        Elementwise.EpsilonShare(dy, z, dx, 1e-6f, 2);
        Compare.Exact(dx.ToArray(), [0f, 0f, 0f], "dx at z = 0");
    }

    /// <summary>Relevance from a signal: <c>x ⊙ signal</c>, rounded once.</summary>
    internal static float[] Relevance(float[] x, float[] signal)
    {
        var r = new float[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            r[i] = (float)((double)x[i] * signal[i]);
        }

        return r;
    }
}
