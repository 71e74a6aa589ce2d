using System.Buffers;

namespace Headlight.Kernels;

/// <summary>
/// Coalitions of features for Kernel SHAP, on the device: random coalitions drawn with
/// <see cref="Philox"/> (a size from a given distribution, then a uniform subset of that size), and the
/// masked model inputs that switch each coalition's absent features off. Masks are bytes, 1 for a
/// feature that is present and 0 for one that is masked.
/// </summary>
public static partial class Coalitions
{
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
        args.Backend.CoalitionsSample(masks, thresholds, units, p);
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
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, a feature index is outside [−1, M) (on an ILGPU device checked by a kernel and raised by the next download or synchronisation; nothing is written), or the replacement is negative.</exception>
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
        if (seq > 0)
        {
            args.Backend.CoalitionsCheckFeatures(args, featureOf, m);
        }

        int n = rows * seq;
        if (n == 0)
        {
            return;
        }

        int replacement = replacementId ?? -1;
        args.Backend.CoalitionsMaskInputs(masks, featureOf, ids, keyMask, maskedIds, maskedKeyMask, rows, new MaskParams(m, seq, replacement));
    }

    /// <summary>The failure for feature <paramref name="value"/> at token <paramref name="t"/>.</summary>
    internal static string FeatureOutsideMask(int t, int value, int m) => $"featureOf[{t}] = {value} is outside [−1, M) = [−1, {m})";

    // Every feature index in [−1, M) on the host, before anything is written: the default of
    // Backend.CoalitionsCheckFeatures (a memory copy on the cpu device).
    internal static void CheckFeaturesOnHost(in OpArgs args, Tensor<int> featureOf, int m)
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
                    args.Fail(FeatureOutsideMask(t, values[t], m));
                }
            }
        }
        finally
        {
            ArrayPool<int>.Shared.Return(host);
        }
    }

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

/// <summary>Coalitions' entry points on each backend (Coalitions.Cpu.cs, Coalitions.Ilgpu.cs); operands validated, none empty.</summary>
internal abstract partial class Backend
{
    /// <summary>Draws <paramref name="units"/> coalitions (two rows each when paired) into <paramref name="masks"/>.</summary>
    internal abstract void CoalitionsSample(Tensor<byte> masks, Tensor<uint> thresholds, int units, Coalitions.SampleParams p);

    /// <summary>
    /// Fails <paramref name="args"/> unless every feature index lies in <c>[−1, m)</c>, now or (on a device that
    /// checks in a kernel) at the next download or synchronisation; <paramref name="featureOf"/> is not empty.
    /// </summary>
    internal virtual void CoalitionsCheckFeatures(in OpArgs args, Tensor<int> featureOf, int m) => Coalitions.CheckFeaturesOnHost(args, featureOf, m);

    /// <summary>Writes the <paramref name="rows"/> masked input rows of the coalitions in <paramref name="masks"/>.</summary>
    internal abstract void CoalitionsMaskInputs(
        Tensor<byte> masks, Tensor<int> featureOf, Tensor<int> ids, Tensor<int> keyMask, Tensor<int> maskedIds, Tensor<int> maskedKeyMask, int rows, Coalitions.MaskParams p);
}
