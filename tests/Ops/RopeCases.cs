using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="Rope"/>: forward, backward (the transpose) and the LRP ε-rule, on odd head sizes, inputs
/// and outputs of different widths and first columns, positions offset as behind a cache or scattered, in place and
/// out of place, overwriting and accumulating. The float64 reference computes its own angles from the inverse
/// frequencies (never with <see cref="Rope.Table"/>), rotates pair by pair, and leaves every column outside the heads
/// as it was (NaN poison stays NaN).
/// </summary>
public sealed class RopeCases : IOpCaseSource
{
    private static readonly Geometry[] Geometries =
    [
        new(2, 5, 3, 10, 4, true),
        new(2, 5, 3, 10, 10, true),
        new(2, 5, 3, 10, 0, true),
        new(1, 3, 2, 40, 32, true),
        new(2, 33, 4, 64, 64, false),
        new(3, 17, 2, 96, 64, false),
    ];

    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (var g in Geometries)
        {
            foreach (bool scattered in new[] { false, true })
            {
                string shape = $"{g}{(scattered ? " scattered" : " offset")}";
                yield return new OpCase("Rope.Forward", shape, g.Tiny, d => Forward(d, g, scattered, inPlace: false));
                yield return new OpCase("Rope.Backward", shape, g.Tiny, d => Backward(d, g, scattered, Mode.Plain));
                yield return new OpCase("Rope.Relevance", shape, g.Tiny, d => Relevance(d, g, scattered, Mode.Plain, 0.01f));
            }

            yield return new OpCase("Rope.Forward", $"{g} in place", g.Tiny, d => Forward(d, g, false, inPlace: true));
            yield return new OpCase("Rope.Backward+accumulate", $"{g}", g.Tiny, d => Backward(d, g, true, Mode.Accumulate));
            yield return new OpCase("Rope.Backward", $"{g} in place", g.Tiny, d => Backward(d, g, false, Mode.InPlace));
            yield return new OpCase("Rope.Relevance+accumulate", $"{g}", g.Tiny, d => Relevance(d, g, true, Mode.Accumulate, 0.01f));
            yield return new OpCase("Rope.Relevance", $"{g} in place", g.Tiny, d => Relevance(d, g, false, Mode.InPlace, 0.01f));
            yield return new OpCase("Rope.Relevance", $"{g} ε=0", g.Tiny, d => Relevance(d, g, true, Mode.Plain, 0f));
        }

