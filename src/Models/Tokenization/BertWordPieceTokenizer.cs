using System.Text;

namespace Headlight.Models.Tokenization;

/// <summary>
/// BERT's tokenizer: basic tokenisation (clean, isolate CJK ideographs, lower-case and strip
/// accents for uncased models, split on whitespace and punctuation), then WordPiece on each word.
/// Gives the ids Hugging Face's BertNormalizer + BertPreTokenizer + WordPiece give, and for every
/// token its word and its span in the original text. Thread-safe once created.
/// </summary>
public sealed class BertWordPieceTokenizer : ITextTokenizer
{
    private readonly WordPieceVocabulary vocabulary;
    private readonly BertBasicTokenizer basic;

    private BertWordPieceTokenizer(WordPieceVocabulary vocabulary, BertTokenizerOptions options, string source)
    {
        this.vocabulary = vocabulary;
        Options = options;
        basic = new BertBasicTokenizer(options.LowerCase, options.StripsAccents, options.TokenizeChineseCharacters);
        UnknownTokenId = Special(options.UnknownToken, nameof(options.UnknownToken));
        ClsTokenId = Special(options.ClsToken, nameof(options.ClsToken));
        SepTokenId = Special(options.SepToken, nameof(options.SepToken));
        PadTokenId = Special(options.PadToken, nameof(options.PadToken));
        MaskTokenId = Special(options.MaskToken, nameof(options.MaskToken));

        int Special(string token, string field) => vocabulary.TryGetId(token, out int id)
            ? id
            : throw new VocabularyFormatException(source, $"has no {field} '{token}'", null, token);
    }

    /// <summary>The options the tokenizer was created with.</summary>
    public BertTokenizerOptions Options { get; }

    /// <inheritdoc/>
    public int VocabularySize => vocabulary.Count;

    /// <summary>Id of [UNK].</summary>
    public int UnknownTokenId { get; }

    /// <summary>Id of [CLS].</summary>
    public int ClsTokenId { get; }

    /// <summary>Id of [SEP].</summary>
    public int SepTokenId { get; }

    /// <summary>Id of [PAD].</summary>
    public int PadTokenId { get; }

    /// <summary>Id of [MASK].</summary>
    public int MaskTokenId { get; }

    /// <inheritdoc />
    public int? MaskToken => MaskTokenId;

    /// <summary>Creates a tokenizer from a vocab.txt file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="VocabularyFormatException">The file is empty, has empty lines or duplicate tokens, is not UTF-8, or lacks a special token.</exception>
    public static BertWordPieceTokenizer FromFile(string vocabPath, BertTokenizerOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(vocabPath);
        if (!File.Exists(vocabPath))
        {
            throw new FileNotFoundException($"Vocabulary file '{vocabPath}' does not exist.", vocabPath);
        }

        using var stream = File.OpenRead(vocabPath);
        return FromStream(stream, options, vocabPath);
    }

