namespace Headlight.Models.Tokenization;

/// <summary>
/// RoBERTa's tokenizer: GPT-2's byte-level BPE (same pre-tokenisation, no prefix space) on the folder's vocab.json and
/// merges.txt, framed <c>&lt;s&gt; A &lt;/s&gt;</c>, pairs <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>, padded with
/// &lt;pad&gt;. Type ids mark the segment (0, and 1 for the second text of a pair) so truncation can tell the texts
/// apart; RoBERTa has one token type and adds its row to every token whatever the segment.
/// </summary>
public sealed class RobertaTokenizer : ITextTokenizer
{
    private readonly Gpt2Tokenizer bpe;

    private RobertaTokenizer(Gpt2Tokenizer bpe, string vocabName)
    {
        this.bpe = bpe;
        BosTokenId = Require(bpe, "<s>", vocabName);
        EosTokenId = bpe.EndOfTextTokenId;
        PadTokenId = Require(bpe, "<pad>", vocabName);
        MaskTokenId = bpe.TryGetId("<mask>", out int mask) ? mask : null;
        UnknownTokenId = bpe.TryGetId("<unk>", out int unk) ? unk : null;
    }

    /// <inheritdoc/>
    public int VocabularySize => bpe.VocabularySize;

    /// <summary>&lt;s&gt;, the first token of every text (the classification head reads it).</summary>
    public int BosTokenId { get; }

    /// <summary>&lt;/s&gt;, which ends a text and separates (doubled) the texts of a pair.</summary>
    public int EosTokenId { get; }

    /// <inheritdoc/>
    public int PadTokenId { get; }

    /// <summary>&lt;mask&gt;, or null when the vocabulary has none.</summary>
    public int? MaskTokenId { get; }

    /// <inheritdoc />
    public int? MaskToken => MaskTokenId;

    /// <summary>&lt;unk&gt;, or null when the vocabulary has none.</summary>
    public int? UnknownTokenId { get; }

    /// <summary>A tokenizer on RoBERTa's vocab.json (with &lt;s&gt;, &lt;/s&gt; and &lt;pad&gt;) and merges.txt.</summary>
    /// <exception cref="FileNotFoundException">A file does not exist.</exception>
    /// <exception cref="VocabularyFormatException">A file is malformed or a special token is missing; the message names the file and token.</exception>
    public static RobertaTokenizer FromFiles(string vocabJsonPath, string mergesPath)
    {
        var bpe = Gpt2Tokenizer.FromFiles(vocabJsonPath, mergesPath, Gpt2TokenizerOptions.Default, "</s>");
        return new RobertaTokenizer(bpe, vocabJsonPath);
    }

    /// <summary><c>&lt;s&gt;</c>, the text's tokens, <c>&lt;/s&gt;</c>.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    public TokenizedText Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var builder = new Framed(this);
        builder.Special(BosTokenId, 0);
        builder.Text(bpe.Encode(text), 0);
        builder.Special(EosTokenId, 0);
        return builder.Build(text, null);
    }

    /// <summary><c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>, the second text's tokens and words in segment 1.</summary>
    /// <exception cref="ArgumentNullException">A text is null.</exception>
    public TokenizedText EncodePair(string first, string second)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        var builder = new Framed(this);
        builder.Special(BosTokenId, 0);
        builder.Text(bpe.Encode(first), 0);
        builder.Special(EosTokenId, 0);
        builder.Special(EosTokenId, 1);
        builder.Text(bpe.Encode(second), 1);
        builder.Special(EosTokenId, 1);
        return builder.Build(first, second);
    }

    /// <summary>Pads on the right with &lt;pad&gt;; with truncation, texts lose tokens from their ends, the specials kept.</summary>
    /// <exception cref="InputTooLongException">A text is longer than <paramref name="maxLength"/> and may not (or cannot) be truncated.</exception>
    public TokenBatch Batch(IReadOnlyList<TokenizedText> texts, int maxLength, TruncationMode truncation = TruncationMode.None) =>
        TokenBatch.Create(texts, maxLength, truncation, PadTokenId);

    /// <inheritdoc/>
    public bool IsControlToken(int id) => id == BosTokenId || id == EosTokenId || id == PadTokenId;

    /// <summary>A special token's name (&lt;s&gt;), else the readable text of the token's bytes (" world").</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="id"/> is not in the vocabulary.</exception>
    public string GetToken(int id) => IsControlToken(id) || id == MaskTokenId || id == UnknownTokenId ? bpe.GetVocabularyToken(id) : bpe.GetToken(id);

    /// <summary>Each id's token (see <see cref="GetToken"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is not in the vocabulary.</exception>
    public IReadOnlyList<string> DecodeTokens(ReadOnlySpan<int> ids)
    {
        var tokens = bpe.DecodeTokens(ids).ToArray();
        for (int i = 0; i < ids.Length; i++)
        {
            tokens[i] = GetToken(ids[i]);
        }

        return tokens;
    }

    /// <summary>The text of the ids' bytes; with <paramref name="skipSpecialTokens"/>, &lt;s&gt;, &lt;/s&gt; and &lt;pad&gt; left out.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is not in the vocabulary.</exception>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        if (!skipSpecialTokens)
        {
            return bpe.Decode(ids);
        }

        var kept = new List<int>(ids.Length);
        foreach (int id in ids)
        {
            if (!IsControlToken(id))
            {
                kept.Add(id);
            }
        }

        return bpe.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(kept));
    }

    private static int Require(Gpt2Tokenizer bpe, string token, string source) => bpe.TryGetId(token, out int id)
        ? id
        : throw new VocabularyFormatException(source, $"has no '{token}' token, which RoBERTa's framing needs", null, token);

    // Specials and encoded texts appended in order: ids, segments, word indices, spans and words renumbered.
    private sealed class Framed(RobertaTokenizer owner)
    {
        private readonly List<int> ids = [];
        private readonly List<string> tokens = [];
        private readonly List<int> segments = [];
        private readonly List<int> wordIndices = [];
        private readonly List<TextSpan> spans = [];
        private readonly List<TokenizedWord> words = [];

        public void Special(int id, int segment)
        {
            ids.Add(id);
            tokens.Add(owner.GetToken(id));
            segments.Add(segment);
            wordIndices.Add(-1);
            spans.Add(default);
        }

        public void Text(TokenizedText encoded, int segment)
        {
            int tokenOffset = ids.Count;
            int wordOffset = words.Count;
            for (int i = 0; i < encoded.Count; i++)
            {
                ids.Add(encoded.Ids[i]);
                tokens.Add(encoded.Tokens[i]);
                segments.Add(segment);
                wordIndices.Add(encoded.WordIndices[i] < 0 ? -1 : encoded.WordIndices[i] + wordOffset);
                spans.Add(encoded.Spans[i]);
            }

            foreach (var word in encoded.Words)
            {
                words.Add(word with { Segment = segment, FirstToken = word.FirstToken + tokenOffset });
            }
        }

        public TokenizedText Build(string text, string? pairText) =>
            new(text, pairText, [.. ids], [.. tokens], [.. segments], [.. wordIndices], [.. spans], [.. words], isTruncated: false);
    }
}