        yield return new OpCase("Rope.Backward", "finite differences [1, 2, 2, 6] r=4", true, d => FiniteDifferences(d, new(1, 2, 2, 6, 4, true)));
        yield return new OpCase("Rope.Backward", "finite differences [2, 3, 1, 8] r=8", true, d => FiniteDifferences(d, new(2, 3, 1, 8, 8, true)));
        yield return new OpCase("Rope.Table", "r=10 P=40", true, _ => TableMatchesFloat64(10, 40));
    }

    /// <summary>One call's sizes; the input buffer is 7 columns wider than the heads (heads at column 3), the output 2 (at column 1).</summary>
    internal sealed record Geometry(int Batch, int Seq, int Heads, int HeadDim, int Rotary, bool Tiny)
    {
        public int Columns => Heads * HeadDim;

        public int InWidth => Columns + 7;

        public int OutWidth => Columns + 2;

        public int Tokens => Batch * Seq;

        public override string ToString() => $"[{Batch}, {Seq}, {Heads}·{HeadDim}] r={Rotary}";
    }

    private enum Mode
    {
        Plain,
        Accumulate,
        InPlace,
    }

    // The first head column of the input-side buffers [.., InWidth] and of the output-side ones [.., OutWidth].
    private const int InColumn = 3;
    private const int OutColumn = 1;

    private static double[] InverseFrequencies(int rotary) =>
        Enumerable.Range(0, rotary / 2).Select(j => Math.Pow(10000, -2.0 * j / rotary)).ToArray();

    // Positions [batch, seq]: 7 + t + 2b (a cache of 7 tokens, batches shifted), or a fixed scatter; the table has P rows.
    private static (int[] Positions, int P) Positions(Geometry g, bool scattered)
    {
        int p = g.Seq + 12;
        var positions = new int[g.Tokens];
        var random = new Random(917);
        for (int b = 0; b < g.Batch; b++)
        {
            for (int t = 0; t < g.Seq; t++)
            {
                positions[(b * g.Seq) + t] = scattered ? random.Next(p) : 7 + t + (2 * b);
            }
        }

        positions[^1] = p - 1; // the last row of the table is reached
        return (positions, p);
    }

    /// <summary>
    /// The float64 rotation of every head: <c>dst = R(±angle)·(src ⊙ scale)</c> added to <paramref name="dst"/> or written
    /// over it, with <paramref name="sign"/> −1 for the transpose; columns outside the heads keep what <paramref name="dst"/> holds.
    /// </summary>
    private static void Rotate(Geometry g, float[] src, int srcWidth, int srcColumn, double[] dst, int dstWidth, int dstColumn,
        int[] positions, double sign, bool add, Func<int, double>? scale = null)
    {
        var inv = InverseFrequencies(g.Rotary);
        int half = g.Rotary / 2;
        for (int row = 0; row < g.Tokens; row++)
        {
            for (int h = 0; h < g.Heads; h++)
            {
                int x0 = (row * srcWidth) + srcColumn + (h * g.HeadDim);
                int y0 = (row * dstWidth) + dstColumn + (h * g.HeadDim);
                double S(int j) => src[x0 + j] * (scale?.Invoke(x0 + j) ?? 1.0);
                var result = new double[g.HeadDim];
                for (int j = 0; j < half; j++)
                {
                    double angle = positions[row] * inv[j];
                    double c = Math.Cos(angle);
                    double s = sign * Math.Sin(angle);
                    result[j] = (S(j) * c) - (S(j + half) * s);
                    result[j + half] = (S(j + half) * c) + (S(j) * s);
                }

                for (int j = 2 * half; j < g.HeadDim; j++)
                {
                    result[j] = S(j);
                }

                for (int j = 0; j < g.HeadDim; j++)
                {
                    dst[y0 + j] = add ? dst[y0 + j] + result[j] : result[j];
                }
            }
        }
    }

    private static Tensor<float> Table(Device device, Geometry g, int p) =>
        device.FromHost<float>(Rope.Table(InverseFrequencies(g.Rotary), p), p, g.Rotary);

    private static void Forward(Device device, Geometry g, bool scattered, bool inPlace)
    {
        var (positions, p) = Positions(g, scattered);
        float[] x = TestData.Normal(931, g.Tokens * g.InWidth);
        using var tx = device.FromHost<float>(x, g.Batch, g.Seq, g.InWidth);
        using var tpos = device.FromHost<int>(positions, g.Batch, g.Seq);
        using var table = Table(device, g, p);
        using var ty = TestData.Poisoned(device, g.Batch, g.Seq, g.OutWidth);
        if (inPlace)
        {
            var expected = TestData.ToDouble(x);
            Rotate(g, x, g.InWidth, InColumn, expected, g.InWidth, InColumn, positions, 1, add: false);
            Rope.Forward(new(tx, InColumn), new(tx, InColumn), g.Heads, g.HeadDim, g.Rotary, tpos, table);
            Compare.Close(tx.ToArray(), expected, Tolerances.Rope, "output (in place)");
            return;
        }

        var want = Enumerable.Repeat(double.NaN, g.Tokens * g.OutWidth).ToArray();
        Rotate(g, x, g.InWidth, InColumn, want, g.OutWidth, OutColumn, positions, 1, add: false);
        Rope.Forward(new(tx, InColumn), new(ty, OutColumn), g.Heads, g.HeadDim, g.Rotary, tpos, table);
        Compare.Close(ty.ToArray(), want, Tolerances.Rope, "output");
        Compare.Exact(tx.ToArray(), x, "input (unchanged)");
    }

    private static void Backward(Device device, Geometry g, bool scattered, Mode mode)
    {
        var (positions, p) = Positions(g, scattered);
        float[] dy = TestData.Normal(941, g.Tokens * g.OutWidth);
        float[] prior = TestData.Normal(942, g.Tokens * g.InWidth);
        using var tdy = device.FromHost<float>(dy, g.Batch, g.Seq, g.OutWidth);
        using var tpos = device.FromHost<int>(positions, g.Batch, g.Seq);
        using var table = Table(device, g, p);
        if (mode == Mode.InPlace)
        {
            var expected = TestData.ToDouble(dy);
            Rotate(g, dy, g.OutWidth, OutColumn, expected, g.OutWidth, OutColumn, positions, -1, add: false);
            Rope.Backward(new(tdy, OutColumn), new(tdy, OutColumn), g.Heads, g.HeadDim, g.Rotary, tpos, table);
            Compare.Close(tdy.ToArray(), expected, Tolerances.Rope, "dInput (in place)");
            return;
        }

        bool add = mode == Mode.Accumulate;
        using var tdx = add ? device.FromHost<float>(prior, g.Batch, g.Seq, g.InWidth) : TestData.Poisoned(device, g.Batch, g.Seq, g.InWidth);
        var want = add ? TestData.ToDouble(prior) : Enumerable.Repeat(double.NaN, g.Tokens * g.InWidth).ToArray();
        Rotate(g, dy, g.OutWidth, OutColumn, want, g.InWidth, InColumn, positions, -1, add);
        Rope.Backward(new(tdy, OutColumn), new(tdx, InColumn), g.Heads, g.HeadDim, g.Rotary, tpos, table, accumulate: add);
        Compare.Close(tdx.ToArray(), want, Tolerances.Rope, "dInput");

        // The transpose: ⟨R·x, dy⟩ = ⟨x, Rᵀ·dy⟩ in float64 over the heads.
        if (!add)
        {
            float[] x = TestData.Normal(943, g.Tokens * g.InWidth);
            var rx = new double[g.Tokens * g.OutWidth];
            Rotate(g, x, g.InWidth, InColumn, rx, g.OutWidth, OutColumn, positions, 1, add: false);
            float[] dx = tdx.ToArray();
            double left = HeadSum(g, g.OutWidth, OutColumn, i => rx[i] * dy[i]);
            double right = HeadSum(g, g.InWidth, InColumn, i => x[i] * (double)dx[i]);
            Assert.True(Math.Abs(left - right) <= 1e-5 * (1 + Math.Abs(left)), $"⟨Rx, dy⟩ = {left}, ⟨x, Rᵀdy⟩ = {right}");
        }
    }

    private static void Relevance(Device device, Geometry g, bool scattered, Mode mode, float epsilon)
    {
        var (positions, p) = Positions(g, scattered);

        // z = R·x from the float64 reference, laid out [.., OutWidth] at column 1; dOutput [.., InWidth] at column 3.
        float[] x = TestData.Normal(951, g.Tokens * g.InWidth);
        var zd = new double[g.Tokens * g.OutWidth];
        Rotate(g, x, g.InWidth, InColumn, zd, g.OutWidth, OutColumn, positions, 1, add: false);
        float[] z = zd.Select(v => (float)v).ToArray();
        float[] dOut = TestData.Normal(952, g.Tokens * g.InWidth);
        float[] prior = TestData.Normal(953, g.Tokens * g.InWidth);
        using var tz = device.FromHost<float>(z, g.Batch, g.Seq, g.OutWidth);
        using var tdo = device.FromHost<float>(dOut, g.Batch, g.Seq, g.InWidth);
        using var tpos = device.FromHost<int>(positions, g.Batch, g.Seq);
        using var table = Table(device, g, p);

        // The ε ratio of the z element that sits at the same head position as dOutput element i.
        double RatioAt(int i)
        {
            int row = i / g.InWidth;
            int column = i - (row * g.InWidth) - InColumn;
            double zi = z[(row * g.OutWidth) + OutColumn + column];
            double den = zi + (zi >= 0 ? epsilon : -epsilon);
            return den == 0 ? 1 : zi / den;
        }

        bool add = mode == Mode.Accumulate;
        using var fresh = add ? device.FromHost<float>(prior, g.Batch, g.Seq, g.InWidth) : TestData.Poisoned(device, g.Batch, g.Seq, g.InWidth);
        var tdx = mode == Mode.InPlace ? tdo : fresh;
        var want = add ? TestData.ToDouble(prior) : mode == Mode.InPlace ? TestData.ToDouble(dOut) : Enumerable.Repeat(double.NaN, g.Tokens * g.InWidth).ToArray();
        Rotate(g, dOut, g.InWidth, InColumn, want, g.InWidth, InColumn, positions, -1, add, RatioAt);
        Rope.Relevance(new(tz, OutColumn), new(tdo, InColumn), new(tdx, InColumn), g.Heads, g.HeadDim, g.Rotary, tpos, table, epsilon, add);
        float[] dx = tdx.ToArray();
        Compare.Close(dx, want, Tolerances.Rope, "dInput");

        // Conservation: Σ x ⊙ dInput = Σ z ⊙ dOutput ⊙ ratio (the relevance ε absorbs is all that is lost).
        if (!add)
        {
            double rin = HeadSum(g, g.InWidth, InColumn, i => x[i] * (double)dx[i]);
            double rout = HeadSum(g, g.InWidth, InColumn, i =>
            {
                int row = i / g.InWidth;
                int column = i - (row * g.InWidth) - InColumn;
                return z[(row * g.OutWidth) + OutColumn + column] * (double)dOut[i] * RatioAt(i);
            });
            double scale = HeadSum(g, g.InWidth, InColumn, i => Math.Abs(x[i] * (double)dx[i]));
            Assert.True(Math.Abs(rin - rout) <= 1e-5 * (1 + scale), $"relevance in {rin}, out {rout}");
        }
    }

    // Σ f(i) over the head columns of a [tokens, width] buffer.
    private static double HeadSum(Geometry g, int width, int firstColumn, Func<int, double> f)
    {
        double sum = 0;
        for (int row = 0; row < g.Tokens; row++)
        {
            for (int c = 0; c < g.Columns; c++)
            {
                sum += f((row * width) + firstColumn + c);
            }
        }

        return sum;
    }

    // dInput of L = Σ w ⊙ Forward(x) against central differences of the device's own forward pass.
    private static void FiniteDifferences(Device device, Geometry g)
    {
        var (positions, p) = Positions(g, scattered: true);
        float[] x = TestData.Normal(961, g.Tokens * g.InWidth);
        float[] w = TestData.Normal(962, g.Tokens * g.OutWidth);
        using var tpos = device.FromHost<int>(positions, g.Batch, g.Seq);
        using var table = Table(device, g, p);
        using var tw = device.FromHost<float>(w, g.Batch, g.Seq, g.OutWidth);
        using var tdx = TestData.Poisoned(device, g.Batch, g.Seq, g.InWidth);
        Rope.Backward(new(tw, OutColumn), new(tdx, InColumn), g.Heads, g.HeadDim, g.Rotary, tpos, table);
        float[] dx = tdx.ToArray();

        double Loss(float[] input)
        {
            using var ti = device.FromHost<float>(input, g.Batch, g.Seq, g.InWidth);
            using var to = device.Allocate<float>(g.Batch, g.Seq, g.OutWidth);
            to.Fill(0f);
            Rope.Forward(new(ti, InColumn), new(to, OutColumn), g.Heads, g.HeadDim, g.Rotary, tpos, table);
            return to.ToArray().Select((v, i) => v * (double)w[i]).Sum();
        }

        const float H = 1e-2f;
        var numeric = new List<double>();
        var analytic = new List<float>();
        for (int row = 0; row < g.Tokens; row++)
        {
            for (int c = 0; c < g.Columns; c++)
            {
                int i = (row * g.InWidth) + InColumn + c;
                float keep = x[i];
                float hi = keep + H;
                float lo = keep - H;
                x[i] = hi;
                double up = Loss(x);
                x[i] = lo;
                double down = Loss(x);
                x[i] = keep;
                numeric.Add((up - down) / ((double)hi - lo));
                analytic.Add(dx[i]);
            }
        }

        Compare.Close(analytic.ToArray(), numeric.ToArray(), Tolerances.FiniteDifference, "dInput vs finite differences");
    }

    private static void TableMatchesFloat64(int rotary, int p)
    {
        var inv = InverseFrequencies(rotary);
        float[] table = Rope.Table(inv, p);
        var want = new double[p * rotary];
        for (int t = 0; t < p; t++)
        {
            for (int j = 0; j < rotary / 2; j++)
            {
                want[(t * rotary) + j] = Math.Cos(t * inv[j]);
                want[(t * rotary) + (rotary / 2) + j] = Math.Sin(t * inv[j]);
            }
        }

        Compare.Close(table, want, new Tolerance(1e-7, 1e-7), "table");
    }
}
