namespace Headlight.Models.Tokenization;

/// <summary>
/// Words after basic tokenisation: their normalised characters back to back, and for every
/// character the span [start, end) of the original text it came from.
/// </summary>
internal sealed class NormalizedWords(int capacity)
{
    private char[] chars = new char[capacity];
    private int[] sourceStart = new int[capacity];
    private int[] sourceEnd = new int[capacity];
    private int length;
    private int wordStart;

    /// <summary>Each word as a range [Start, End) of <see cref="Chars"/>.</summary>
    public List<(int Start, int End)> Words { get; } = [];

    /// <summary>The normalised characters of all words.</summary>
    public ReadOnlySpan<char> Chars => chars.AsSpan(0, length);

    /// <summary>
    /// The span of original text that normalised characters [start, end) came from. Sources only
    /// run backwards where canonical ordering swapped two marks, so take the extremes.
    /// </summary>
    public TextSpan SourceSpan(int start, int end)
    {
        int from = sourceStart[start], to = sourceEnd[end - 1];
        for (int i = start; i < end; i++)
        {
            from = Math.Min(from, sourceStart[i]);
            to = Math.Max(to, sourceEnd[i]);
        }

        return new TextSpan(from, to);
    }

    /// <summary>Appends one code point (one or two UTF-16 units) that came from [start, end).</summary>
    public void Append(int cp, int start, int end)
    {
        if (cp <= 0xFFFF)
        {
            Push((char)cp, start, end);
        }
        else
        {
            // Both halves of a surrogate pair map to the same original span.
            int v = cp - 0x10000;
            Push((char)(0xD800 + (v >> 10)), start, end);
            Push((char)(0xDC00 + (v & 0x3FF)), start, end);
        }
    }

    /// <summary>Closes the current word, if it has any characters.</summary>
    public void EndWord()
    {
        if (length > wordStart)
        {
            Words.Add((wordStart, length));
            wordStart = length;
        }
    }

    private void Push(char c, int start, int end)
    {
        if (length == chars.Length)
        {
            int size = Math.Max(16, chars.Length * 2);
            Array.Resize(ref chars, size);
            Array.Resize(ref sourceStart, size);
            Array.Resize(ref sourceEnd, size);
        }

        chars[length] = c;
        sourceStart[length] = start;
        sourceEnd[length] = end;
        length++;
    }
}
