namespace Headlight.Kernels;

/// <summary>Coalitions on the managed SIMD backend: units or coalitions over the device's workers.</summary>
internal sealed partial class CpuBackend
{
    internal override unsafe void CoalitionsSample(Tensor<byte> masks, Tensor<uint> thresholds, int units, Coalitions.SampleParams p)
    {
        fixed (byte* pm = masks.HostSpan)
        fixed (uint* pt = thresholds.HostSpan)
        {
            var job = new Coalitions.SampleJob { Masks = pm, Thresholds = pt, Params = p, Units = units, UnitsPerItem = Coalitions.ItemSize(Workers, units, p.M) };
            Workers.Run(ref job, (units + job.UnitsPerItem - 1) / job.UnitsPerItem);
        }
    }

    internal override unsafe void CoalitionsMaskInputs(
        Tensor<byte> masks, Tensor<int> featureOf, Tensor<int> ids, Tensor<int> keyMask, Tensor<int> maskedIds, Tensor<int> maskedKeyMask, int rows, Coalitions.MaskParams p)
    {
        fixed (byte* pm = masks.HostSpan)
        fixed (int* pf = featureOf.HostSpan, pi = ids.HostSpan, pk = keyMask.HostSpan, pmi = maskedIds.HostSpan, pmk = maskedKeyMask.HostSpan)
        {
            var job = new Coalitions.MaskJob
            {
                Masks = pm, FeatureOf = pf, Ids = pi, KeyMask = pk, MaskedIds = pmi, MaskedKeyMask = pmk,
                Params = p, Rows = rows, RowsPerItem = Coalitions.ItemSize(Workers, rows, p.Seq),
            };
            Workers.Run(ref job, (rows + job.RowsPerItem - 1) / job.RowsPerItem);
        }
    }
}

/// <summary>Coalitions' host code: the sampling and masking jobs.</summary>
public static partial class Coalitions
{
    private const int ParallelThreshold = 1 << 12;

    // Rows per work item: all of them in one item (run on the calling thread) below the threshold, else about
    // four items per thread.
    internal static int ItemSize(CpuWorkers workers, int rows, int rowLength)
        => (long)rows * rowLength < ParallelThreshold || workers.Threads == 1 ? rows : Math.Max(1, (rows + (4 * workers.Threads) - 1) / (4 * workers.Threads));

    // One unit on the host: the same steps as SampleKernel.
    private static void SampleUnit(int u, Span<byte> masks, ReadOnlySpan<uint> thresholds, SampleParams p)
    {
        var row = masks.Slice(u * (p.Paired + 1) * p.M, p.M);
        var words = Philox.Block(0, (uint)u, p.Stream, 0, p.Key0, p.Key1);
        int size = p.SmallestSize + SizeClass(words.X0, thresholds[..(p.Classes - 1)]);
        int k = Math.Min(size, p.M - size);
        byte fill = (byte)(size > p.M - size ? 1 : 0);
        byte mark = (byte)(1 - fill);
        row.Fill(fill);
        for (int w = 1; w <= k; w++)
        {
            if ((w & 3) == 0)
            {
                words = Philox.Block((uint)(w >> 2), (uint)u, p.Stream, 0, p.Key0, p.Key1);
            }

            int j = p.M - k + w - 1;
            int t = Philox.Below(words[w & 3], j + 1);
            row[row[t] == mark ? j : t] = mark;
        }

        if (p.Paired != 0)
        {
            var complement = masks.Slice(((2 * u) + 1) * p.M, p.M);
            for (int f = 0; f < p.M; f++)
            {
                complement[f] = (byte)(1 - row[f]);
            }
        }
    }

    private static int SizeClass(uint word, ReadOnlySpan<uint> thresholds)
    {
        int k = 0;
        foreach (uint bound in thresholds)
        {
            k += bound <= word ? 1 : 0;
        }

        return k;
    }

    /// <summary>Coalitions on the host; item = <see cref="UnitsPerItem"/> consecutive units, each as in SampleKernel.</summary>
    internal unsafe struct SampleJob : ICpuJob
    {
        public byte* Masks;
        public uint* Thresholds;
        public SampleParams Params;
        public int Units;
        public int UnitsPerItem;

        public readonly void Execute(int item)
        {
            var masks = new Span<byte>(Masks, Units * (Params.Paired + 1) * Params.M);
            var thresholds = new ReadOnlySpan<uint>(Thresholds, Params.Classes);
            for (int u = item * UnitsPerItem; u < Math.Min(Units, (item + 1) * UnitsPerItem); u++)
            {
                SampleUnit(u, masks, thresholds, Params);
            }
        }
    }

    /// <summary>Masked inputs on the host; item = <see cref="RowsPerItem"/> consecutive coalitions.</summary>
    internal unsafe struct MaskJob : ICpuJob
    {
        public byte* Masks;
        public int* FeatureOf;
        public int* Ids;
        public int* KeyMask;
        public int* MaskedIds;
        public int* MaskedKeyMask;
        public MaskParams Params;
        public int Rows;
        public int RowsPerItem;

        // masks [rows, M], featureOf/ids/keyMask [seq] -> maskedIds/maskedKeyMask rows of this item [seq]
        public readonly void Execute(int item)
        {
            int m = Params.M;
            int seq = Params.Seq;
            int replacement = Params.Replacement;
            var features = new ReadOnlySpan<int>(FeatureOf, seq);
            var id = new ReadOnlySpan<int>(Ids, seq);
            var key = new ReadOnlySpan<int>(KeyMask, seq);
            for (int r = item * RowsPerItem; r < Math.Min(Rows, (item + 1) * RowsPerItem); r++)
            {
                var mask = new ReadOnlySpan<byte>(Masks + ((long)r * m), m);
                var outIds = new Span<int>(MaskedIds + ((long)r * seq), seq);
                var outKey = new Span<int>(MaskedKeyMask + ((long)r * seq), seq);
                for (int t = 0; t < seq; t++)
                {
                    bool kept = features[t] < 0 || mask[features[t]] != 0;
                    outIds[t] = kept || replacement < 0 ? id[t] : replacement;
                    outKey[t] = kept || replacement >= 0 ? key[t] : 0;
                }
            }
        }
    }
}
