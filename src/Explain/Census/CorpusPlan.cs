using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain.Census;

/// <summary>
/// A corpus turned into token rows for one model: the texts (tokenised with the model's special tokens;
/// decoders get &lt;|endoftext|&gt; prepended as BOS) and the repeated random sequences, each with the kind
/// of every position, and both grouped into batches of similar length. A model without a tokenizer gets
/// random token texts instead. Everything is fixed by the corpus, its seed and the model's vocabulary.
/// </summary>
internal sealed class CorpusPlan
{
    // Random texts for a model without a tokenizer.
    private const int RandomTexts = 64;
    private const int RandomTextMin = 8;
    private const int RandomTextMax = 40;

    // A batch's padded tokens may exceed its real tokens by at most this factor: a short text is not run
    // padded to a long one (the ablation's texts are spread over every length).
    private const double MaxPadding = 1.25;

    private CorpusPlan(IReadOnlyList<TextRow> texts, IReadOnlyList<RepeatRow> repeats, string textSource, int repeatLength, IReadOnlyList<TaggedRow> tagged)
    {
        Tagged = tagged;
        Texts = texts;
        Repeats = repeats;
        TextSource = textSource;
        RepeatLength = repeatLength;
    }

    public IReadOnlyList<TextRow> Texts { get; }

    public IReadOnlyList<RepeatRow> Repeats { get; }

    /// <summary>Tagged sentences with their syntactic links (empty without tagged text or a tokenizer).</summary>
    public IReadOnlyList<TaggedRow> Tagged { get; }

    /// <summary><c>corpus texts</c>, or <c>random tokens</c> for a model without a tokenizer.</summary>
    public string TextSource { get; }

    /// <summary>Tokens per copy of the repeated sequences as used (0 when there are none).</summary>
    public int RepeatLength { get; }

    public int TextTokens => Texts.Sum(t => t.Length);

    public int RepeatTokens => Repeats.Sum(r => r.Length);

    public static CorpusPlan Build(Model model, CensusCorpus corpus, TaggedCorpus? tagged = null)
    {
        var config = model.Config;
        var tokenizer = model.Tokenizer;
        int positions = config.MaxTokens;
        // Ids the model and the tokenizer both know: a model's vocabulary may be padded past the tokenizer's.
        int vocabulary = Math.Min(config.VocabSize, tokenizer?.VocabularySize ?? config.VocabSize);
        var kinds = new KindTable(tokenizer, vocabulary);
        int? bos = config.IsDecoder ? LeadingToken(config, tokenizer) : null;
        var texts = new List<TextRow>();
        string source;
        if (tokenizer is not null)
        {
            source = "corpus texts";
            foreach (string text in corpus.Texts)
            {
                var ids = tokenizer.Encode(text).Ids.ToList();
                if (bos is { } b && (ids.Count == 0 || ids[0] != b))
                {
                    ids.Insert(0, b);
                }

                if (ids.Count > positions)
                {
                    // Keep the closing [SEP] of an encoder's text when cutting.
                    int last = ids[^1];
                    bool closing = config.Family == ModelFamily.BertEncoder && tokenizer.IsControlToken(last);
                    ids = ids.Take(positions).ToList();
                    if (closing)
                    {
                        ids[^1] = last;
                    }
                }

                if (ids.Count > 0)
                {
                    texts.Add(new TextRow([.. ids], kinds.Of(ids)));
                }
            }
        }
        else
        {
            source = "random tokens";
            var random = new Random(unchecked((corpus.Seed * 7_919) + 17));
            for (int i = 0; i < RandomTexts; i++)
            {
                int length = Math.Min(positions, random.Next(RandomTextMin, RandomTextMax + 1));
                var ids = Enumerable.Range(0, length).Select(_ => random.Next(vocabulary)).ToArray();
                texts.Add(new TextRow(ids, kinds.Of(ids)));
            }
        }

        var (repeats, repeatLength) = BuildRepeats(model, corpus, kinds, bos, vocabulary);
        var taggedRows = tagged is null || tokenizer is null ? [] : BuildTagged(model, tagged, kinds, bos);
        return new CorpusPlan(texts, repeats, source, repeatLength, taggedRows);
    }

