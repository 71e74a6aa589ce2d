namespace Headlight.Models.Tokenization;

/// <summary>
/// A text (or a pair of texts) as a model sees it: token ids with the special tokens added, and
/// for every token where it came from — its word and its character span in the original text.
/// </summary>
/// <remarks>
/// Per token i: <c>Ids[i]</c>, <c>Tokens[i]</c>, <c>TypeIds[i]</c> (0 for the first text and its
/// [CLS]/[SEP], 1 for the second text and its closing [SEP]), <c>WordIndices[i]</c> (index into
/// <see cref="Words"/>, −1 for special tokens) and <c>Spans[i]</c> (UTF-16 offsets into the text of
/// its word's <see cref="TokenizedWord.Segment"/>, which is <c>TypeIds[i]</c> for BERT — RoBERTa's
/// pairs are all type 0; the empty span [0, 0) for special tokens). Several tokens can share a
/// span when one character became several pieces (a Hangul syllable becomes its jamo).
/// </remarks>
public sealed class TokenizedText
{
    private readonly int[] ids;
    private readonly string[] tokens;
    private readonly int[] typeIds;
    private readonly int[] wordIndices;
    private readonly TextSpan[] spans;
    private readonly TokenizedWord[] words;

    internal TokenizedText(
        string text, string? pairText, int[] ids, string[] tokens, int[] typeIds, int[] wordIndices,
        TextSpan[] spans, TokenizedWord[] words, bool isTruncated)
    {
        Text = text;
        PairText = pairText;
        this.ids = ids;
        this.tokens = tokens;
        this.typeIds = typeIds;
        this.wordIndices = wordIndices;
        this.spans = spans;
        this.words = words;
        IsTruncated = isTruncated;
        Ids = Array.AsReadOnly(ids);
        Tokens = Array.AsReadOnly(tokens);
        TypeIds = Array.AsReadOnly(typeIds);
        WordIndices = Array.AsReadOnly(wordIndices);
        Spans = Array.AsReadOnly(spans);
        Words = Array.AsReadOnly(words);
    }

    /// <summary>
    /// Wraps token ids given directly instead of text. The text is the tokens joined by spaces; every
    /// token is its own word spanning its token string, except where <paramref name="isSpecial"/> says
    /// it is a special token (no word, empty span).
    /// </summary>
    /// <exception cref="ArgumentException">The id and token counts differ.</exception>
    public static TokenizedText FromIds(IReadOnlyList<int> ids, IReadOnlyList<string> tokens, Func<int, bool>? isSpecial = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        ArgumentNullException.ThrowIfNull(tokens);
        if (ids.Count != tokens.Count)
        {
            throw new ArgumentException($"{ids.Count} ids but {tokens.Count} token strings.", nameof(tokens));
        }

        var text = new System.Text.StringBuilder();
        var spans = new TextSpan[ids.Count];
        var wordIndices = new int[ids.Count];
        var words = new List<TokenizedWord>();
        for (int i = 0; i < ids.Count; i++)
        {
            if (text.Length > 0)
            {
                text.Append(' ');
            }

            int start = text.Length;
            text.Append(tokens[i]);
            if (isSpecial?.Invoke(ids[i]) == true)
            {
                spans[i] = new TextSpan(0, 0);
                wordIndices[i] = -1;
                continue;
            }

            spans[i] = new TextSpan(start, text.Length);
            wordIndices[i] = words.Count;
            words.Add(new TokenizedWord(tokens[i], tokens[i], 0, spans[i], i, 1));
        }

        return new TokenizedText(text.ToString(), null, ids.ToArray(), tokens.ToArray(), new int[ids.Count], wordIndices, spans, words.ToArray(), isTruncated: false);
    }

    /// <summary>The (first) text, as given.</summary>
    public string Text { get; }

    /// <summary>The second text of a pair, or null for a single text.</summary>
    public string? PairText { get; }

    /// <summary>Whether this is a pair ([CLS] first [SEP] second [SEP]).</summary>
    public bool IsPair => PairText is not null;

    /// <summary>Number of tokens, special tokens included.</summary>
    public int Count => ids.Length;

    /// <summary>Token ids, special tokens included.</summary>
    public IReadOnlyList<int> Ids { get; }

    /// <summary>Token strings: BERT's vocabulary pieces ("##" marks a continuation piece); GPT-2's token bytes as text (see <see cref="Gpt2Tokenizer"/>).</summary>
    public IReadOnlyList<string> Tokens { get; }

    /// <summary>Token type (segment) ids: 0 for the first text, 1 for the second text of a pair.</summary>
    public IReadOnlyList<int> TypeIds { get; }

    /// <summary>For each token, the index of its word in <see cref="Words"/>; −1 for special tokens.</summary>
    public IReadOnlyList<int> WordIndices { get; }

    /// <summary>For each token, its span in the text of its segment; [0, 0) for special tokens.</summary>
    public IReadOnlyList<TextSpan> Spans { get; }

    /// <summary>The words, in order (first text, then second), each with its token range.</summary>
    public IReadOnlyList<TokenizedWord> Words { get; }

    /// <summary>Whether tokens were dropped to fit a length limit.</summary>
    public bool IsTruncated { get; }

