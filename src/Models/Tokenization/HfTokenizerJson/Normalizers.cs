using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace Headlight.Models.Tokenization.HfTokenizerJson;

/// <summary>A tokenizer.json normaliser: rewrites text, keeping each unit's original span.</summary>
internal abstract class Normalizer
{
    public abstract AlignedText Apply(AlignedText text);

    /// <summary>Maps each code point to zero or more code points aligned to it.</summary>
    protected static AlignedText MapCodePoints(AlignedText text, Action<int, List<int>> map)
    {
        var builder = new AlignedText.Builder(text.Length);
        var output = new List<int>(4);
        for (int i = 0; i < text.Length;)
        {
            int start = i;
            int cp = AlignedText.ReadCodePoint(text.Text, ref i);
            output.Clear();
            map(cp, output);
            foreach (int o in output)
            {
                builder.Append(o, text.Starts[start], text.Ends[i - 1]);
            }
        }

        return builder.Build();
    }

    /// <summary>Simple (context-free) lower-casing, as the Rust library's char::to_lowercase.</summary>
    internal static void ToLower(int cp, List<int> output)
    {
        if (cp == 0x130)
        {
            output.Add('i');
            output.Add(0x307);
        }
        else if (cp < 0x80)
        {
            output.Add((uint)(cp - 'A') <= 'Z' - 'A' ? cp + 32 : cp);
        }
        else
        {
            output.Add(cp <= 0xFFFF ? char.ToLowerInvariant((char)cp) : Rune.ToLowerInvariant(new Rune(cp)).Value);
        }
    }

    internal static bool IsMark(int cp) => cp >= 0x300 && CharUnicodeInfo.GetUnicodeCategory(cp)
        is UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark;

    /// <summary>Canonical (NFD) or compatibility (NFKD) decomposition with canonical ordering, optionally recomposed (NFC, NFKC).</summary>
    internal static AlignedText Canonical(AlignedText text, bool compose, bool compatible = false)
    {
        // entries: (code point, original start, original end)
        var entries = new List<(int Cp, int Start, int End)>(text.Length + 4);
        Span<int> decomposed = stackalloc int[Math.Max(UnicodeTables.MaxDecompositionLength, UnicodeTables.MaxCompatibilityLength)];
        bool reorder = false;
        for (int i = 0; i < text.Length;)
        {
            int start = i;
            int cp = AlignedText.ReadCodePoint(text.Text, ref i);
            int n = compatible ? UnicodeTables.DecomposeCompatibility(cp, decomposed) : UnicodeTables.Decompose(cp, decomposed);
            for (int k = 0; k < n; k++)
            {
                entries.Add((decomposed[k], text.Starts[start], text.Ends[i - 1]));
                reorder |= UnicodeTables.CombiningClass(decomposed[k]) != 0;
            }
        }

        Span<(int Cp, int Start, int End)> span = CollectionsMarshal.AsSpan(entries);
        if (reorder)
        {
            for (int i = 1; i < span.Length; i++)
            {
                var e = span[i];
                int ccc = UnicodeTables.CombiningClass(e.Cp);
                if (ccc == 0)
                {
                    continue;
                }

                int j = i - 1;
                while (j >= 0 && UnicodeTables.CombiningClass(span[j].Cp) > ccc)
                {
                    span[j + 1] = span[j];
                    j--;
                }

                span[j + 1] = e;
            }
        }

        int count = span.Length;
        if (compose && count > 1)
        {
            // Unicode's canonical composition: a mark joins the last starter unless a mark of the
            // same or higher class (or a starter) lies between them.
            int starter = CombiningClass0(span[0].Cp) ? 0 : -1;
            int lastClass = starter == 0 ? 0 : 256;
            int write = 1;
            for (int read = 1; read < span.Length; read++)
            {
                var e = span[read];
                int ccc = UnicodeTables.CombiningClass(e.Cp);
                bool blocked = starter < 0 || (write - 1 != starter && (lastClass == 0 || lastClass >= ccc));
                int composite = blocked ? -1 : UnicodeTables.Compose(span[starter].Cp, e.Cp);
                if (composite >= 0)
                {
                    // The library keeps the starter's alignment: the mark's original units belong to no token.
                    span[starter] = span[starter] with { Cp = composite };
                    continue;
                }

                if (ccc == 0)
                {
                    starter = write;
                }

                lastClass = ccc;
                span[write++] = e;
            }

            count = write;
        }

        var builder = new AlignedText.Builder(text.Length);
        for (int i = 0; i < count; i++)
        {
            builder.Append(span[i].Cp, span[i].Start, span[i].End);
        }

        return builder.Build();
    }

