using System.Collections.Frozen;

namespace Headlight.Models.Tokenization;

/// <summary>
/// Compatibility decomposition (the K of NFKD/NFKC, tables in UnicodeCompatibility.g.cs) and
/// canonical composition (the C of NFC), derived from the generated full decompositions: the
/// pair (composite of the decomposition's prefix, last code point) composes to the code point,
/// except for the composition exclusions (singletons, non-starter decompositions and the
/// script-specific and post-composition-version lists of Unicode's CompositionExclusions.txt).
/// </summary>
internal static partial class UnicodeTables
{
    private static readonly Lazy<FrozenDictionary<long, int>> Compositions = new(BuildCompositions);

    // Unicode CompositionExclusions.txt, sections "script specifics" and "post composition version".
    private static readonly (int First, int Last)[] ScriptExclusions =
    [
        (0x0958, 0x095F), (0x09DC, 0x09DD), (0x09DF, 0x09DF), (0x0A33, 0x0A33), (0x0A36, 0x0A36), (0x0A59, 0x0A5B),
        (0x0A5E, 0x0A5E), (0x0B5C, 0x0B5D), (0x0F43, 0x0F43), (0x0F4D, 0x0F4D), (0x0F52, 0x0F52), (0x0F57, 0x0F57),
        (0x0F5C, 0x0F5C), (0x0F69, 0x0F69), (0x0F76, 0x0F76), (0x0F78, 0x0F78), (0x0F93, 0x0F93), (0x0F9D, 0x0F9D),
        (0x0FA2, 0x0FA2), (0x0FA7, 0x0FA7), (0x0FAC, 0x0FAC), (0x0FB9, 0x0FB9), (0xFB1D, 0xFB1D), (0xFB1F, 0xFB1F),
        (0xFB2A, 0xFB36), (0xFB38, 0xFB3C), (0xFB3E, 0xFB3E), (0xFB40, 0xFB41), (0xFB43, 0xFB44), (0xFB46, 0xFB4E),
        (0x2ADC, 0x2ADC), (0x1D15E, 0x1D164), (0x1D1BB, 0x1D1C0),
    ];

    /// <summary>
    /// Writes the full compatibility decomposition (NFKD's, before ordering) of
    /// <paramref name="codePoint"/> to <paramref name="destination"/> (at least
    /// <see cref="MaxCompatibilityLength"/> long) and returns its length.
    /// </summary>
    internal static int DecomposeCompatibility(int codePoint, Span<int> destination)
    {
        int index = codePoint < 0xA0 ? -1 : CompatibilityCodePoints.BinarySearch(codePoint);
        if (index < 0)
        {
            return Decompose(codePoint, destination);
        }

        ReadOnlySpan<int> full = CompatibilityData[CompatibilityStarts[index]..CompatibilityStarts[index + 1]];
        full.CopyTo(destination);
        return full.Length;
    }

    /// <summary>The primary composite of <paramref name="first"/> and <paramref name="second"/>, or -1.</summary>
    internal static int Compose(int first, int second)
    {
        // Hangul: L + V -> LV, LV + T -> LVT.
        int l = first - LBase, v = second - VBase;
        if ((uint)l < LCount && (uint)v < VCount)
        {
            return SBase + (l * VCount + v) * TCount;
        }

        int s = first - SBase, t = second - TBase;
        if ((uint)s < SCount && s % TCount == 0 && t is > 0 and < TCount)
        {
            return first + t;
        }

        return Compositions.Value.TryGetValue(((long)first << 21) | (uint)second, out int c) ? c : -1;
    }

    private static FrozenDictionary<long, int> BuildCompositions()
    {
        ReadOnlySpan<int> points = DecomposedCodePoints;
        ReadOnlySpan<int> starts = DecompositionStarts;
        ReadOnlySpan<int> data = DecompositionData;
        var byDecomposition = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < points.Length; i++)
        {
            string key = string.Join(',', data[starts[i]..starts[i + 1]].ToArray());
            if (!byDecomposition.TryGetValue(key, out int existing) || points[i] < existing)
            {
                byDecomposition[key] = points[i];
            }
        }

        var result = new Dictionary<long, int>();
        for (int i = 0; i < points.Length; i++)
        {
            int cp = points[i];
            ReadOnlySpan<int> full = data[starts[i]..starts[i + 1]];
            if (full.Length < 2 || CombiningClass(full[0]) != 0 || IsScriptExclusion(cp))
            {
                continue;
            }

            int prefix = full.Length == 2 ? full[0] : byDecomposition.GetValueOrDefault(string.Join(',', full[..^1].ToArray()), -1);
            if (prefix < 0)
            {
                continue;
            }

            long key = ((long)prefix << 21) | (uint)full[^1];
            if (!result.TryGetValue(key, out int other) || cp < other)
            {
                result[key] = cp;
            }
        }

        return result.ToFrozenDictionary();
    }

    private static bool IsScriptExclusion(int cp)
    {
        foreach (var (first, last) in ScriptExclusions)
        {
            if (cp >= first && cp <= last)
            {
                return true;
            }
        }

        return false;
    }
}
