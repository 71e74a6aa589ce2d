using System.Text;
using System.Text.RegularExpressions;

namespace Headlight.Models.Tokenization.HfTokenizerJson;

/// <summary>How a split pre-tokenizer treats the delimiters it finds (tokenizer.json's "behavior").</summary>
internal enum SplitBehavior
{
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

/// <summary>A tokenizer.json pre-tokenizer: cuts each piece into smaller pieces (the words the model sees).</summary>
internal abstract class PreTokenizer
{
    /// <summary>Splits <paramref name="piece"/>, the <paramref name="index"/>-th piece of its sequence, into <paramref name="output"/>.</summary>
    public abstract void Split(AlignedText piece, int index, List<AlignedText> output);

    /// <summary>Cuts a piece at delimiters [start, end) according to <paramref name="behavior"/>.</summary>
    protected static void Cut(AlignedText piece, List<(int Start, int End)> delimiters, SplitBehavior behavior, bool invert, List<AlignedText> output)
    {
        // spans covering the piece: (start, end, isDelimiter)
        var spans = new List<(int Start, int End, bool Delimiter)>(delimiters.Count * 2 + 1);
        int last = 0;
        foreach (var (start, end) in delimiters)
        {
            if (end == start)
            {
                continue;
            }

            if (start > last)
            {
                spans.Add((last, start, invert));
            }

            spans.Add((start, end, !invert));
            last = end;
        }

        if (last < piece.Length)
        {
            spans.Add((last, piece.Length, invert));
        }

        int pending = -1; // start of a piece still open (merged-with-next / contiguous)
        int pendingEnd = -1;
        void Flush()
        {
            if (pending >= 0 && pendingEnd > pending)
            {
                output.Add(piece.Slice(pending, pendingEnd));
            }

            pending = -1;
        }

        for (int i = 0; i < spans.Count; i++)
        {
            var (start, end, delimiter) = spans[i];
            switch (behavior)
            {
                case SplitBehavior.Removed:
                    if (!delimiter)
                    {
                        output.Add(piece.Slice(start, end));
                    }

                    break;
                case SplitBehavior.Isolated:
                    output.Add(piece.Slice(start, end));
                    break;
                case SplitBehavior.MergedWithPrevious:
                    if (delimiter && i > 0 && !spans[i - 1].Delimiter)
                    {
                        // the delimiter joins the piece just written from span i - 1
                        output[^1] = piece.Slice(spans[i - 1].Start, end);
                    }
                    else
                    {
                        output.Add(piece.Slice(start, end));
                    }

                    break;
                case SplitBehavior.MergedWithNext:
                    if (delimiter)
                    {
                        Flush();
                        pending = start;
                        pendingEnd = end;
                    }
                    else
                    {
                        if (pending < 0)
                        {
                            pending = start;
                        }

                        pendingEnd = end;
                        Flush();
                    }

                    break;
                case SplitBehavior.Contiguous:
                    if (delimiter && pending >= 0)
                    {
                        pendingEnd = end;
                    }
                    else if (delimiter)
                    {
                        pending = start;
                        pendingEnd = end;
                    }
                    else
                    {
                        Flush();
                        output.Add(piece.Slice(start, end));
                    }

                    break;
            }
        }

        Flush();
    }

    /// <summary>Delimiters: each code point for which <paramref name="predicate"/> holds.</summary>
    protected static List<(int Start, int End)> CodePoints(string text, Func<int, bool> predicate)
    {
        var result = new List<(int, int)>();
        for (int i = 0; i < text.Length;)
        {
            int start = i;
            int cp = AlignedText.ReadCodePoint(text, ref i);
            if (predicate(cp))
            {
                result.Add((start, i));
            }
        }

        return result;
    }

    internal static bool IsWhitespace(int cp) => Rune.IsValid(cp) && Rune.IsWhiteSpace(new Rune(cp));

