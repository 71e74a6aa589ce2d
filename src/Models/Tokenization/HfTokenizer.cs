using System.Text;
using Headlight.Models.Tokenization.HfTokenizerJson;

namespace Headlight.Models.Tokenization;

/// <summary>
/// A tokenizer defined by a Hugging Face <c>tokenizer.json</c>: its normaliser, pre-tokenizer,
/// WordPiece or BPE model, post-processor and added tokens, run as Hugging Face's tokenizers
/// library runs them. Added tokens are found in the text first (special ones too, so a
/// <c>[MASK]</c> typed in a BERT text is the mask id). Thread-safe once created.
/// </summary>
/// <remarks>
/// <see cref="TokenizedText.Tokens"/> are the library's token strings (the vocabulary's form, e.g.
/// GPT-2's "Ġworld"; an added token as matched, spaces it strips included). Spans are UTF-16
/// offsets into the original text, as the library reports them (its ByteLevel post-processor's
/// trimming included). Each pre-tokenised piece (and each added token found in the text) is a
/// word. Unsupported parts (Unigram and WordLevel models, the Precompiled normaliser, BPE byte
/// fallback and dropout) are refused when the file is read.
/// </remarks>
public sealed class HfTokenizer : ITextTokenizer
{
    private readonly TokenizerDefinition definition;
    private readonly string[] tokens;
    private readonly Dictionary<string, int> ids;
    private readonly (AddedToken Token, string Pattern)[] rawAdded;
    private readonly (AddedToken Token, string Pattern)[] normalizedAdded;
    private readonly HashSet<int> specialIds = [];
    private readonly HashSet<int> controlIds = [];

    private HfTokenizer(TokenizerDefinition definition, string source)
    {
        this.definition = definition;
        Source = source;
        int size = definition.Model.Tokens.Length;
        foreach (AddedToken t in definition.AddedTokens)
        {
            size = Math.Max(size, t.Id + 1);
        }

        tokens = new string[size];
        definition.Model.Tokens.CopyTo(tokens, 0);
        ids = new Dictionary<string, int>(definition.Model.Ids, StringComparer.Ordinal);
        foreach (AddedToken t in definition.AddedTokens)
        {
            if (t.Id < 0 || t.Content.Length == 0)
            {
                throw new ModelFormatException(source, "added_tokens", "non-negative ids and non-empty contents", $"id {t.Id}, content \"{t.Content}\"");
            }

            tokens[t.Id] = t.Content;
            ids[t.Content] = t.Id;
            if (t.Special)
            {
                specialIds.Add(t.Id);
            }
        }

        for (int i = 0; i < tokens.Length; i++)
        {
            tokens[i] ??= string.Empty;
        }

        rawAdded = definition.AddedTokens.Where(t => !t.Normalized).Select(t => (t, t.Content)).ToArray();
        normalizedAdded = definition.AddedTokens.Where(t => t.Normalized)
            .Select(t => (t, definition.Normalizer is null ? t.Content : definition.Normalizer.Apply(AlignedText.FromOriginal(t.Content, 0, t.Content.Length)).Text))
            .Where(t => t.Item2.Length > 0).ToArray();

        // The ids the post-processor adds (probe with an empty pair) are control tokens.
        foreach (EncodedToken t in Run("a", "b"))
        {
            if (t.Sequence < 0)
            {
                controlIds.Add(t.Id);
            }
        }

        PadTokenId = definition.PadId
            ?? new[] { "[PAD]", "<pad>", "<|padding|>", "<|endoftext|>", "</s>" }.Select(p => ids.TryGetValue(p, out int id) ? id : -1).FirstOrDefault(id => id >= 0, 0);
        controlIds.Add(PadTokenId);
        MaskTokenId = definition.AddedTokens.FirstOrDefault(t => t.Special && t.Content is "[MASK]" or "<mask>")?.Id;
    }

    /// <summary>The id of the special mask token ([MASK], &lt;mask&gt;), or null when the file defines none.</summary>
    public int? MaskTokenId { get; }

    /// <inheritdoc />
    public int? MaskToken => MaskTokenId;

    /// <summary>The file the tokenizer came from.</summary>
    public string Source { get; }

    /// <inheritdoc/>
    public int VocabularySize => tokens.Length;

    /// <inheritdoc/>
    public int PadTokenId { get; }