    private static bool CombiningClass0(int cp) => UnicodeTables.CombiningClass(cp) == 0;
}

/// <summary>BertNormalizer: clean text, pad CJK ideographs with spaces, strip accents, lower-case.</summary>
internal sealed class BertNormalizerStep(bool cleanText, bool chineseChars, bool stripAccents, bool lowercase) : Normalizer
{
    public override AlignedText Apply(AlignedText text)
    {
        if (cleanText || chineseChars)
        {
            text = MapCodePoints(text, (cp, output) =>
            {
                if (cleanText && (cp == 0 || cp == 0xFFFD || BertCharacters.IsControl(cp)))
                {
                    return;
                }

                if (cleanText && BertCharacters.IsWhitespace(cp))
                {
                    output.Add(' ');
                    return;
                }

                bool cjk = chineseChars && BertCharacters.IsCjkIdeograph(cp);
                if (cjk)
                {
                    output.Add(' ');
                }

                output.Add(cp);
                if (cjk)
                {
                    output.Add(' ');
                }
            });
        }

        if (stripAccents)
        {
            text = Canonical(text, compose: false);
            text = MapCodePoints(text, (cp, output) =>
            {
                if (!BertCharacters.IsNonspacingMark(cp))
                {
                    output.Add(cp);
                }
            });
        }

        return lowercase ? MapCodePoints(text, ToLower) : text;
    }
}

internal sealed class LowercaseStep : Normalizer
{
    public override AlignedText Apply(AlignedText text) => MapCodePoints(text, ToLower);
}

internal sealed class CanonicalStep(bool compose, bool compatible) : Normalizer
{
    public override AlignedText Apply(AlignedText text) => Canonical(text, compose, compatible);
}

internal sealed class StripAccentsStep : Normalizer
{
    public override AlignedText Apply(AlignedText text) => MapCodePoints(text, (cp, output) =>
    {
        if (!IsMark(cp))
        {
            output.Add(cp);
        }
    });
}

internal sealed class StripStep(bool left, bool right) : Normalizer
{
    public override AlignedText Apply(AlignedText text)
    {
        int start = 0, end = text.Length;
        while (left && start < end && char.IsWhiteSpace(text.Text[start]))
        {
            start++;
        }

        while (right && end > start && char.IsWhiteSpace(text.Text[end - 1]))
        {
            end--;
        }

        return text.Slice(start, end);
    }
}

/// <summary>Replace: every match of a literal or regex pattern becomes the content.</summary>
internal sealed class ReplaceStep(Regex pattern, string content) : Normalizer
{
    public override AlignedText Apply(AlignedText text)
    {
        var builder = new AlignedText.Builder(text.Length);
        int last = 0;
        foreach (var (start, end) in RegexSplitter.Matches(pattern, text.Text))
        {
            if (end == start)
            {
                continue;
            }

            // The library counts the matched units as removed first, so what replaces them
            // aligns to the last of them.
            builder.Append(text, last, start);
            foreach (char c in content)
            {
                builder.Add(c, text.Starts[end - 1], text.Ends[end - 1]);
            }

            last = end;
        }

        builder.Append(text, last, text.Length);
        return builder.Build();
    }
}

internal sealed class PrependStep(string prepend) : Normalizer
{
    public override AlignedText Apply(AlignedText text)
    {
        if (text.Length == 0)
        {
            return text;
        }

        var builder = new AlignedText.Builder(text.Length + prepend.Length);
        foreach (char c in prepend)
        {
            builder.Add(c, text.Starts[0], text.Ends[0]);
        }

        builder.Append(text, 0, text.Length);
        return builder.Build();
    }
}

internal sealed class SequenceNormalizer(IReadOnlyList<Normalizer> steps) : Normalizer
{
    public override AlignedText Apply(AlignedText text)
    {
        foreach (Normalizer step in steps)
        {
            text = step.Apply(text);
        }

        return text;
    }
}
