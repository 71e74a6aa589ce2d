using System.Runtime.Intrinsics;
using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="Softmax"/>: plain, scaled, key-masked, causal (rows equal to, fewer
/// and more than the columns), rank 4 <c>[batch, heads, q, k]</c> scores with a <c>[batch, k]</c> mask,
/// fully masked rows, in place, and the backward, all against float64 references.
/// </summary>
public sealed class SoftmaxCases : IOpCaseSource
{
    private enum BackwardAlias
    {
        None,
        DxIsDy,
        DxIsY,
    }

    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int rows in TestData.Sizes)
        {
            foreach (int cols in TestData.Sizes)
            {
                bool tiny = rows <= 17 && cols <= 17;
                string s = $"[{rows}, {cols}]";
                yield return new OpCase("Softmax.Forward", s, tiny, dev => Forward(dev, [rows, cols], 1f, maskBatch: 0, causal: false));
                yield return new OpCase("Softmax.Forward+causal", $"{s} scale=0.5", tiny, dev => Forward(dev, [rows, cols], 0.5f, maskBatch: 0, causal: true));
                yield return new OpCase("Softmax.Forward+mask", $"[2, {rows}, {cols}] mask=[2, {cols}] scale=0.125", tiny,
                    dev => Forward(dev, [2, rows, cols], 0.125f, maskBatch: 2, causal: false));
                yield return new OpCase("Softmax.Backward", $"{s} scale=0.125", tiny, dev => Backward(dev, rows, cols, 0.125f, BackwardAlias.None));
            }
        }

        foreach (int k in TestData.Sizes)
        {
            bool tiny = k <= 17;
            yield return new OpCase("Softmax.Forward+mask+causal", $"[2, 3, {k}, {k}] mask=[2, {k}] scale=0.25", tiny,
                dev => Forward(dev, [2, 3, k, k], 0.25f, maskBatch: 2, causal: true));
            yield return new OpCase("Softmax.Forward+mask", $"[2, 3, 5, {k}] mask=[2, {k}] scale=-1.5", tiny,
                dev => Forward(dev, [2, 3, 5, k], -1.5f, maskBatch: 2, causal: false));
            yield return new OpCase("Softmax.Forward in place", $"[3, {k}] y=x scale=3", tiny, dev => Forward(dev, [3, k], 3f, maskBatch: 0, causal: false, inPlace: true));
            yield return new OpCase("Softmax.Forward+mask fully masked", $"[2, 3, 4, {k}] batch 1 masked", tiny, dev => FullyMasked(dev, k));
            yield return new OpCase("Softmax.Backward", $"[5, {k}] dx=dy", tiny, dev => Backward(dev, 5, k, 1f, BackwardAlias.DxIsDy));
            yield return new OpCase("Softmax.Backward", $"[5, {k}] dx=y scale=2", tiny, dev => Backward(dev, 5, k, 2f, BackwardAlias.DxIsY));
        }

        // Both ILGPU row paths (warp per row where the backend has warps, shared memory per group) at shapes around
        // the warp length and the warp path's row limit.
        foreach (bool shared in new[] { false, true })
        {
            string path = shared ? "rows=shared" : "rows=default";
            foreach (var (rows, cols) in new[] { (1, 1), (3, 31), (9, 32), (5, 33), (2, 1024), (2, 1025) })
            {
                yield return new OpCase("Softmax.Forward+mask+causal", $"[2, {rows}, {cols}] mask=[2, {cols}] scale=0.25 {path}", true,
                    global::Headlight.Tests.Kernels.RowPathCases.On(shared, dev => Forward(dev, [2, rows, cols], 0.25f, maskBatch: 2, causal: true)));
                yield return new OpCase("Softmax.Backward", $"[{rows}, {cols}] scale=0.5 {path}", true,
                    global::Headlight.Tests.Kernels.RowPathCases.On(shared, dev => Backward(dev, rows, cols, 0.5f, BackwardAlias.None)));
            }

            yield return new OpCase("Softmax.Forward+mask fully masked", $"[2, 3, 4, 33] batch 1 masked {path}", true, global::Headlight.Tests.Kernels.RowPathCases.On(shared, dev => FullyMasked(dev, 33)));
        }

        // Large enough for the host path's workers.
        yield return new OpCase("Softmax.Forward+mask+causal", "[2, 12, 33, 65] mask=[2, 65] scale=0.17", false,
            dev => Forward(dev, [2, 12, 33, 65], 0.17f, maskBatch: 2, causal: true));
        yield return new OpCase("Softmax.Backward", "[390, 130] scale=0.17", false, dev => Backward(dev, 390, 130, 0.17f, BackwardAlias.None));

        // Big-magnitude scores: the maximum must be subtracted before exp.
        yield return new OpCase("Softmax.Forward", "[3, 130] scale=100", false, dev => Forward(dev, [3, 130], 100f, maskBatch: 0, causal: false));
    }

    /// <summary>Random keep/mask flags <c>[batch, cols]</c> (about 70% kept).</summary>
    internal static int[] RandomMask(int seed, int batch, int cols)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, batch * cols).Select(_ => random.NextDouble() < 0.7 ? 1 : 0).ToArray();
    }

    /// <summary>
    /// Float64 masked scaled softmax over the last axis of <c>[outer, rows, cols]</c>; <paramref name="mask"/> is
    /// <c>[batch, cols]</c> or null, and when causal column j of row i is allowed only if <c>j ≤ i + cols − rows</c>.
    /// </summary>
    internal static double[] Reference(double[] x, int rows, int cols, double scale, int[]? mask, int batch, bool causal)
    {
        int outer = x.Length / (rows * cols);
        var y = new double[x.Length];
        for (int o = 0; o < outer; o++)
        {
            int b = mask is null ? 0 : o / (outer / batch);
            for (int i = 0; i < rows; i++)
            {
                int start = ((o * rows) + i) * cols;
                bool Allowed(int j) => (mask is null || mask[(b * cols) + j] != 0) && (!causal || j <= i + cols - rows);
                double max = double.NegativeInfinity;
                for (int j = 0; j < cols; j++)
                {
                    if (Allowed(j))
                    {
                        max = Math.Max(max, scale * x[start + j]);
                    }
                }

                if (double.IsNegativeInfinity(max))
                {
                    continue;
                }

                double sum = 0;
                for (int j = 0; j < cols; j++)
                {
                    y[start + j] = Allowed(j) ? Math.Exp((scale * x[start + j]) - max) : 0;
                    sum += y[start + j];
                }

                for (int j = 0; j < cols; j++)
                {
                    y[start + j] /= sum;
                }
            }
        }

        return y;
    }

    /// <summary>Float64 softmax backward: dx = scale·y⊙(dy − Σ dy·y) per row of <paramref name="cols"/>.</summary>
    internal static double[] ReferenceBackward(double[] y, double[] dy, int cols, double scale)
    {
        var dx = new double[y.Length];
        for (int start = 0; start < y.Length; start += cols)
        {
            double dot = 0;
            for (int j = 0; j < cols; j++)
            {
                dot += dy[start + j] * y[start + j];
            }

            for (int j = 0; j < cols; j++)
            {
                dx[start + j] = scale * y[start + j] * (dy[start + j] - dot);
            }
        }

        return dx;
    }

    private static void Forward(Device device, int[] shape, float scale, int maskBatch, bool causal, bool inPlace = false)
    {
        int rows = shape[^2];
        int cols = shape[^1];
        int n = shape.Aggregate(1, (p, s) => p * s);
        float[] x = TestData.Normal(61, n, 3f);
        int[]? mask = maskBatch > 0 ? RandomMask(62, maskBatch, cols) : null;
        using var tx = device.FromHost<float>(x, shape);
        using var tmask = mask is null ? null : device.FromHost<int>(mask, maskBatch, cols);
        using var own = TestData.Poisoned(device, shape);
        var ty = inPlace ? tx : own;
        Softmax.Forward(tx, ty, scale, tmask, causal);
        var expected = Reference(TestData.ToDouble(x), rows, cols, scale, mask, maskBatch, causal);
        float[] y = ty.ToArray();
        Compare.Close(y, expected, Tolerances.Softmax, "y");
        ExpectExactZeros(y, expected);
    }

    // Batch 1's mask is all 0: every row of its matrices becomes exactly 0; batch 0 is normal.
    private static void FullyMasked(Device device, int k)
    {
        int[] shape = [2, 3, 4, k];
        int n = 2 * 3 * 4 * k;
        float[] x = TestData.Normal(63, n, 3f);
        int[] mask = RandomMask(64, 2, k);
        mask[0] = 1;
        Array.Fill(mask, 0, k, k);
        using var tx = device.FromHost<float>(x, shape);
        using var tmask = device.FromHost<int>(mask, 2, k);
        using var ty = TestData.Poisoned(device, shape);
        Softmax.Forward(tx, ty, 0.5f, tmask);
        var expected = Reference(TestData.ToDouble(x), 4, k, 0.5, mask, 2, causal: false);
        float[] y = ty.ToArray();
        Compare.Close(y, expected, Tolerances.Softmax, "y");
        ExpectExactZeros(y, expected);
        Assert.True(y.AsSpan(n / 2).ToArray().All(v => v == 0f), "A fully masked row must be all 0.");
    }

    private static void ExpectExactZeros(float[] actual, double[] expected)
    {
        for (int i = 0; i < actual.Length; i++)
        {
            if (expected[i] == 0)
            {
                Assert.True(actual[i] == 0f, $"y: masked element {i} is {actual[i]}, expected exactly 0.");
            }
        }
    }

    private static void Backward(Device device, int rows, int cols, float scale, BackwardAlias alias)
    {
        // y: real probabilities with masked zeros (causal), as the forward would give.
        float[] x = TestData.Normal(65, rows * cols, 2f);
        float[] y = Reference(TestData.ToDouble(x), rows, cols, scale, null, 1, causal: true).Select(v => (float)v).ToArray();
        float[] dy = TestData.Normal(66, rows * cols);
        using var ty = device.FromHost<float>(y, rows, cols);
        using var tdy = device.FromHost<float>(dy, rows, cols);
        using var own = TestData.Poisoned(device, rows, cols);
        var tdx = alias switch
        {
            BackwardAlias.DxIsDy => tdy,
            BackwardAlias.DxIsY => ty,
            _ => own,
        };
        Softmax.Backward(ty, tdy, tdx, scale);
        var expected = ReferenceBackward(TestData.ToDouble(y), TestData.ToDouble(dy), cols, scale);
        Compare.Close(tdx.ToArray(), expected, Tolerances.Softmax, "dx");
    }
}

