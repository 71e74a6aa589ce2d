using System.Buffers;
using ILGPU;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>
/// Coalitions of features for Kernel SHAP, on the device: random coalitions drawn with
/// <see cref="Philox"/> (a size from a given distribution, then a uniform subset of that size), and the
/// masked model inputs that switch each coalition's absent features off. Masks are bytes, 1 for a
/// feature that is present and 0 for one that is masked.
/// </summary>
public static unsafe class Coalitions
{
    private const int ParallelThreshold = 1 << 12;

    /// <summary>
    /// Draws random coalitions. Unit <c>u</c> takes its random words from <see cref="Philox"/> block
    /// <c>(w / 4, u, stream)</c> under <paramref name="seed"/>: word 0 picks size class <c>k</c> = the number of
    /// thresholds <c>thresholds[j] ≤ word</c> for <c>j</c> below the last, so class <c>k</c> has probability
    /// <c>(thresholds[k] − thresholds[k − 1]) / 2³²</c>; the size is <paramref name="smallestSize"/> + k. The next
    /// words choose a uniform subset of that size (Floyd's algorithm, on the smaller of the subset and its
    /// complement). With <paramref name="paired"/> each unit writes two rows, the subset and its complement.
    /// </summary>
    /// <param name="masks">The coalitions <c>[units · (paired ? 2 : 1), M]</c>.</param>
    /// <param name="thresholds">Cumulative size-class bounds <c>[classes]</c> on the scale 2³²; the last is not read.</param>
    /// <param name="smallestSize">The size of class 0, at least 1; the largest class size must stay below M.</param>
    /// <param name="paired">Write each subset followed by its complement.</param>
    /// <param name="seed">The random key.</param>
    /// <param name="stream">Selects an independent set of draws of the same seed (one per sampling round).</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, or the sizes fall outside [1, M − 1].</exception>
    public static void Sample(Tensor<byte> masks, Tensor<uint> thresholds, int smallestSize, bool paired, ulong seed, uint stream)
    {
        var args = new OpArgs("Coalitions.Sample").Add("masks", masks).Add("thresholds", thresholds)
            .Require(masks.Shape.Rank == 2, "'masks' must be [rows, M]")
            .Require(thresholds.Shape.Rank == 1 && thresholds.Length >= 1, "'thresholds' must be [classes] with at least one class");
        int rows = masks.Shape[0];
        int m = masks.Shape[1];
        int classes = (int)thresholds.Length;
        args.Require(!paired || rows % 2 == 0, "paired coalitions need an even number of rows")
            .Require(smallestSize >= 1 && (long)smallestSize + classes - 1 <= m - 1, $"sizes {smallestSize} to {(long)smallestSize + classes - 1} must lie in [1, M − 1] = [1, {m - 1}]");
        int units = paired ? rows / 2 : rows;
        if (units == 0)
        {
            return;
        }

        var p = new SampleParams(m, classes, smallestSize, paired ? 1 : 0, (uint)seed, (uint)(seed >> 32), stream);
        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Coalitions.Sample", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<byte>, ArrayView<uint>, SampleParams>(SampleKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, units, masks.View, thresholds.View, p);
            }

