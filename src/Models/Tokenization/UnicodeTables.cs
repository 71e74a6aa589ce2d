namespace Headlight.Models.Tokenization;

/// <summary>
/// Canonical decomposition (the D of NFD) and canonical combining classes, from tables generated
/// out of UnicodeData.txt. The project runs with InvariantGlobalization, where
/// <see cref="string.Normalize()"/> leaves text undecomposed, so BERT's accent stripping needs its
/// own data.
/// </summary>
internal static partial class UnicodeTables
{
    // Hangul syllables decompose algorithmically (Unicode chapter 3.12).
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    /// <summary>The longest full canonical decomposition of one code point (in the generated tables it is 4).</summary>
    internal const int MaxDecompositionLength = 4;

    /// <summary>
    /// Writes the full canonical decomposition of <paramref name="codePoint"/> to
    /// <paramref name="destination"/> (at least <see cref="MaxDecompositionLength"/> long) and
    /// returns its length; a code point without one is written as itself.
    /// </summary>
    internal static int Decompose(int codePoint, Span<int> destination)
    {
        // Nothing below U+00C0 decomposes: the ASCII fast path.
        if (codePoint < 0xC0)
        {
            destination[0] = codePoint;
            return 1;
        }

        int s = codePoint - SBase;
        if ((uint)s < SCount)
        {
            destination[0] = LBase + s / NCount;
            destination[1] = VBase + s % NCount / TCount;
            int t = s % TCount;
            if (t == 0)
            {
                return 2;
            }

            destination[2] = TBase + t;
            return 3;
        }

        int index = DecomposedCodePoints.BinarySearch(codePoint);
        if (index < 0)
        {
            destination[0] = codePoint;
            return 1;
        }

        ReadOnlySpan<int> full = DecompositionData[DecompositionStarts[index]..DecompositionStarts[index + 1]];
        full.CopyTo(destination);
        return full.Length;
    }

    /// <summary>The canonical combining class of <paramref name="codePoint"/> (0 for starters).</summary>
    internal static int CombiningClass(int codePoint)
    {
        if (codePoint < 0x300)
        {
            return 0;
        }

        // Binary search over runs of three: first, last, class.
        ReadOnlySpan<int> runs = CombiningClassRuns;
        int lo = 0, hi = runs.Length / 3 - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (codePoint < runs[mid * 3])
            {
                hi = mid - 1;
            }
            else if (codePoint > runs[mid * 3 + 1])
            {
                lo = mid + 1;
            }
            else
            {
                return runs[mid * 3 + 2];
            }
        }

        return 0;
    }
}