/// <summary>
/// Checks the float64 softmax backward reference against central finite differences of the float64 forward,
/// and the host path's vector exponential against <see cref="Math.Exp(double)"/>.
/// </summary>
public sealed class SoftmaxReferenceTests
{
    /// <summary>The vector exp is within 2 ulp over [−87.3, 88], exactly 0 below (−∞ included), +∞ above, NaN for NaN.</summary>
    [Fact]
    public void HostExpIsAccurateAndExactAtTheEnds()
    {
        var values = new List<float> { 0f, -0f, 1e-30f, -1e-30f, 88f, -87.3f, 0.5f * MathF.Log(2) };
        var random = new Random(69);
        for (int i = 0; i < 100_000; i++)
        {
            values.Add((float)((random.NextDouble() * 175.3) - 87.3));
        }

        while (values.Count % 16 != 0)
        {
            values.Add(-1f);
        }

        var input = values.ToArray();
        var output = new float[input.Length];
        for (int i = 0; i < input.Length; i += 16)
        {
            Softmax.Exp(Vector512.Create(input.AsSpan(i, 16))).CopyTo(output.AsSpan(i, 16));
        }

        for (int i = 0; i < input.Length; i++)
        {
            double expected = Math.Exp(input[i]);
            Assert.True(Math.Abs(output[i] - expected) <= 2.4e-7 * expected, $"exp({input[i]:R}) = {output[i]:R}, expected {expected:R}.");
        }

        float[] ends = [float.NegativeInfinity, -87.4f, -200f, -1e30f, 88.5f, float.PositiveInfinity, float.NaN, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f, 0f];
        var e = Softmax.Exp(Vector512.Create(ends));
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(0f, e[i]);
        }