            return;
        }

        var cpu = (CpuDevice)args.Device;
        fixed (byte* pm = masks.HostSpan)
        fixed (uint* pt = thresholds.HostSpan)
        {
            var job = new SampleJob { Masks = pm, Thresholds = pt, Params = p, Units = units, UnitsPerItem = ItemSize(cpu, units, m) };
            cpu.Workers.Run(ref job, (units + job.UnitsPerItem - 1) / job.UnitsPerItem);
        }
    }

    /// <summary>
    /// Builds one masked input row per coalition from one input row: a token of feature <c>f</c> is kept when
    /// <c>masks[r, f]</c> is 1; tokens of feature −1 (special tokens, padding) are always kept. A masked token
    /// is replaced by <paramref name="replacementId"/> (its key mask unchanged), or, when that is null, dropped
    /// from attention: its id stays and its key mask becomes 0.
    /// </summary>
    /// <param name="masks">The coalitions <c>[rows, M]</c>.</param>
    /// <param name="featureOf">The feature of each token <c>[seq]</c>, in <c>[−1, M)</c>.</param>
    /// <param name="ids">The input row's token ids <c>[seq]</c>.</param>
    /// <param name="keyMask">The input row's key mask <c>[seq]</c>.</param>
    /// <param name="maskedIds">The masked ids <c>[rows, seq]</c>.</param>
    /// <param name="maskedKeyMask">The masked key mask <c>[rows, seq]</c>.</param>
    /// <param name="replacementId">The token that stands in for a masked one, or null to drop masked tokens from attention.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, a feature index is outside [−1, M), or the replacement is negative.</exception>
    public static void MaskInputs(Tensor<byte> masks, Tensor<int> featureOf, Tensor<int> ids, Tensor<int> keyMask, Tensor<int> maskedIds, Tensor<int> maskedKeyMask, int? replacementId)
    {
        var args = new OpArgs("Coalitions.MaskInputs").Add("masks", masks).Add("featureOf", featureOf).Add("ids", ids).Add("keyMask", keyMask)
            .Add("maskedIds", maskedIds).Add("maskedKeyMask", maskedKeyMask)
            .Require(masks.Shape.Rank == 2, "'masks' must be [rows, M]")
            .Require(featureOf.Shape.Rank == 1, "'featureOf' must be [seq]");
        int rows = masks.Shape[0];
        int m = masks.Shape[1];
        int seq = featureOf.Shape[0];
        args.RequireShape("ids", ids, seq).RequireShape("keyMask", keyMask, seq)
            .RequireShape("maskedIds", maskedIds, rows, seq).RequireShape("maskedKeyMask", maskedKeyMask, rows, seq)
            .Require(replacementId is null or >= 0, $"the replacement token id {replacementId} must not be negative");
        CheckFeatures(args, featureOf, m);
        int n = rows * seq;
        if (n == 0)
        {
            return;
        }

        int replacement = replacementId ?? -1;
        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Coalitions.MaskInputs", static acc => acc.LoadAutoGroupedKernel<
                Index1D, ArrayView<byte>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<int>, MaskParams>(MaskInputsKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, masks.View, featureOf.View, ids.View, keyMask.View, maskedIds.View, maskedKeyMask.View, new MaskParams(m, seq, replacement));
            }

            return;
        }

        var cpu = (CpuDevice)args.Device;
        fixed (byte* pm = masks.HostSpan)
        fixed (int* pf = featureOf.HostSpan, pi = ids.HostSpan, pk = keyMask.HostSpan, pmi = maskedIds.HostSpan, pmk = maskedKeyMask.HostSpan)
        {
            var job = new MaskJob
            {
                Masks = pm, FeatureOf = pf, Ids = pi, KeyMask = pk, MaskedIds = pmi, MaskedKeyMask = pmk,
                Params = new MaskParams(m, seq, replacement), Rows = rows, RowsPerItem = ItemSize(cpu, rows, seq),
            };
            cpu.Workers.Run(ref job, (rows + job.RowsPerItem - 1) / job.RowsPerItem);
        }
    }

    // Rows per work item: all of them in one item (run on the calling thread) below the threshold, else about
    // four items per thread.
    private static int ItemSize(CpuDevice cpu, int rows, int rowLength)
        => (long)rows * rowLength < ParallelThreshold || cpu.Threads == 1 ? rows : Math.Max(1, (rows + (4 * cpu.Threads) - 1) / (4 * cpu.Threads));

    // Every feature index in [−1, M), checked on the host before anything is written.
    private static void CheckFeatures(OpArgs args, Tensor<int> featureOf, int m)
    {
        int seq = (int)featureOf.Length;
        int[] host = ArrayPool<int>.Shared.Rent(Math.Max(seq, 1));
        try
        {
            var values = host.AsSpan(0, seq);
            featureOf.CopyTo(values);
            for (int t = 0; t < seq; t++)
            {
                if (values[t] < -1 || values[t] >= m)
                {
                    args.Fail($"featureOf[{t}] = {values[t]} is outside [−1, M) = [−1, {m})");
                }
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(host);
        }
    }

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
    private struct SampleJob : ICpuJob
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
    private struct MaskJob : ICpuJob
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

    // One thread per unit: masks [units · (paired + 1), M]; thresholds [classes]
    private static void SampleKernel(Index1D u, ArrayView<byte> masks, ArrayView<uint> thresholds, SampleParams p)
    {
        long row = (long)(int)u * (p.Paired + 1) * p.M;
        var words = Philox.Block(0, (uint)(int)u, p.Stream, 0, p.Key0, p.Key1);
        int size = p.SmallestSize;
        for (int j = 0; j < p.Classes - 1; j++)
        {
            size += thresholds[j] <= words.X0 ? 1 : 0;
        }

        int k = XMin(size, p.M - size);
        byte fill = (byte)(size > p.M - size ? 1 : 0);
        byte mark = (byte)(1 - fill);
        for (int f = 0; f < p.M; f++)
        {
            masks[row + f] = fill;
        }

        for (int w = 1; w <= k; w++)
        {
            if ((w & 3) == 0)
            {
                words = Philox.Block((uint)(w >> 2), (uint)(int)u, p.Stream, 0, p.Key0, p.Key1);
            }

            int j = p.M - k + w - 1;
            int t = Philox.Below(words[w & 3], j + 1);
            if (masks[row + t] == mark)
            {
                masks[row + j] = mark;
            }
            else
            {
                masks[row + t] = mark;
            }
        }

        if (p.Paired != 0)
        {
            for (int f = 0; f < p.M; f++)
            {
                masks[row + p.M + f] = (byte)(1 - masks[row + f]);
            }
        }
    }

    // masks [rows, M], featureOf/ids/keyMask [seq] -> maskedIds/maskedKeyMask [rows, seq]
    private static void MaskInputsKernel(
        Index1D i, ArrayView<byte> masks, ArrayView<int> featureOf, ArrayView<int> ids, ArrayView<int> keyMask, ArrayView<int> maskedIds, ArrayView<int> maskedKeyMask, MaskParams p)
    {
        int r = i / p.Seq;
        int t = i - (r * p.Seq);
        int f = featureOf[t];
        bool kept = f < 0 || masks[((long)r * p.M) + f] != 0;
        maskedIds[i] = kept || p.Replacement < 0 ? ids[t] : p.Replacement;
        maskedKeyMask[i] = kept || p.Replacement >= 0 ? keyMask[t] : 0;
    }

    private static int XMin(int a, int b) => a < b ? a : b;

    /// <summary>Sampling settings passed to the kernel: M, size classes, the key and the stream.</summary>
    internal readonly struct SampleParams(int m, int classes, int smallestSize, int paired, uint key0, uint key1, uint stream)
    {
        public readonly int M = m;
        public readonly int Classes = classes;
        public readonly int SmallestSize = smallestSize;
        public readonly int Paired = paired;
        public readonly uint Key0 = key0;
        public readonly uint Key1 = key1;
        public readonly uint Stream = stream;
    }

    /// <summary>Masking settings passed to the kernel; a negative replacement means drop from attention.</summary>
    internal readonly struct MaskParams(int m, int seq, int replacement)
    {
        public readonly int M = m;
        public readonly int Seq = seq;
        public readonly int Replacement = replacement;
    }
}
