using Headlight.Kernels;

namespace Headlight.Explain;

/// <summary>
/// The coalitions Kernel SHAP evaluates, each with its regression weight: every coalition of the sizes the budget
/// enumerates completely (the smallest and largest first), then coalitions drawn on the device for the other sizes,
/// duplicates merged by adding weight. Masks are bytes <c>[count, M]</c>, 1 = feature present; the empty and the
/// full coalition are not among them (they are the efficiency constraint).
/// </summary>
/// <remarks>
/// Shapley kernel: a coalition of size s weighs π(s) = (M − 1) / (C(M, s)·s·(M − s)), so all coalitions of size s
/// together weigh (M − 1) / (s·(M − s)). Sizes s and M − s form a class. Classes are enumerated in order of size
/// while <c>left · P(class) / count(class) ≥ 1</c>, P taken relative to the classes not yet enumerated (as shap's
/// KernelExplainer does). The other sizes are drawn with probability proportional to their total weight and a subset
/// uniformly within the size, so a coalition is drawn with probability proportional to π; every draw then weighs the
/// same, the remaining kernel weight divided by the number of draws.
///
/// Duplicates are merged on the host: the masks are a few kilobytes that the host needs for the regression anyway,
/// and which draw fills the budget last depends on the order of the draws, an ordered scan that a hash set does in
/// microseconds next to one forward pass per coalition.
/// </remarks>
internal sealed class CoalitionSet
{
    // Sampling rounds, each drawing four times the coalitions still missing, before giving up on the budget.
    private const int Rounds = 4;
    private const long MaxRoundBytes = 64L << 20;

    private readonly List<byte[]> masks = [];
    private readonly List<double> counts = [];
    private readonly List<int[]> units = [];
    private int enumerated;

    private CoalitionSet(int features) => Features = features;

    /// <summary>M.</summary>
    public int Features { get; }

    /// <summary>Distinct coalitions.</summary>
    public int Count => masks.Count;

    /// <summary>Coalition <paramref name="i"/>'s mask <c>[M]</c>.</summary>
    public byte[] Mask(int i) => masks[i];

    /// <summary>Regression weights <c>[Count]</c>.</summary>
    public double[] Weights { get; private set; } = [];

    /// <summary>The sampled units (a pair, or one coalition), as indices of their coalitions, duplicates included.</summary>
    public IReadOnlyList<int[]> Units => units;

    /// <summary>The weight of one draw.</summary>
    public double DrawWeight { get; private set; }

    /// <summary>Sizes 1..k and M − k..M − 1 were enumerated completely.</summary>
    public int EnumeratedSizes { get; private set; }

    /// <summary>True when every coalition but the empty and the full one is here.</summary>
    public bool IsComplete { get; private set; }

    /// <summary>All 2^M − 2 coalitions, or infinity when M is too large to count them in a double exactly.</summary>
    public static double AllCoalitions(int m) => m <= 52 ? Math.Pow(2, m) - 2 : double.PositiveInfinity;

    /// <summary>The total kernel weight of all coalitions of size <paramref name="s"/>: (M − 1) / (s·(M − s)).</summary>
    public static double SizeMass(int m, int s) => (m - 1.0) / (s * (double)(m - s));

    /// <summary>C(n, k) in floating point.</summary>
    public static double Choose(int n, int k)
    {
        k = Math.Min(k, n - k);
        double c = 1;
        for (int i = 1; i <= k; i++)
        {
            c = c * (n - k + i) / i;
        }

        // Each partial product is an integer, exact below 2^53.
        return c < 9e15 ? Math.Round(c) : c;
    }

    /// <summary>Builds the coalitions for <paramref name="budget"/> (already capped at 2^M − 2), sampling on <paramref name="device"/>.</summary>
    public static CoalitionSet Build(Device device, int m, int budget, ulong seed, bool paired)
    {
        var set = new CoalitionSet(m);
        if (budget >= AllCoalitions(m))
        {
            for (int s = 1; s < m; s++)
            {
                set.Enumerate(s, complements: false);
            }

            set.EnumeratedSizes = m / 2;
            set.enumerated = set.Count;
            set.IsComplete = true;
            set.Finish(0);
            return set;
        }

        int half = m / 2;
        double[] classMass = new double[half + 1];
        double remaining = 0;
        for (int s = 1; s <= half; s++)
        {
            classMass[s] = SizeMass(m, s) * (s == m - s ? 1 : 2);
            remaining += classMass[s];
        }

        int left = budget;
        int k = 0;
        while (k < half)
        {
            int s = k + 1;
            double count = Choose(m, s) * (s == m - s ? 1 : 2);
            if (left * classMass[s] / remaining / count < 1 - 1e-8)
            {
                break;
            }

            set.Enumerate(s, complements: s != m - s);
            left -= (int)count;
            remaining -= classMass[s];
            k = s;
        }

        set.EnumeratedSizes = k;
        set.enumerated = set.Count;
        int draws = left > 0 && k < half ? set.Sample(device, m, k, classMass, left, seed, paired) : 0;
        set.Finish(draws == 0 ? 0 : remaining / draws);
        set.IsComplete = set.Count >= AllCoalitions(m);
        return set;
    }