    /// <summary>
    /// Tagged sentences as token rows. Each word is encoded on its own, with the leading space it has in the
    /// detokenised sentence (so GPT-2-style BPE sees " word" as in running text), the tokenizer's own special
    /// tokens dropped, and the rows framed like the texts (BOS for decoders, [CLS] ... [SEP] for BERT). A link's
    /// query is the first token of its query word, its key every token of the key word. Sentences longer than
    /// the model's positions are skipped, as are links whose word has no token.
    /// </summary>
    private static List<TaggedRow> BuildTagged(Model model, TaggedCorpus tagged, KindTable kinds, int? bos)
    {
        var tokenizer = model.Tokenizer!;
        var bert = tokenizer as BertWordPieceTokenizer;
        int[] prefix = bert is not null ? [bert.ClsTokenId] : bos is { } b ? [b] : [];
        int[] suffix = bert is not null ? [bert.SepTokenId] : [];
        var rows = new List<TaggedRow>();
        foreach (var sentence in tagged.Sentences)
        {
            var (text, starts) = SyntacticPairs.Detokenize(sentence);
            var ids = new List<int>(prefix);
            var wordStart = new int[sentence.Count];
            var wordEnd = new int[sentence.Count];
            for (int w = 0; w < sentence.Count; w++)
            {
                int end = w + 1 < sentence.Count ? starts[w + 1] : text.Length;
                int from = w > 0 && text[starts[w] - 1] == ' ' ? starts[w] - 1 : starts[w];
                wordStart[w] = ids.Count;
                ids.AddRange(tokenizer.Encode(text[from..end].TrimEnd()).Ids.Where(id => !tokenizer.IsControlToken(id)));
                wordEnd[w] = ids.Count;
            }

            ids.AddRange(suffix);
            if (ids.Count > model.Config.MaxTokens)
            {
                continue;
            }

            var links = SyntacticPairs.Extract(sentence)
                .Where(p => wordStart[p.Query] < wordEnd[p.Query] && wordStart[p.Key] < wordEnd[p.Key])
                .Select(p => new TaggedLink(p.Relation, wordStart[p.Query], wordStart[p.Key], wordEnd[p.Key]))
                .ToArray();
            if (links.Length > 0)
            {
                rows.Add(new TaggedRow([.. ids], kinds.Of(ids), links));
            }
        }

        return rows;
    }

    /// <summary>
    /// Rows grouped into batches: sorted by length (then index), each batch at most <paramref name="maxTokens"/>
    /// padded tokens and <paramref name="maxRows"/> rows, with at most a quarter more padded than real tokens.
    /// Returns row indices per batch.
    /// </summary>
    public static List<int[]> Batches(IReadOnlyList<int> lengths, int maxTokens, int maxRows)
    {
        var order = Enumerable.Range(0, lengths.Count).OrderBy(i => lengths[i]).ThenBy(i => i).ToArray();
        var batches = new List<int[]>();
        var current = new List<int>();
        long real = 0;
        foreach (int i in order)
        {
            // Sorted ascending, so the new row is the longest: the batch would be (count + 1) × its length.
            long padded = (long)(current.Count + 1) * lengths[i];
            if (current.Count > 0 && (padded > maxTokens || current.Count >= maxRows || padded > MaxPadding * (real + lengths[i])))
            {
                batches.Add([.. current]);
                current.Clear();
                real = 0;
            }

            current.Add(i);
            real += lengths[i];
        }

        if (current.Count > 0)
        {
            batches.Add([.. current]);
        }

        return batches;
    }