    internal static bool IsPunctuation(int cp) => BertCharacters.IsPunctuation(cp);
}

internal sealed class BertPreTokenizerStep : PreTokenizer
{
    public override void Split(AlignedText piece, int index, List<AlignedText> output)
    {
        var words = new List<AlignedText>();
        Cut(piece, CodePoints(piece.Text, IsWhitespace), SplitBehavior.Removed, false, words);
        foreach (AlignedText word in words)
        {
            Cut(word, CodePoints(word.Text, IsPunctuation), SplitBehavior.Isolated, false, output);
        }
    }
}

internal sealed class WhitespaceSplitStep : PreTokenizer
{
    public override void Split(AlignedText piece, int index, List<AlignedText> output) =>
        Cut(piece, CodePoints(piece.Text, IsWhitespace), SplitBehavior.Removed, false, output);
}

internal sealed class PunctuationStep(SplitBehavior behavior) : PreTokenizer
{
    public override void Split(AlignedText piece, int index, List<AlignedText> output) =>
        Cut(piece, CodePoints(piece.Text, IsPunctuation), behavior, false, output);
}

internal sealed class DigitsStep(bool individual) : PreTokenizer
{
    public override void Split(AlignedText piece, int index, List<AlignedText> output) =>
        Cut(piece, CodePoints(piece.Text, cp => Rune.IsValid(cp) && Rune.IsNumber(new Rune(cp))),
            individual ? SplitBehavior.Isolated : SplitBehavior.Contiguous, false, output);
}

/// <summary>Split with a literal or regex pattern, and Whitespace (<c>\w+|[^\w\s]+</c> kept).</summary>
internal sealed class RegexSplitStep(Regex pattern, SplitBehavior behavior, bool invert) : PreTokenizer
{
    public override void Split(AlignedText piece, int index, List<AlignedText> output) =>
        Cut(piece, RegexSplitter.Matches(pattern, piece.Text), behavior, invert, output);
}

internal sealed class MetaspaceStep(char replacement, string prependScheme, bool split) : PreTokenizer
{
    public override void Split(AlignedText piece, int index, List<AlignedText> output)
    {
        // Spaces become the replacement first; a piece that then does not start with it gets one,
        // aligned to its first character.
        var builder = new AlignedText.Builder(piece.Length + 1);
        bool prepend = prependScheme == "always" || (prependScheme == "first" && index == 0);
        if (prepend && piece.Length > 0 && piece.Text[0] != replacement && piece.Text[0] != ' ')
        {
            builder.Add(replacement, piece.Starts[0], piece.Ends[0]);
        }

        for (int i = 0; i < piece.Length; i++)
        {
            builder.Add(piece.Text[i] == ' ' ? replacement : piece.Text[i], piece.Starts[i], piece.Ends[i]);
        }

        AlignedText replaced = builder.Build();
        if (!split)
        {
            output.Add(replaced);
            return;
        }

        Cut(replaced, CodePoints(replaced.Text, cp => cp == replacement), SplitBehavior.MergedWithNext, false, output);
    }
}

/// <summary>
/// ByteLevel: optionally a leading space and GPT-2's split, then every UTF-8 byte written as
/// GPT-2's printable stand-in character, each aligned to the whole character it came from.
/// </summary>
internal sealed class ByteLevelStep(bool addPrefixSpace, bool useRegex) : PreTokenizer
{
    internal const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private static readonly Regex Gpt2 = RegexSplitter.Compile(Gpt2Pattern, literal: false);

    /// <summary>GPT-2's byte → character table.</summary>
    internal static readonly char[] ByteChars = BuildByteChars();

    public override void Split(AlignedText piece, int index, List<AlignedText> output)
    {
        if (addPrefixSpace && piece.Length > 0 && piece.Text[0] != ' ')
        {
            var b = new AlignedText.Builder(piece.Length + 1);
            b.Add(' ', piece.Starts[0], piece.Ends[0]);
            b.Append(piece, 0, piece.Length);
            piece = b.Build();
        }

        var parts = new List<AlignedText>();
        if (useRegex)
        {
            Cut(piece, RegexSplitter.Matches(Gpt2, piece.Text), SplitBehavior.Isolated, false, parts);
        }
        else
        {
            parts.Add(piece);
        }

        Span<byte> utf8 = stackalloc byte[4];
        foreach (AlignedText part in parts)
        {
            var builder = new AlignedText.Builder(part.Length * 2);
            for (int i = 0; i < part.Length;)
            {
                int start = i;
                int cp = AlignedText.ReadCodePoint(part.Text, ref i);
                Rune rune = Rune.IsValid(cp) ? new Rune(cp) : Rune.ReplacementChar;
                int n = rune.EncodeToUtf8(utf8);
                for (int k = 0; k < n; k++)
                {
                    builder.Add(ByteChars[utf8[k]], part.Starts[start], part.Ends[i - 1]);
                }
            }

            output.Add(builder.Build());
        }
    }

    private static char[] BuildByteChars()
    {
        var chars = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            chars[b] = printable ? (char)b : (char)next++;
        }

        return chars;
    }
}

internal sealed class SequencePreTokenizer(IReadOnlyList<PreTokenizer> steps) : PreTokenizer
{
    public override void Split(AlignedText piece, int index, List<AlignedText> output)
    {
        var current = new List<AlignedText> { piece };
        foreach (PreTokenizer step in steps)
        {
            var next = new List<AlignedText>();
            for (int i = 0; i < current.Count; i++)
            {
                step.Split(current[i], index + i, next);
            }

            current = next;
        }

        output.AddRange(current);
    }
}
