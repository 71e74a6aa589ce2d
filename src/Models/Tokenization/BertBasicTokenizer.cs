using System.Runtime.InteropServices;
using System.Text;

namespace Headlight.Models.Tokenization;

/// <summary>
/// BERT's basic tokenisation, in the order Hugging Face's BertNormalizer and BertPreTokenizer
/// apply it: clean the text, put word boundaries around CJK ideographs, strip accents (NFD, then
/// drop Mn marks), lower-case, then split on whitespace and punctuation. Every normalised
/// character remembers the span of the original characters it came from, so word pieces map back
/// to the caller's text.
/// </summary>
internal sealed class BertBasicTokenizer(bool lowerCase, bool stripAccents, bool isolateCjk)
{
    // One normalised code point and the original UTF-16 span it came from; CodePoint -1 is a word boundary.
    private readonly record struct Entry(int CodePoint, int Start, int End);

    private static readonly Entry Boundary = new(-1, 0, 0);

    /// <summary>Splits <paramref name="text"/> into normalised words.</summary>
    public NormalizedWords Split(string text)
    {
        // Pass 1: clean, isolate CJK ideographs, decompose (when stripping accents).
        var entries = new List<Entry>(text.Length + 2);
        bool reorder = false;
        Span<int> decomposed = stackalloc int[UnicodeTables.MaxDecompositionLength];
        for (int i = 0; i < text.Length;)
        {
            int start = i;
            int cp = ReadCodePoint(text, ref i);
            if (cp == 0 || cp == 0xFFFD || BertCharacters.IsControl(cp))
            {
                continue;
            }

            if (BertCharacters.IsWhitespace(cp))
            {
                entries.Add(Boundary);
                continue;
            }

            bool cjk = isolateCjk && BertCharacters.IsCjkIdeograph(cp);
            if (cjk)
            {
                entries.Add(Boundary);
            }

            if (stripAccents)
            {
                int n = UnicodeTables.Decompose(cp, decomposed);
                for (int k = 0; k < n; k++)
                {
                    entries.Add(new Entry(decomposed[k], start, i));
                    reorder |= UnicodeTables.CombiningClass(decomposed[k]) != 0;
                }
            }
            else
            {
                entries.Add(new Entry(cp, start, i));
            }

            if (cjk)
            {
                entries.Add(Boundary);
            }
        }

        if (reorder)
        {
            CanonicalOrder(CollectionsMarshal.AsSpan(entries));
        }

        // Pass 2: drop nonspacing marks, lower-case, split on boundaries and punctuation.
        var words = new NormalizedWords(text.Length + 8);
        foreach (Entry e in entries)
        {
            if (e.CodePoint < 0)
            {
                words.EndWord();
                continue;
            }

            int cp = e.CodePoint;
            if (stripAccents && BertCharacters.IsNonspacingMark(cp))
            {
                continue;
            }

            if (lowerCase)
            {
                if (cp == 0x130)
                {
                    // The one unconditional multi-character lower-case mapping (İ -> i + U+0307),
                    // which invariant-culture casing leaves alone. Only reached when accents stay.
                    words.Append('i', e.Start, e.End);
                    words.Append(0x307, e.Start, e.End);
                    continue;
                }

                cp = ToLower(cp);
            }

            if (BertCharacters.IsPunctuation(cp))
            {
                words.EndWord();
                words.Append(cp, e.Start, e.End);
                words.EndWord();
            }
            else
            {
                words.Append(cp, e.Start, e.End);
            }
        }

        words.EndWord();
        return words;
    }

    private static int ReadCodePoint(string text, ref int i)
    {
        char c = text[i++];
        if (char.IsHighSurrogate(c) && i < text.Length && char.IsLowSurrogate(text[i]))
        {
            return char.ConvertToUtf32(c, text[i++]);
        }

        // A lone surrogate comes back as itself; its category (Cs) makes it a control character.
        return c;
    }

    // Simple (per character, context-free) lower-casing, as Hugging Face's normaliser does: a final
    // capital sigma becomes σ, not ς.
    private static int ToLower(int cp)
    {
        if (cp < 0x80)
        {
            return (uint)(cp - 'A') <= 'Z' - 'A' ? cp + 32 : cp;
        }

        return cp <= 0xFFFF ? char.ToLowerInvariant((char)cp) : Rune.ToLowerInvariant(new Rune(cp)).Value;
    }

    // NFD's canonical ordering: within each run of non-starters, a stable sort by combining class.
    // It runs before the marks are dropped, so the surviving spacing marks end up in NFD order.
    private static void CanonicalOrder(Span<Entry> entries)
    {
        int i = 0;
        while (i < entries.Length)
        {
            if (ClassOf(entries[i]) == 0)
            {
                i++;
                continue;
            }

            int runStart = i;
            while (i < entries.Length && ClassOf(entries[i]) != 0)
            {
                i++;
            }

            SortRun(entries[runStart..i]);
        }
    }

    private static int ClassOf(Entry e) => e.CodePoint < 0 ? 0 : UnicodeTables.CombiningClass(e.CodePoint);

    // A stable sort of one run of non-starters by combining class: insertion sort for the usual
    // short runs, a counting sort (linear in the run) for long ones, which hostile text can make.
    private static void SortRun(Span<Entry> run)
    {
        if (run.Length <= 16)
        {
            for (int i = 1; i < run.Length; i++)
            {
                Entry e = run[i];
                int ccc = ClassOf(e);
                int j = i - 1;
                while (j >= 0 && ClassOf(run[j]) > ccc)
                {
                    run[j + 1] = run[j];
                    j--;
                }

                run[j + 1] = e;
            }

            return;
        }

        Span<int> offsets = stackalloc int[257];
        offsets.Clear();
        var classes = new byte[run.Length];
        for (int i = 0; i < run.Length; i++)
        {
            classes[i] = (byte)ClassOf(run[i]);
            offsets[classes[i] + 1]++;
        }

        for (int c = 1; c < offsets.Length; c++)
        {
            offsets[c] += offsets[c - 1];
        }

        var sorted = new Entry[run.Length];
        for (int i = 0; i < run.Length; i++)
        {
            sorted[offsets[classes[i]]++] = run[i];
        }

        sorted.CopyTo(run);
    }
}