    // [CLS] copy copy [SEP] for BERT, BOS copy copy for GPT-2, copy copy without a tokenizer; tokens drawn
    // without replacement from ordinary vocabulary entries, so the only repeats are the designed ones.
    private static (List<RepeatRow> Rows, int Length) BuildRepeats(Model model, CensusCorpus corpus, KindTable kinds, int? bos, int vocabulary)
    {
        var config = model.Config;
        var tokenizer = model.Tokenizer;
        int[] prefix = [];
        int[] suffix = [];
        if (tokenizer is BertWordPieceTokenizer bert)
        {
            prefix = [bert.ClsTokenId];
            suffix = [bert.SepTokenId];
        }
        else if (bos is { } b)
        {
            prefix = [b];
        }

        int length = Math.Min(corpus.RepeatLength, (config.MaxTokens - prefix.Length - suffix.Length) / 2);
        var pool = Enumerable.Range(0, vocabulary).Where(kinds.IsOrdinaryWord).ToArray();
        var rows = new List<RepeatRow>();
        if (corpus.RepeatSequences == 0 || length < 2 || pool.Length < length)
        {
            return (rows, 0);
        }

        var random = new Random(unchecked((corpus.Seed * 1_000_003) + 101));
        for (int s = 0; s < corpus.RepeatSequences; s++)
        {
            // Partial Fisher–Yates: the first `length` entries become a sample without replacement.
            var sample = (int[])pool.Clone();
            for (int i = 0; i < length; i++)
            {
                int j = random.Next(i, sample.Length);
                (sample[i], sample[j]) = (sample[j], sample[i]);
            }

            var copy = sample.AsSpan(0, length).ToArray();
            int[] ids = [.. prefix, .. copy, .. copy, .. suffix];
            rows.Add(new RepeatRow(ids, kinds.Of(ids), prefix.Length, length));
        }

        return (rows, length);
    }

    /// <summary>Token kinds by id, looked up once per id from the tokenizer's vocabulary.</summary>
    // The token a decoder's rows start with, as in training: GPT-2's <|endoftext|>; a tokenizer whose template adds a
    // beginning token of its own (Llama's) gives that; else the end-of-sequence token, which GPT-NeoX and Qwen2 also
    // use between documents.
    private static int? LeadingToken(ModelConfig config, ITextTokenizer? tokenizer)
    {
        if (tokenizer is Gpt2Tokenizer gpt)
        {
            return gpt.EndOfTextTokenId;
        }

        if (tokenizer?.Encode(string.Empty).Ids is [int first, ..] && tokenizer.IsControlToken(first))
        {
            return first;
        }

        return config.EndOfSequenceIds.Count > 0 && (tokenizer is null || config.EndOfSequenceIds[0] < tokenizer.VocabularySize) ? config.EndOfSequenceIds[0] : null;
    }

    private sealed class KindTable(ITextTokenizer? tokenizer, int vocabulary)
    {
        private readonly Dictionary<int, (TokenKind Kind, bool Ordinary)> cache = [];

        public TokenKind[] Of(IReadOnlyList<int> ids) => ids.Select(id => Lookup(id).Kind).ToArray();

        /// <summary>A token a random sequence may use: not a control or bracketed special token ([UNK], [MASK], [unused7]), not punctuation.</summary>
        public bool IsOrdinaryWord(int id) => Lookup(id).Ordinary;

        private (TokenKind Kind, bool Ordinary) Lookup(int id)
        {
            if (cache.TryGetValue(id, out var known))
            {
                return known;
            }

            (TokenKind, bool) result;
            if (tokenizer is null || (uint)id >= (uint)vocabulary)
            {
                result = (TokenKind.Ordinary, true);
            }
            else if (tokenizer.IsControlToken(id))
            {
                result = (TokenKind.Control, false);
            }
            else
            {
                string token = tokenizer.GetToken(id);
                bool bracketed = token.Length > 2 && token[0] == '[' && token[^1] == ']';
                bool punctuation = IsPunctuation(token);
                result = (punctuation ? TokenKind.Punctuation : TokenKind.Ordinary, !bracketed && !punctuation && !string.IsNullOrWhiteSpace(token));
            }

            cache[id] = result;
            return result;
        }

        // "," "." "##!" " ?" "..." are punctuation: every character, after a WordPiece "##" or a leading space, is punctuation or a symbol.
        private static bool IsPunctuation(string token)
        {
            var s = token.AsSpan();
            if (s.StartsWith("##"))
            {
                s = s[2..];
            }

            s = s.Trim();
            if (s.IsEmpty)
            {
                return false;
            }

            foreach (char c in s)
            {
                if (!char.IsPunctuation(c) && !char.IsSymbol(c))
                {
                    return false;
                }
            }

            return true;
        }
    }
}