    /// <summary>Reads a tokenizer.json file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The file is not valid JSON, or a field is missing, malformed or of a type not supported; the message names the file and the JSON path (e.g. <c>normalizer.normalizers[1].type</c>).</exception>
    public static HfTokenizer FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return new HfTokenizer(TokenizerJsonReader.Read(path), path);
    }

    /// <inheritdoc/>
    public bool IsControlToken(int id) => controlIds.Contains(id);

    /// <summary>Whether <paramref name="id"/> is an added token marked special.</summary>
    public bool IsSpecial(int id) => specialIds.Contains(id);

    /// <summary>Looks up the id of a vocabulary or added token (exact).</summary>
    public bool TryGetId(string token, out int id)
    {
        ArgumentNullException.ThrowIfNull(token);
        return ids.TryGetValue(token, out id);
    }

    /// <summary>One text, with the post-processor's special tokens.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    public TokenizedText Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return Build(text, null, Run(text, null));
    }

    /// <summary>A pair of texts, as the post-processor's pair template joins them.</summary>
    /// <exception cref="ArgumentNullException">A text is null.</exception>
    public TokenizedText EncodePair(string first, string second)
    {
        ArgumentNullException.ThrowIfNull(first);
        ArgumentNullException.ThrowIfNull(second);
        return Build(first, second, Run(first, second));
    }

    /// <inheritdoc/>
    public TokenBatch Batch(IReadOnlyList<TokenizedText> texts, int maxLength, TruncationMode truncation = TruncationMode.None) =>
        TokenBatch.Create(texts, maxLength, truncation, PadTokenId);

    /// <inheritdoc/>
    public string GetToken(int id)
    {
        CheckId(id, -1);
        return tokens[id];
    }

    /// <inheritdoc/>
    public IReadOnlyList<string> DecodeTokens(ReadOnlySpan<int> ids)
    {
        var result = new string[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            CheckId(ids[i], i);
            result[i] = tokens[ids[i]];
        }

        return result;
    }

    /// <summary>
    /// Text for <paramref name="ids"/> by the file's decoder: ByteLevel (bytes read as UTF-8),
    /// WordPiece (pieces joined, words spaced, cleaned as the library does) or Metaspace; for any
    /// other decoder the tokens joined by spaces.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is not in the vocabulary.</exception>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var pieces = new List<string>(ids.Length);
        for (int i = 0; i < ids.Length; i++)
        {
            CheckId(ids[i], i);
            if (!(skipSpecialTokens && specialIds.Contains(ids[i])))
            {
                pieces.Add(tokens[ids[i]]);
            }
        }

        DecoderSpec decoder = definition.Decoder;
        if (decoder.Type == "ByteLevel")
        {
            var bytes = new List<byte>();
            foreach (string piece in pieces)
            {
                foreach (char c in piece)
                {
                    int b = Array.IndexOf(ByteLevelStep.ByteChars, c);
                    if (b >= 0)
                    {
                        bytes.Add((byte)b);
                    }
                    else
                    {
                        bytes.AddRange(Encoding.UTF8.GetBytes(c.ToString()));
                    }
                }
            }

            return Encoding.UTF8.GetString([.. bytes]);
        }

        var text = new StringBuilder();
        for (int i = 0; i < pieces.Count; i++)
        {
            string piece = pieces[i];
            if (decoder.Type == "Join")
            {
                text.Append(i == 0 ? "" : " ").Append(piece);
                continue;
            }

            if (decoder.Type == "Metaspace")
            {
                piece = piece.Replace(decoder.Replacement, ' ');
                text.Append(i == 0 && decoder.StripFirstSpace && piece.StartsWith(' ') ? piece[1..] : piece);
                continue;
            }

            // WordPiece: continuation pieces join the previous one; each piece is cleaned on its own.
            piece = i > 0 && piece.StartsWith(decoder.Prefix, StringComparison.Ordinal) ? piece[decoder.Prefix.Length..] : (i == 0 ? "" : " ") + piece;
            text.Append(decoder.Cleanup ? Cleanup(piece) : piece);
        }

        return text.ToString();
    }

    // The WordPiece decoder's clean-up of spaces before punctuation and contractions.
    private static string Cleanup(string piece) =>
        piece.Replace(" .", ".").Replace(" ?", "?").Replace(" !", "!").Replace(" ,", ",").Replace(" ' ", "'")
            .Replace(" n't", "n't").Replace(" 'm", "'m").Replace(" do not", " don't").Replace(" 's", "'s").Replace(" 've", "'ve").Replace(" 're", "'re");

    /// <summary>The encoding before it becomes a <see cref="TokenizedText"/>: what the referee compares.</summary>
    internal List<EncodedToken> Run(string text, string? pair)
    {
        var sequences = new List<List<EncodedToken>> { EncodeSequence(text, 0, 0) };
        if (pair is not null)
        {
            sequences.Add(EncodeSequence(pair, 1, 1));
        }

        return definition.PostProcessor.Process(sequences);
    }

    private List<EncodedToken> EncodeSequence(string text, int sequence, int typeId)
    {
        var result = new List<EncodedToken>();
        var pieces = new List<(int Id, int Start, int End)>();
        int word = 0;
        foreach (var (addedId, start, end) in FindAdded(text, rawAdded))
        {
            if (addedId >= 0)
            {
                result.Add(new EncodedToken(addedId, text[start..end], typeId, sequence, word++, new TextSpan(start, end)));
                continue;
            }

            AlignedText piece = AlignedText.FromOriginal(text, start, end);
            if (definition.Normalizer is not null)
            {
                piece = definition.Normalizer.Apply(piece);
            }

            foreach (var (id, s, e) in FindAdded(piece.Text, normalizedAdded))
            {
                if (id >= 0)
                {
                    result.Add(new EncodedToken(id, piece.Text[s..e], typeId, sequence, word++, piece.OriginalSpan(s, e)));
                    continue;
                }

                var words = new List<AlignedText>();
                AlignedText part = piece.Slice(s, e);
                if (definition.PreTokenizer is null)
                {
                    words.Add(part);
                }
                else
                {
                    definition.PreTokenizer.Split(part, word, words);
                }

                foreach (AlignedText w in words)
                {
                    pieces.Clear();
                    definition.Model.Tokenize(w.Text, pieces);
                    foreach (var (tid, ps, pe) in pieces)
                    {
                        result.Add(new EncodedToken(tid, tokens[tid], typeId, sequence, word, w.OriginalSpan(ps, pe)));
                    }

                    if (pieces.Count > 0)
                    {
                        word++;
                    }
                }
            }
        }

        return result;
    }

    // Splits text at added tokens (leftmost, longest), applying single_word, lstrip and rstrip:
    // (id, start, end) with id −1 for the text between them.
    private static List<(int Id, int Start, int End)> FindAdded(string text, (AddedToken Token, string Pattern)[] candidates)
    {
        var splits = new List<(int, int, int)>();
        int last = 0;
        if (candidates.Length > 0)
        {
            for (int i = 0; i < text.Length;)
            {
                (AddedToken Token, string Pattern)? best = null;
                foreach (var c in candidates)
                {
                    if ((best is null || c.Pattern.Length > best.Value.Pattern.Length) && string.CompareOrdinal(text, i, c.Pattern, 0, c.Pattern.Length) == 0
                        && i + c.Pattern.Length <= text.Length)
                    {
                        best = c;
                    }
                }

                if (best is not { } match)
                {
                    i++;
                    continue;
                }

                int start = i, stop = i + match.Pattern.Length;
                AddedToken t = match.Token;
                if (t.SingleWord && ((start > 0 && IsWordChar(text, start, before: true)) || (stop < text.Length && IsWordChar(text, stop, before: false))))
                {
                    i++;
                    continue;
                }

                if (t.LeftStrip)
                {
                    int s = start;
                    while (s > last && char.IsWhiteSpace(text[s - 1]))
                    {
                        s--;
                    }

                    start = s;
                }

                if (t.RightStrip)
                {
                    while (stop < text.Length && char.IsWhiteSpace(text[stop]))
                    {
                        stop++;
                    }
                }

                if (start > last)
                {
                    splits.Add((-1, last, start));
                }

                splits.Add((t.Id, start, stop));
                last = stop;
                i = stop;
            }
        }

        if (last < text.Length || splits.Count == 0)
        {
            splits.Add((-1, last, text.Length));
        }

        return splits;
    }

    private static bool IsWordChar(string text, int at, bool before)
    {
        int i = before ? at - 1 : at;
        if (before && char.IsLowSurrogate(text[i]) && i > 0)
        {
            i--;
        }

        Rune.DecodeFromUtf16(text.AsSpan(i), out Rune rune, out _);
        return Rune.IsLetterOrDigit(rune) || rune.Value == '_';
    }

    private TokenizedText Build(string text, string? pair, List<EncodedToken> encoded)
    {
        var words = new List<TokenizedWord>();
        var wordIndices = new int[encoded.Count];
        var wordOf = new Dictionary<(int Sequence, int Word), int>();
        for (int i = 0; i < encoded.Count; i++)
        {
            EncodedToken t = encoded[i];
            if (t.Sequence < 0)
            {
                wordIndices[i] = -1;
                continue;
            }

            if (!wordOf.TryGetValue((t.Sequence, t.Word), out int w))
            {
                w = words.Count;
                wordOf[(t.Sequence, t.Word)] = w;
                words.Add(new TokenizedWord(string.Empty, string.Empty, t.Sequence, t.Span, i, 0));
            }

            TokenizedWord word = words[w];
            var span = new TextSpan(Math.Min(word.Span.Start, t.Span.Start), Math.Max(word.Span.End, t.Span.End));
            words[w] = word with { Span = span, TokenCount = i - word.FirstToken + 1, Normalized = word.Normalized + t.Token };
            wordIndices[i] = w;
        }

        for (int w = 0; w < words.Count; w++)
        {
            string segment = words[w].Segment == 0 ? text : pair!;
            words[w] = words[w] with { Text = words[w].Span.Of(segment) };
        }

        // The model's type ids, as the post-processor set them (RoBERTa's pairs are all type 0).
        var types = encoded.Select(t => t.TypeId).ToArray();
        var spans = encoded.Select(t => t.Sequence < 0 ? default : t.Span).ToArray();
        return new TokenizedText(text, pair, encoded.Select(t => t.Id).ToArray(), encoded.Select(t => t.Token).ToArray(),
            types, wordIndices, spans, [.. words], isTruncated: false);
    }

    private void CheckId(int id, int position)
    {
        if ((uint)id >= (uint)tokens.Length)
        {
            string where = position < 0 ? string.Empty : $" at position {position}";
            throw new ArgumentOutOfRangeException(
                position < 0 ? "id" : "ids", id, $"Token id {id}{where} is outside the vocabulary [0, {tokens.Length}).");
        }
    }
}
