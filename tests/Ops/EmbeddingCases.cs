using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="Embedding"/>: gather (overwrite and accumulate), scatter-add with
/// repeated ids (which must add up) onto an existing gradient, multi-dimensional ids, and the
/// adjoint identity ⟨Gather(T), dy⟩ = ⟨T, ScatterAdd(dy)⟩ that ties the two together.
/// </summary>
public sealed class EmbeddingCases : IOpCaseSource
{
    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int n in TestData.Sizes)
        {
            foreach (int d in TestData.Sizes)
            {
                bool tiny = n <= 17 && d <= 17;
                yield return new OpCase("Embedding.Gather", $"ids=[{n}] d={d} vocab=50", tiny, dev => Gather(dev, [n], d, 50, accumulate: false));
                yield return new OpCase("Embedding.ScatterAdd", $"ids=[{n}] d={d} vocab=7", tiny, dev => ScatterAdd(dev, [n], d, 7));
            }
        }

        foreach (int d in TestData.Sizes)
        {
            bool tiny = d <= 17;
            yield return new OpCase("Embedding.Gather+accumulate", $"ids=[2, 3] d={d} vocab=5", tiny, dev => Gather(dev, [2, 3], d, 5, accumulate: true));
            yield return new OpCase("Embedding.ScatterAdd", $"ids=[2, 9] d={d} vocab=4", tiny, dev => ScatterAdd(dev, [2, 9], d, 4));
        }

        // Large enough for the host path's workers: each owns a column range, duplicates still add up.
        yield return new OpCase("Embedding.ScatterAdd", "ids=[130] d=384 vocab=7", false, dev => ScatterAdd(dev, [130], 384, 7));
        yield return new OpCase("Embedding.Gather+accumulate", "ids=[130] d=384 vocab=30", false, dev => Gather(dev, [130], 384, 30, accumulate: true));
        yield return new OpCase("Embedding adjoint", "ids=[3, 5] d=17 vocab=6", true, Adjoint);
    }

    private static int[] RandomIds(int seed, int count, int vocab)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => random.Next(vocab)).ToArray();
    }

    private static void Gather(Device device, int[] idShape, int d, int vocab, bool accumulate)
    {
        int n = idShape.Aggregate(1, (p, s) => p * s);
        float[] table = TestData.Normal(71, vocab * d);
        int[] ids = RandomIds(72, n, vocab);
        float[] start = TestData.Normal(73, n * d);
        int[] yShape = [.. idShape, d];
        using var tt = device.FromHost<float>(table, vocab, d);
        using var ti = device.FromHost<int>(ids, idShape);
        using var ty = accumulate ? device.FromHost<float>(start, yShape) : TestData.Poisoned(device, yShape);
        Embedding.Gather(tt, ti, ty, accumulate);
        var expected = new double[n * d];
        for (int i = 0; i < n; i++)
        {
            for (int c = 0; c < d; c++)
            {
                expected[(i * d) + c] = (accumulate ? (double)start[(i * d) + c] : 0) + table[(ids[i] * d) + c];
            }
        }

        Compare.Close(ty.ToArray(), expected, Tolerances.Embedding, "y");
    }

    private static void ScatterAdd(Device device, int[] idShape, int d, int vocab)
    {
        int n = idShape.Aggregate(1, (p, s) => p * s);
        float[] dy = TestData.Normal(74, n * d);
        int[] ids = RandomIds(75, n, vocab);
        float[] start = TestData.Normal(76, vocab * d);
        using var tdy = device.FromHost<float>(dy, [.. idShape, d]);
        using var ti = device.FromHost<int>(ids, idShape);
        using var tt = device.FromHost<float>(start, vocab, d);
        Embedding.ScatterAdd(tdy, ti, tt);
        var expected = TestData.ToDouble(start);
        for (int i = 0; i < n; i++)
        {
            for (int c = 0; c < d; c++)
            {
                expected[(ids[i] * d) + c] += dy[(i * d) + c];
            }
        }

        // Sums of up to n/vocab + 1 terms in any order: allow for their roundings.
        double terms = Math.Max(1, ids.GroupBy(id => id).Max(g => g.Count()));
        var tolerance = new Tolerance(Tolerances.Embedding.Absolute * terms, Tolerances.Embedding.Relative * terms);
        Compare.Close(tt.ToArray(), expected, tolerance, "dTable");
    }

    // ⟨Gather(T, ids), dy⟩ = ⟨T, ScatterAdd(dy, ids)⟩, both sides from the device.
    private static void Adjoint(Device device)
    {
        const int vocab = 6;
        const int d = 17;
        int[] idShape = [3, 5];
        float[] table = TestData.Normal(77, vocab * d);
        float[] dy = TestData.Normal(78, 15 * d);
        int[] ids = RandomIds(79, 15, vocab);
        using var tt = device.FromHost<float>(table, vocab, d);
        using var ti = device.FromHost<int>(ids, idShape);
        using var ty = TestData.Poisoned(device, 3, 5, d);
        using var tdy = device.FromHost<float>(dy, 3, 5, d);
        using var tdt = device.Allocate<float>(vocab, d);
        tdt.Fill(0f);
        Embedding.Gather(tt, ti, ty);
        Embedding.ScatterAdd(tdy, ti, tdt);
        double left = ty.ToArray().Select((v, i) => (double)v * dy[i]).Sum();
        double right = tdt.ToArray().Select((g, i) => (double)g * table[i]).Sum();
        Assert.Equal(left, right, 1e-4);
    }
}