        Assert.Equal(float.PositiveInfinity, e[4]);
        Assert.Equal(float.PositiveInfinity, e[5]);
        Assert.True(float.IsNaN(e[6]), "exp(NaN) must be NaN.");
    }

    /// <summary>dx of <c>L = Σ dy·softmax(scale·x)</c> (masked, causal) matches central differences; masked entries get 0.</summary>
    [Fact]
    public void BackwardReferenceMatchesFiniteDifferences()
    {
        const int rows = 3;
        const int cols = 5;
        const double scale = 0.7;
        const double h = 1e-5;
        double[] x = TestData.ToDouble(TestData.Normal(67, 2 * rows * cols));
        double[] dy = TestData.ToDouble(TestData.Normal(68, 2 * rows * cols));
        int[] mask = [1, 0, 1, 1, 1, 1, 1, 0, 1, 1];
        var y = SoftmaxCases.Reference(x, rows, cols, scale, mask, 2, causal: true);
        var dx = SoftmaxCases.ReferenceBackward(y, dy, cols, scale);

        double Loss() => SoftmaxCases.Reference(x, rows, cols, scale, mask, 2, causal: true).Select((v, i) => v * dy[i]).Sum();

        for (int i = 0; i < x.Length; i++)
        {
            double saved = x[i];
            x[i] = saved + h;
            double up = Loss();
            x[i] = saved - h;
            double down = Loss();
            x[i] = saved;
            Assert.Equal(dx[i], (up - down) / (2 * h), 1e-8);
        }
    }
}
