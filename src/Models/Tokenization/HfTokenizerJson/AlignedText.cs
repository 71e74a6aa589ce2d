using System.Text;

namespace Headlight.Models.Tokenization.HfTokenizerJson;

/// <summary>
/// A piece of normalised text that remembers, for each of its UTF-16 units, the span of the
/// original text it came from (Hugging Face's NormalizedString alignments, in UTF-16 units).
/// </summary>
internal sealed class AlignedText
{
    public AlignedText(string text, int[] starts, int[] ends)
    {
        Text = text;
        Starts = starts;
        Ends = ends;
    }

    /// <summary>The normalised text.</summary>
    public string Text { get; }

    /// <summary>Per unit of <see cref="Text"/>, the first original unit it came from.</summary>
    public int[] Starts { get; }

    /// <summary>Per unit of <see cref="Text"/>, one past the last original unit it came from.</summary>
    public int[] Ends { get; }

    public int Length => Text.Length;

    /// <summary>Text [start, end) of the original, aligned one to one.</summary>
    public static AlignedText FromOriginal(string original, int start, int end)
    {
        var starts = new int[end - start];
        var ends = new int[end - start];
        for (int i = start; i < end; i++)
        {
            // Both halves of a surrogate pair align to the whole character.
            bool high = char.IsHighSurrogate(original[i]) && i + 1 < end && char.IsLowSurrogate(original[i + 1]);
            bool low = char.IsLowSurrogate(original[i]) && i > start && char.IsHighSurrogate(original[i - 1]);
            starts[i - start] = low ? i - 1 : i;
            ends[i - start] = high ? i + 2 : i + 1;
        }

        return new AlignedText(original[start..end], starts, ends);
    }

    /// <summary>Units [start, end) of this text.</summary>
    public AlignedText Slice(int start, int end) =>
        start == 0 && end == Length ? this : new AlignedText(Text[start..end], Starts[start..end], Ends[start..end]);

    /// <summary>The original span of units [start, end): first unit's start to last unit's end.</summary>
    public TextSpan OriginalSpan(int start, int end) =>
        end <= start ? (start < Length ? new TextSpan(Starts[start], Starts[start]) : Length > 0 ? new TextSpan(Ends[^1], Ends[^1]) : default)
            : new TextSpan(Starts[start], Ends[end - 1]);

    /// <summary>The whole text's original span.</summary>
    public TextSpan OriginalSpan() => OriginalSpan(0, Length);

    /// <summary>Builds aligned text code point by code point.</summary>
    internal sealed class Builder(int capacity)
    {
        private readonly StringBuilder text = new(capacity);
        private readonly List<int> starts = new(capacity);
        private readonly List<int> ends = new(capacity);

        public int Length => text.Length;

        public void Append(int codePoint, int start, int end)
        {
            if (codePoint <= 0xFFFF)
            {
                Add((char)codePoint, start, end);
            }
            else
            {
                int v = codePoint - 0x10000;
                Add((char)(0xD800 + (v >> 10)), start, end);
                Add((char)(0xDC00 + (v & 0x3FF)), start, end);
            }
        }

        public void Add(char c, int start, int end)
        {
            text.Append(c);
            starts.Add(start);
            ends.Add(end);
        }

        public void Append(AlignedText piece, int from, int to)
        {
            for (int i = from; i < to; i++)
            {
                Add(piece.Text[i], piece.Starts[i], piece.Ends[i]);
            }
        }

        public AlignedText Build() => new(text.ToString(), [.. starts], [.. ends]);
    }

    /// <summary>Reads the code point at <paramref name="i"/> (a lone surrogate as itself) and advances past it.</summary>
    public static int ReadCodePoint(string text, ref int i)
    {
        char c = text[i++];
        if (char.IsHighSurrogate(c) && i < text.Length && char.IsLowSurrogate(text[i]))
        {
            return char.ConvertToUtf32(c, text[i++]);
        }

        return c;
    }
}
