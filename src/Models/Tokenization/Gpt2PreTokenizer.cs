using System.Globalization;
using System.Text;

namespace Headlight.Models.Tokenization;

/// <summary>
/// GPT-2's pre-tokenisation: cuts a text into the chunks that BPE then encodes one by one, as the
/// pattern <c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c> matches
/// them, scanning code points.
/// </summary>
/// <remarks>
/// Written as a scanner rather than a .NET <see cref="System.Text.RegularExpressions.Regex"/>:
/// .NET's regex classes look at UTF-16 units, so a letter outside the Basic Multilingual Plane
/// (𝐀, 𠀀) is a surrogate pair that <c>\p{L}</c> does not match, and "a𠀀b" would become three
/// chunks instead of GPT-2's one. Whitespace is Unicode's White_Space property
/// (<see cref="Rune.IsWhiteSpace"/>), as in the original encoder's <c>regex</c> module. A lone
/// surrogate counts as a symbol (it is encoded as U+FFFD, which is one).
/// </remarks>
internal static class Gpt2PreTokenizer
{
    private enum Kind
    {
        Letter,
        Number,
        Space,
        Other,
    }

    /// <summary>Appends the chunks of <paramref name="text"/> as [start, end) UTF-16 ranges; together they cover the text.</summary>
    public static void Split(ReadOnlySpan<char> text, List<(int Start, int End)> chunks)
    {
        int start = 0;
        while (start < text.Length)
        {
            int end = MatchAt(text, start);
            chunks.Add((start, end));
            start = end;
        }
    }

    // The end of the pattern's match at `start`: the first alternative that matches wins.
    private static int MatchAt(ReadOnlySpan<char> text, int start)
    {
        int contraction = ContractionLength(text[start..]);
        if (contraction > 0)
        {
            return start + contraction;
        }

        // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: an optional U+0020, then a run of one class.
        int runStart = start;
        if (text[start] == ' ' && start + 1 < text.Length)
        {
            runStart = start + 1;
        }

        Kind kind = KindAt(text, runStart, out int length);
        if (kind != Kind.Space)
        {
            int end = runStart + length;
            while (end < text.Length && KindAt(text, end, out length) == kind)
            {
                end += length;
            }

            return end;
        }

        // `\s+(?!\S)|\s+`: a whitespace run; when a non-space follows, its last character is left
        // for that word (" word"), unless the run is one character long. White_Space is all BMP.
        int spaceEnd = start;
        while (spaceEnd < text.Length && KindAt(text, spaceEnd, out _) == Kind.Space)
        {
            spaceEnd++;
        }

        return spaceEnd < text.Length && spaceEnd - start >= 2 ? spaceEnd - 1 : spaceEnd;
    }

    // 's 't 'm 'd 're 've 'll, case-sensitive and ASCII only, as in GPT-2.
    private static int ContractionLength(ReadOnlySpan<char> s)
    {
        if (s.Length < 2 || s[0] != '\'')
        {
            return 0;
        }

        switch (s[1])
        {
            case 's' or 't' or 'm' or 'd':
                return 2;
            case 'r' or 'v' when s.Length >= 3 && s[2] == 'e':
                return 3;
            case 'l' when s.Length >= 3 && s[2] == 'l':
                return 3;
            default:
                return 0;
        }
    }

    private static Kind KindAt(ReadOnlySpan<char> text, int index, out int length)
    {
        if (Rune.DecodeFromUtf16(text[index..], out Rune rune, out length) != System.Buffers.OperationStatus.Done)
        {
            return Kind.Other; // lone surrogate: U+FFFD, a symbol
        }

        if (Rune.IsWhiteSpace(rune))
        {
            return Kind.Space;
        }

        return Rune.GetUnicodeCategory(rune) switch
        {
            UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter => Kind.Letter,
            UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber => Kind.Number,
            _ => Kind.Other,
        };
    }
}
