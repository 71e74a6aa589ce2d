using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="Coalitions"/>: sampled masks bit for bit against a reference written here
/// (its own Philox, size choice and Floyd subset), with every row of the drawn size and pairs
/// complementary; masked inputs (replace and drop) element for element.
/// </summary>
public sealed class CoalitionsCases : IOpCaseSource
{
    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int units in TestData.Sizes)
        {
            foreach (int m in new[] { 2, 3, 17, 33, 130 })
            {
                bool tiny = units <= 17 && m <= 17;
                foreach (bool paired in new[] { true, false })
                {
                    int smallest = 1;
                    int largest = paired ? m / 2 : m - 1;
                    string shape = $"units={units} M={m} sizes {smallest}-{largest}{(paired ? " paired" : string.Empty)}";
                    yield return new OpCase("Coalitions.Sample", shape, tiny, d => Sample(d, units, m, smallest, largest, paired, (ulong)(units * 1000) + (ulong)m, 2));
                }
            }
        }

        // Sizes above the middle, a single class, and enough units for the host path's workers.
        yield return new OpCase("Coalitions.Sample", "units=17 M=9 sizes 6-8", true, d => Sample(d, 17, 9, 6, 8, false, 5, 0));
        yield return new OpCase("Coalitions.Sample", "units=3 M=12 size 4 paired", true, d => Sample(d, 3, 12, 4, 4, true, 6, 1));
        yield return new OpCase("Coalitions.Sample", "units=1000 M=20 sizes 3-10 paired", false, d => Sample(d, 1000, 20, 3, 10, true, 77, 3));

        foreach (int rows in TestData.Sizes)
        {
            foreach (int seq in new[] { 1, 17, 67 })
            {
                int m = Math.Max(1, seq / 2);
                bool tiny = rows <= 17 && seq <= 17;
                yield return new OpCase("Coalitions.MaskInputs", $"rows={rows} seq={seq} M={m} replace", tiny, d => MaskInputs(d, rows, seq, m, 103));
                yield return new OpCase("Coalitions.MaskInputs", $"rows={rows} seq={seq} M={m} drop", tiny, d => MaskInputs(d, rows, seq, m, null));
            }
        }
    }

    /// <summary>
    /// The masks <see cref="Coalitions.Sample"/> writes, computed here: unit u reads words of Philox blocks
    /// (w / 4, u, stream, 0); word 0 chooses the size, words 1.. draw the smaller side by Floyd's algorithm.
    /// </summary>
    public static byte[] ReferenceMasks(int units, int m, uint[] thresholds, int smallest, bool paired, ulong seed, uint stream)
    {
        int perUnit = paired ? 2 : 1;
        var masks = new byte[units * perUnit * m];
        uint[] key = [(uint)seed, (uint)(seed >> 32)];
        for (int u = 0; u < units; u++)
        {
            uint Word(int w) => RandomCases.Reference([(uint)(w / 4), (uint)u, stream, 0], key)[w % 4];
            int size = smallest + thresholds.Take(thresholds.Length - 1).Count(t => t <= Word(0));
            bool complementSide = size > m - size;
            int k = complementSide ? m - size : size;
            var chosen = new HashSet<int>();
            for (int i = 0; i < k; i++)
            {
                int j = m - k + i;
                int t = (int)((Word(i + 1) * (ulong)(j + 1)) >> 32);
                chosen.Add(chosen.Contains(t) ? j : t);
            }

            for (int f = 0; f < m; f++)
            {
                byte present = (byte)(chosen.Contains(f) != complementSide ? 1 : 0);
                masks[(u * perUnit * m) + f] = present;
                if (paired)
                {
                    masks[(((u * 2) + 1) * m) + f] = (byte)(1 - present);
                }
            }
        }

        return masks;
    }

    /// <summary>Thresholds on the 2³² scale for sizes smallest..largest with the Shapley-kernel weights (M − 1)/(s(M − s)).</summary>
    public static uint[] KernelThresholds(int m, int smallest, int largest)
    {
        double[] mass = Enumerable.Range(smallest, largest - smallest + 1).Select(s => (m - 1.0) / (s * (double)(m - s))).ToArray();
        double total = mass.Sum();
        var thresholds = new uint[mass.Length];
        double cumulative = 0;
        for (int k = 0; k < mass.Length; k++)
        {
            cumulative += mass[k];
            thresholds[k] = k == mass.Length - 1 ? uint.MaxValue : (uint)Math.Min(cumulative / total * 4294967296.0, uint.MaxValue);
        }

        return thresholds;
    }

    private static void Sample(Device device, int units, int m, int smallest, int largest, bool paired, ulong seed, uint stream)
    {
        uint[] thresholds = KernelThresholds(m, smallest, largest);
        int rows = units * (paired ? 2 : 1);
        using var masks = device.Allocate<byte>(rows, m);
        masks.Fill(0xAB);
        using var bounds = device.FromHost<uint>(thresholds, thresholds.Length);
        Coalitions.Sample(masks, bounds, smallest, paired, seed, stream);
        byte[] actual = masks.ToArray();
        byte[] expected = ReferenceMasks(units, m, thresholds, smallest, paired, seed, stream);
        for (int r = 0; r < rows; r++)
        {
            int size = actual.AsSpan(r * m, m).ToArray().Count(b => b == 1);
            int lowerSize = paired && r % 2 == 1 ? m - size : size;
            Assert.True(lowerSize >= smallest && lowerSize <= largest, $"row {r} has {size} present features; sizes {smallest}-{largest} were asked for.");
            Assert.True(actual.AsSpan(r * m, m).ToArray().All(b => b <= 1), $"row {r} holds a byte other than 0 and 1.");
        }

        Assert.Equal(expected, actual);
    }

    private static void MaskInputs(Device device, int rows, int seq, int m, int? replacement)
    {
        var random = new Random((rows * 31) + seq);
        byte[] masks = Enumerable.Range(0, rows * m).Select(_ => (byte)random.Next(2)).ToArray();
        int[] featureOf = Enumerable.Range(0, seq).Select(_ => random.Next(-1, m)).ToArray();
        int[] ids = Enumerable.Range(0, seq).Select(_ => random.Next(5, 100)).ToArray();
        int[] keyMask = Enumerable.Range(0, seq).Select(t => t < seq - 1 || seq == 1 ? 1 : 0).ToArray();
        using var tm = device.FromHost<byte>(masks, rows, m);
        using var tf = device.FromHost<int>(featureOf, seq);
        using var ti = device.FromHost<int>(ids, seq);
        using var tk = device.FromHost<int>(keyMask, seq);
        using var outIds = device.Allocate<int>(rows, seq);
        using var outKey = device.Allocate<int>(rows, seq);
        outIds.Fill(int.MinValue);
        outKey.Fill(int.MinValue);
        Coalitions.MaskInputs(tm, tf, ti, tk, outIds, outKey, replacement);
        int[] expectedIds = new int[rows * seq];
        int[] expectedKey = new int[rows * seq];
        for (int r = 0; r < rows; r++)
        {
            for (int t = 0; t < seq; t++)
            {
                bool present = featureOf[t] == -1 || masks[(r * m) + featureOf[t]] == 1;
                expectedIds[(r * seq) + t] = present ? ids[t] : replacement ?? ids[t];
                expectedKey[(r * seq) + t] = present || replacement is not null ? keyMask[t] : 0;
            }
        }

        Assert.Equal(expectedIds, outIds.ToArray());
        Assert.Equal(expectedKey, outKey.ToArray());
    }
}
