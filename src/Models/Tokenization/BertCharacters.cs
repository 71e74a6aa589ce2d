using System.Globalization;

namespace Headlight.Models.Tokenization;

/// <summary>BERT's character classes.</summary>
internal static class BertCharacters
{
    /// <summary>
    /// Removed while cleaning: categories Cc, Cf, Co and Cs, except tab, newline and carriage
    /// return (whitespace). Unassigned code points (Cn) are kept, as Hugging Face keeps them.
    /// </summary>
    public static bool IsControl(int cp)
    {
        if (cp is '\t' or '\n' or '\r')
        {
            return false;
        }

        if (cp is >= 0x20 and < 0x7F)
        {
            return false;
        }

        return CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.Control or UnicodeCategory.Format
            or UnicodeCategory.PrivateUse or UnicodeCategory.Surrogate;
    }

    /// <summary>Word separators: tab, newline, carriage return and the Zs, Zl and Zp categories.</summary>
    public static bool IsWhitespace(int cp)
    {
        if (cp is ' ' or '\t' or '\n' or '\r')
        {
            return true;
        }

        if (cp < 0x80)
        {
            return false;
        }

        return CharUnicodeInfo.GetUnicodeCategory(cp) is UnicodeCategory.SpaceSeparator
            or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator;
    }

    /// <summary>ASCII 33–47, 58–64, 91–96, 123–126 (symbols included) and every Unicode P* category.</summary>
    public static bool IsPunctuation(int cp)
    {
        if (cp < 0x80)
        {
            return cp is >= 33 and <= 47 or >= 58 and <= 64 or >= 91 and <= 96 or >= 123 and <= 126;
        }

        return CharUnicodeInfo.GetUnicodeCategory(cp) is >= UnicodeCategory.ConnectorPunctuation
            and <= UnicodeCategory.OtherPunctuation;
    }

    /// <summary>Category Mn: what accent stripping drops after decomposition.</summary>
    public static bool IsNonspacingMark(int cp) =>
        cp >= 0x300 && CharUnicodeInfo.GetUnicodeCategory(cp) == UnicodeCategory.NonSpacingMark;

    /// <summary>
    /// BERT's "Chinese character" blocks: CJK Unified Ideographs, Extensions A–F and the
    /// compatibility ideographs. Kana and Hangul are not included (BERT splits them like letters).
    /// </summary>
    public static bool IsCjkIdeograph(int cp) =>
        cp is >= 0x4E00 and <= 0x9FFF
            or >= 0x3400 and <= 0x4DBF
            or >= 0x20000 and <= 0x2A6DF
            or >= 0x2A700 and <= 0x2B73F
            or >= 0x2B740 and <= 0x2B81F
            or >= 0x2B820 and <= 0x2CEAF
            or >= 0xF900 and <= 0xFAFF
            or >= 0x2F800 and <= 0x2FA1F;
}