    // Every subset of size s in lexicographic order, each followed by its complement when asked.
    private void Enumerate(int s, bool complements)
    {
        int m = Features;
        double weight = SizeMass(m, s) / Choose(m, s);
        int[] chosen = Enumerable.Range(0, s).ToArray();
        while (true)
        {
            var mask = new byte[m];
            foreach (int f in chosen)
            {
                mask[f] = 1;
            }

            Add(mask, weight);
            if (complements)
            {
                Add(mask.Select(b => (byte)(1 - b)).ToArray(), weight);
            }

            int i = s - 1;
            while (i >= 0 && chosen[i] == m - s + i)
            {
                i--;
            }

            if (i < 0)
            {
                return;
            }

            chosen[i]++;
            for (int j = i + 1; j < s; j++)
            {
                chosen[j] = chosen[j - 1] + 1;
            }
        }
    }

    // Draws on the device in rounds until `left` new coalitions are found; returns the number of draws used.
    private int Sample(Device device, int m, int k, double[] classMass, int left, ulong seed, bool paired)
    {
        // Paired: one class per size pair {s, M − s}, the subset of size s then its complement. Unpaired: every size.
        int smallest = k + 1;
        int largest = paired ? m / 2 : m - k - 1;
        double[] mass = Enumerable.Range(smallest, largest - smallest + 1).Select(s => paired ? classMass[s] : SizeMass(m, s)).ToArray();
        double total = mass.Sum();
        var thresholds = new uint[mass.Length];
        double cumulative = 0;
        for (int c = 0; c < mass.Length; c++)
        {
            cumulative += mass[c];
            thresholds[c] = c == mass.Length - 1 ? uint.MaxValue : (uint)Math.Min(Math.Floor(cumulative / total * 4294967296.0), uint.MaxValue);
        }

        int perUnit = paired ? 2 : 1;
        var seen = new Dictionary<byte[], int>(MaskComparer.Instance);
        int draws = 0;
        using var bounds = device.FromHost<uint>(thresholds, thresholds.Length);
        for (uint round = 0; round < Rounds && left > 0; round++)
        {
            long wanted = Math.Max(64, 4L * ((left + perUnit - 1) / perUnit));
            int unitCount = (int)Math.Min(wanted, Math.Max(1, MaxRoundBytes / ((long)perUnit * m)));
            byte[] drawn;
            using (var tensor = device.Allocate<byte>(unitCount * perUnit, m))
            {
                Coalitions.Sample(tensor, bounds, smallest, paired, seed, round);
                drawn = tensor.ToArray();
            }

            for (int u = 0; u < unitCount && left > 0; u++)
            {
                var unit = new List<int>(perUnit);
                bool full = false;
                for (int r = 0; r < perUnit; r++)
                {
                    byte[] mask = drawn.AsSpan(((u * perUnit) + r) * m, m).ToArray();
                    if (seen.TryGetValue(mask, out int index))
                    {
                        counts[index]++;
                    }
                    else if (left > 0)
                    {
                        index = Add(mask, 1);
                        seen.Add(mask, index);
                        left--;
                    }
                    else
                    {
                        full = true;
                        break;
                    }

                    unit.Add(index);
                    draws++;
                }

                units.Add([.. unit]);
                if (full)
                {
                    break;
                }
            }
        }

        return draws;
    }

    private int Add(byte[] mask, double count)
    {
        masks.Add(mask);
        counts.Add(count);
        return masks.Count - 1;
    }

    // Enumerated coalitions carry π(s) already; sampled ones carry their draw count, times the weight of a draw.
    private void Finish(double drawWeight)
    {
        DrawWeight = drawWeight;
        Weights = counts.Select((c, i) => i < enumerated ? c : c * drawWeight).ToArray();
    }

    private sealed class MaskComparer : IEqualityComparer<byte[]>
    {
        public static readonly MaskComparer Instance = new();

        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);

        public int GetHashCode(byte[] obj)
        {
            var hash = new HashCode();
            hash.AddBytes(obj);
            return hash.ToHashCode();
        }
    }
}
