using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Headlight.Models.Tokenization.HfTokenizerJson;

/// <summary>
/// Runs tokenizer.json's (Oniguruma-flavoured) patterns with .NET's Regex. .NET matches UTF-16
/// units, so a character outside the Basic Multilingual Plane would be two surrogates (category
/// Cs) and miss \p{L}, \p{N}: before matching, each such character is replaced by one BMP
/// character of the same general category, and match positions are mapped back.
/// </summary>
internal static class RegexSplitter
{
    public static Regex Compile(string pattern, bool literal) =>
        new(literal ? Regex.Escape(pattern) : pattern, RegexOptions.CultureInvariant, TimeSpan.FromSeconds(10));

    /// <summary>Matches of <paramref name="regex"/> in <paramref name="text"/> as [start, end) UTF-16 ranges.</summary>
    public static List<(int Start, int End)> Matches(Regex regex, string text)
    {
        var result = new List<(int, int)>();
        if (text.Length == 0)
        {
            return result;
        }

        int[]? map = null;
        string subject = text;
        if (HasSurrogates(text))
        {
            // map[j] = the original index of substituted unit j; map[^1] = text.Length
            var builder = new StringBuilder(text.Length);
            var positions = new List<int>(text.Length + 1);
            for (int i = 0; i < text.Length;)
            {
                positions.Add(i);
                int start = i;
                int cp = AlignedText.ReadCodePoint(text, ref i);
                builder.Append(i - start == 2 ? StandIn(cp) : text[start]);
            }

            positions.Add(text.Length);
            map = [.. positions];
            subject = builder.ToString();
        }

        for (Match m = regex.Match(subject); m.Success; m = m.NextMatch())
        {
            int start = m.Index, end = m.Index + m.Length;
            result.Add(map is null ? (start, end) : (map[start], map[end]));
        }

        return result;
    }

    private static bool HasSurrogates(string text)
    {
        foreach (char c in text)
        {
            if (char.IsSurrogate(c))
            {
                return true;
            }
        }

        return false;
    }

    // One BMP character per general category, so classes like \p{L}, \p{N}, \p{So} match alike.
    private static char StandIn(int cp) => CharUnicodeInfo.GetUnicodeCategory(cp) switch
    {
        UnicodeCategory.UppercaseLetter => 'A',
        UnicodeCategory.LowercaseLetter => 'a',
        UnicodeCategory.TitlecaseLetter => '\u01C5',
        UnicodeCategory.ModifierLetter => '\u02B0',
        UnicodeCategory.OtherLetter => '\u00AA',
        UnicodeCategory.NonSpacingMark => '\u0300',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '0',
        UnicodeCategory.LetterNumber => '\u2160',
        UnicodeCategory.OtherNumber => '\u00B2',
        UnicodeCategory.MathSymbol => '+',
        UnicodeCategory.CurrencySymbol => '$',
        UnicodeCategory.ModifierSymbol => '^',
        UnicodeCategory.OtherSymbol => '\u00A9',
        UnicodeCategory.ConnectorPunctuation => '_',
        UnicodeCategory.DashPunctuation => '-',
        UnicodeCategory.OpenPunctuation => '(',
        UnicodeCategory.ClosePunctuation => ')',
        UnicodeCategory.InitialQuotePunctuation => '\u00AB',
        UnicodeCategory.FinalQuotePunctuation => '\u00BB',
        UnicodeCategory.OtherPunctuation => '!',
        UnicodeCategory.Format => '\u00AD',
        UnicodeCategory.PrivateUse => '\uE000',
        _ => '\uFFFF', // unassigned
    };
}