    /// <summary>
    /// True when the text has no words: empty, whitespace only, or only characters BERT drops
    /// (controls, U+FFFD, lone accents). The model would see just the special tokens; callers that
    /// explain a text should reject such input with a clear message.
    /// </summary>
    public bool IsEmpty => words.Length == 0;

    /// <summary>The text of segment <paramref name="segment"/> (0: <see cref="Text"/>, 1: <see cref="PairText"/>).</summary>
    public string SegmentText(int segment) => segment switch
    {
        0 => Text,
        1 when PairText is not null => PairText,
        _ => throw new ArgumentOutOfRangeException(nameof(segment), segment, IsPair ? "A pair has segments 0 and 1." : "A single text has only segment 0."),
    };

    /// <summary>
    /// Returns this text cut to at most <paramref name="maxTokens"/> tokens, special tokens kept
    /// (the text itself when it fits). Words that lose all their tokens are dropped; a word cut
    /// in the middle keeps its first pieces.
    /// </summary>
    /// <exception cref="InputTooLongException">The text does not fit and <paramref name="mode"/> is
    /// <see cref="TruncationMode.None"/>, or it cannot be cut enough.</exception>
    public TokenizedText Truncate(int maxTokens, TruncationMode mode) => Truncate(maxTokens, mode, 0, nameof(maxTokens));

    internal TokenizedText Truncate(int maxTokens, TruncationMode mode, int textIndex, string paramName)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxTokens);
        if (!Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(mode), mode, "Unknown truncation mode.");
        }

        if (Count <= maxTokens)
        {
            return this;
        }

        if (mode == TruncationMode.None)
        {
            throw new InputTooLongException(textIndex, Count, maxTokens, "ask for truncation (TruncationMode.LongestFirst) or shorten the text.", paramName);
        }

        int content0 = 0, content1 = 0;
        for (int i = 0; i < Count; i++)
        {
            if (wordIndices[i] >= 0 && words[wordIndices[i]].Segment == 0)
            {
                content0++;
            }
            else if (wordIndices[i] >= 0)
            {
                content1++;
            }
        }

        int specials = Count - content0 - content1;
        int budget = maxTokens - specials;
        if (budget < 0)
        {
            throw new InputTooLongException(textIndex, Count, maxTokens, $"its {specials} special tokens alone need more room.", paramName);
        }

        int keep0, keep1;
        if (!IsPair)
        {
            (keep0, keep1) = (budget, 0);
        }
        else if (mode == TruncationMode.OnlySecond)
        {
            int remove = content0 + content1 - budget;
            if (content1 <= remove)
            {
                throw new InputTooLongException(
                    textIndex, Count, maxTokens, $"the second text has {content1} tokens, too few to remove {remove} and keep one (use LongestFirst).", paramName);
            }

            (keep0, keep1) = (content0, content1 - remove);
        }
        else
        {
            // The shorter text keeps its tokens if the longer one can take the cut; otherwise both
            // get half the budget, the longer one the odd token.
            bool swap = content0 > content1;
            var (shorter, longer) = swap ? (content1, content0) : (content0, content1);
            longer = shorter > budget ? shorter : Math.Max(shorter, budget - shorter);
            if (shorter + longer > budget)
            {
                shorter = budget / 2;
                longer = shorter + budget % 2;
            }

            (keep0, keep1) = swap ? (longer, shorter) : (shorter, longer);
        }

        return Keep(keep0, keep1);
    }

    // Keeps the specials and the first keep0 / keep1 content tokens of each segment.
    private TokenizedText Keep(int keep0, int keep1)
    {
        var newIndex = new int[Count];
        int kept = 0, seen0 = 0, seen1 = 0;
        for (int i = 0; i < Count; i++)
        {
            bool keep = wordIndices[i] < 0 || (words[wordIndices[i]].Segment == 0 ? seen0++ < keep0 : seen1++ < keep1);
            newIndex[i] = keep ? kept++ : -1;
        }

        var newWords = new List<TokenizedWord>(words.Length);
        var newWordIndex = new int[words.Length];
        for (int w = 0; w < words.Length; w++)
        {
            TokenizedWord word = words[w];
            int count = 0;
            for (int t = word.FirstToken; t < word.EndToken && newIndex[t] >= 0; t++)
            {
                count++;
            }

            newWordIndex[w] = count == 0 ? -1 : newWords.Count;
            if (count > 0)
            {
                newWords.Add(word with { FirstToken = newIndex[word.FirstToken], TokenCount = count });
            }
        }

        var newIds = new int[kept];
        var newTokens = new string[kept];
        var newTypes = new int[kept];
        var newWordIndices = new int[kept];
        var newSpans = new TextSpan[kept];
        for (int i = 0; i < Count; i++)
        {
            int j = newIndex[i];
            if (j < 0)
            {
                continue;
            }

            newIds[j] = ids[i];
            newTokens[j] = tokens[i];
            newTypes[j] = typeIds[i];
            newWordIndices[j] = wordIndices[i] < 0 ? -1 : newWordIndex[wordIndices[i]];
            newSpans[j] = spans[i];
        }

        return new TokenizedText(Text, PairText, newIds, newTokens, newTypes, newWordIndices, newSpans, [.. newWords], isTruncated: true);
    }
}