    /// <summary>Creates a tokenizer from vocab.txt content; <paramref name="sourceName"/> names it in errors.</summary>
    /// <exception cref="VocabularyFormatException">The content is empty, has empty lines or duplicate tokens, is not UTF-8, or lacks a special token.</exception>
    public static BertWordPieceTokenizer FromStream(Stream vocab, BertTokenizerOptions? options = null, string sourceName = "vocab.txt")
    {
        ArgumentNullException.ThrowIfNull(vocab);
        ArgumentNullException.ThrowIfNull(sourceName);
        options ??= BertTokenizerOptions.Uncased;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxInputCharsPerWord, $"{nameof(options)}.{nameof(options.MaxInputCharsPerWord)}");
        ArgumentException.ThrowIfNullOrEmpty(options.ContinuingSubwordPrefix, $"{nameof(options)}.{nameof(options.ContinuingSubwordPrefix)}");
        return new BertWordPieceTokenizer(WordPieceVocabulary.Load(vocab, sourceName, options.ContinuingSubwordPrefix), options, sourceName);
    }

    /// <summary>[CLS] text [SEP].</summary>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    public TokenizedText Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var builder = new Builder(this);
        builder.AddSpecial(ClsTokenId, 0);
        builder.AddText(text, 0);
        builder.AddSpecial(SepTokenId, 0);
        return builder.Build(text, null);
    }

    /// <summary>
    /// [CLS] first [SEP] second [SEP], with token type 0 up to the first [SEP] and 1 after it: the
    /// input of cross-encoders (query–document, sentence-pair classification).
    /// </summary>
    /// <exception cref="ArgumentNullException">A text is null.</exception>
    public TokenizedText EncodePair(string first, string second)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        var builder = new Builder(this);
        builder.AddSpecial(ClsTokenId, 0);
        builder.AddText(first, 0);
        builder.AddSpecial(SepTokenId, 0);
        builder.AddText(second, 1);
        builder.AddSpecial(SepTokenId, 1);
        return builder.Build(first, second);
    }

    /// <summary>Encodes each text and batches them (see <see cref="Batch"/>).</summary>
    public TokenBatch EncodeBatch(IReadOnlyList<string> texts, int maxLength, TruncationMode truncation = TruncationMode.None)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var encoded = new TokenizedText[texts.Count];
        for (int i = 0; i < texts.Count; i++)
        {
            encoded[i] = Encode(texts[i] ?? throw new ArgumentException($"Text {i} of the batch is null.", nameof(texts)));
        }

        return Batch(encoded, maxLength, truncation);
    }

    /// <inheritdoc/>
    public TokenBatch Batch(IReadOnlyList<TokenizedText> texts, int maxLength, TruncationMode truncation = TruncationMode.None) =>
        TokenBatch.Create(texts, maxLength, truncation, PadTokenId);

    /// <inheritdoc/>
    public bool IsControlToken(int id) => id == ClsTokenId || id == SepTokenId || id == PadTokenId;

    /// <summary>Whether <paramref name="id"/> is one of [CLS], [SEP], [PAD], [MASK], [UNK].</summary>
    public bool IsSpecial(int id) =>
        id == ClsTokenId || id == SepTokenId || id == PadTokenId || id == MaskTokenId || id == UnknownTokenId;

    /// <summary>Looks up the id of a vocabulary token (exact, no normalisation).</summary>
    public bool TryGetId(string token, out int id)
    {
        ArgumentNullException.ThrowIfNull(token);
        return vocabulary.TryGetId(token, out id);
    }

    /// <inheritdoc/>
    public string GetToken(int id)
    {
        CheckId(id, -1);
        return vocabulary[id];
    }

    /// <inheritdoc/>
    public IReadOnlyList<string> DecodeTokens(ReadOnlySpan<int> ids)
    {
        var result = new string[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            CheckId(ids[i], i);
            result[i] = vocabulary[ids[i]];
        }

        return result;
    }

    /// <inheritdoc/>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        string prefix = Options.ContinuingSubwordPrefix;
        var text = new StringBuilder();
        for (int i = 0; i < ids.Length; i++)
        {
            CheckId(ids[i], i);
            if (skipSpecialTokens && IsSpecial(ids[i]) && ids[i] != UnknownTokenId)
            {
                continue;
            }

            string token = vocabulary[ids[i]];
            if (token.Length > prefix.Length && token.StartsWith(prefix, StringComparison.Ordinal))
            {
                text.Append(token, prefix.Length, token.Length - prefix.Length);
            }
            else
            {
                text.Append(text.Length == 0 ? string.Empty : " ").Append(token);
            }
        }

        return text.ToString();
    }

    private (int Id, string Token)? MatchSpecial(string text, int at)
    {
        foreach (var (token, id) in (ReadOnlySpan<(string, int)>)[(Options.ClsToken, ClsTokenId), (Options.SepToken, SepTokenId), (Options.PadToken, PadTokenId),
            (Options.MaskToken, MaskTokenId), (Options.UnknownToken, UnknownTokenId)])
        {
            if (string.CompareOrdinal(text, at, token, 0, token.Length) == 0 && at + token.Length <= text.Length)
            {
                return (id, token);
            }
        }

        return null;
    }

    private void CheckId(int id, int position)
    {
        if ((uint)id >= (uint)vocabulary.Count)
        {
            string where = position < 0 ? string.Empty : $" at position {position}";
            throw new ArgumentOutOfRangeException(
                position < 0 ? "id" : "ids", id, $"Token id {id}{where} is outside the vocabulary [0, {vocabulary.Count}).");
        }
    }

    // Collects tokens, their words and spans for one (pair of) text(s).
    private sealed class Builder(BertWordPieceTokenizer owner)
    {
        private readonly List<int> ids = [];
        private readonly List<int> types = [];
        private readonly List<int> wordIndices = [];
        private readonly List<TextSpan> spans = [];
        private readonly List<TokenizedWord> words = [];
        private readonly List<(int Id, int Start, int End)> pieces = [];

        public void AddSpecial(int id, int segment)
        {
            ids.Add(id);
            types.Add(segment);
            wordIndices.Add(-1);
            spans.Add(default);
        }

        public void AddText(string text, int segment)
        {
            if (!owner.Options.MatchSpecialTokens)
            {
                AddText(text, 0, text.Length, segment);
                return;
            }

            // Special tokens written in the text, leftmost first.
            int last = 0;
            for (int i = 0; i < text.Length; i++)
            {
                if (owner.MatchSpecial(text, i) is not { } special)
                {
                    continue;
                }

                AddText(text, last, i, segment);
                var span = new TextSpan(i, i + special.Token.Length);
                ids.Add(special.Id);
                types.Add(segment);
                wordIndices.Add(words.Count);
                spans.Add(span);
                words.Add(new TokenizedWord(special.Token, special.Token, segment, span, ids.Count - 1, 1));
                last = span.End;
                i = last - 1;
            }

            AddText(text, last, text.Length, segment);
        }

        // Text [from, to) of text: basic tokenisation and WordPiece, spans shifted back into text.
        private void AddText(string whole, int from, int to, int segment)
        {
            if (to <= from)
            {
                return;
            }

            string text = from == 0 && to == whole.Length ? whole : whole[from..to];
            NormalizedWords normalized = owner.basic.Split(text);
            ReadOnlySpan<char> chars = normalized.Chars;
            foreach (var (start, end) in normalized.Words)
            {
                // word chars [start, end) -> pieces, each piece's chars mapped back to the original text
                pieces.Clear();
                owner.vocabulary.Split(chars[start..end], owner.Options.MaxInputCharsPerWord, owner.UnknownTokenId, pieces);
                int firstToken = ids.Count;
                foreach (var (id, pieceStart, pieceEnd) in pieces)
                {
                    ids.Add(id);
                    types.Add(segment);
                    wordIndices.Add(words.Count);
                    spans.Add(Shift(normalized.SourceSpan(start + pieceStart, start + pieceEnd), from));
                }

                TextSpan span = Shift(normalized.SourceSpan(start, end), from);
                words.Add(new TokenizedWord(span.Of(whole), new string(chars[start..end]), segment, span, firstToken, pieces.Count));
            }
        }

        private static TextSpan Shift(TextSpan span, int by) => by == 0 ? span : new TextSpan(span.Start + by, span.End + by);

        public TokenizedText Build(string text, string? pairText)
        {
            var tokens = new string[ids.Count];
            for (int i = 0; i < tokens.Length; i++)
            {
                tokens[i] = owner.vocabulary[ids[i]];
            }

            return new TokenizedText(text, pairText, [.. ids], tokens, [.. types], [.. wordIndices], [.. spans], [.. words], isTruncated: false);
        }
    }
}
