using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Headlight.Models.Tokenization;
using Headlight.Models.Tokenization.HfTokenizerJson;

namespace Headlight.Models.Training;

/// <summary>
/// Learns a byte-level BPE vocabulary (GPT-2's scheme) from text and writes it as a Hugging Face
/// <c>tokenizer.json</c>: model BPE (vocab + merges), pre-tokenizer, post-processor and decoder
/// ByteLevel (no prefix space, GPT-2's split pattern), the special tokens as added tokens.
/// </summary>
/// <remarks>
/// Text is cut at the special tokens, split into chunks by GPT-2's pattern
/// (<c>'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+</c>, on code points),
/// and each chunk's UTF-8 bytes are written as GPT-2's printable stand-in characters (byte 0x20 is
/// "Ġ"), as Hugging Face's ByteLevel pre-tokenizer does. Ids: the special tokens, then the 256 byte
/// characters in ordinal (UTF-16) order, then each merge's result in the order learned (a result
/// string already in the vocabulary keeps its id; the merge is still recorded). Each step merges the
/// most frequent adjacent pair, counted over all chunk occurrences; ties go to the pair with the
/// smaller left id, then the smaller right id, so the output depends only on the input. Within a
/// chunk, occurrences are merged left to right without overlap ("a a a" → "aa a").
/// Pair counts are updated incrementally: a merge revisits only the chunks that hold the pair.
/// </remarks>
public static class ByteLevelBpeTrainer
{
    /// <summary>Trains on <paramref name="documents"/> until the vocabulary has <paramref name="vocabularySize"/> entries (or no pair is frequent enough) and writes the tokenizer.json.</summary>
    /// <param name="documents">The training texts; each is pre-tokenised on its own.</param>
    /// <param name="vocabularySize">Entries in total: special tokens + 256 bytes + merges.</param>
    /// <param name="tokenizerJsonPath">The file to write (its folder is created when missing).</param>
    /// <param name="options">Special tokens and minimum pair frequency; null for the defaults.</param>
    /// <exception cref="ArgumentNullException"><paramref name="documents"/> or <paramref name="tokenizerJsonPath"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="vocabularySize"/> is below the special tokens + 256, or the minimum pair frequency is below 1.</exception>
    /// <exception cref="ArgumentException">A special token is empty or repeated, or the path is empty.</exception>
    public static void Train(IEnumerable<string> documents, int vocabularySize, string tokenizerJsonPath, ByteLevelBpeOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(tokenizerJsonPath);
        options ??= new ByteLevelBpeOptions();
        (List<string> vocabulary, List<(string Left, string Right)> merges) = Learn(documents, vocabularySize, options);
        Write(tokenizerJsonPath, vocabulary, merges, options.SpecialTokens.Count);
    }

    /// <summary>The vocabulary (by id) and the merges (by rank) training learns.</summary>
    internal static (List<string> Vocabulary, List<(string Left, string Right)> Merges) Learn(IEnumerable<string> documents, int vocabularySize, ByteLevelBpeOptions options)
    {
        ArgumentNullException.ThrowIfNull(documents);
        ArgumentNullException.ThrowIfNull(options);
        IReadOnlyList<string> specials = options.SpecialTokens ?? throw new ArgumentException("SpecialTokens is null.", nameof(options));
        if (specials.Any(string.IsNullOrEmpty) || specials.Distinct(StringComparer.Ordinal).Count() != specials.Count)
        {
            throw new ArgumentException($"Special tokens must be non-empty and distinct; got [{string.Join(", ", specials.Select(s => $"\"{s}\""))}].", nameof(options));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(vocabularySize, specials.Count + 256);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MinPairFrequency, 1, nameof(options.MinPairFrequency));

        var vocabulary = new List<string>(vocabularySize);
        vocabulary.AddRange(specials);
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < specials.Count; i++)
        {
            ids[specials[i]] = i;
        }

        var alphabet = (char[])ByteLevelStep.ByteChars.Clone();
        Array.Sort(alphabet);
        var charIds = new Dictionary<char, int>();
        foreach (char c in alphabet)
        {
            charIds[c] = vocabulary.Count;
            ids.TryAdd(c.ToString(), vocabulary.Count);
            vocabulary.Add(c.ToString());
        }

        // Unique chunks with their counts, in ordinal order so that ids never depend on input order.
        Dictionary<string, int> chunkCounts = CountChunks(documents, specials);
        string[] chunks = chunkCounts.Keys.Order(StringComparer.Ordinal).ToArray();
        var words = new List<int>[chunks.Length];
        var frequency = new long[chunks.Length];
        for (int w = 0; w < chunks.Length; w++)
        {
            words[w] = chunks[w].Select(c => charIds[c]).ToList();
            frequency[w] = chunkCounts[chunks[w]];
        }

        var counts = new Dictionary<long, long>();
        var where = new Dictionary<long, HashSet<int>>();
        for (int w = 0; w < words.Length; w++)
        {
            AddPairs(words[w], frequency[w], w, counts, where, -1, null);
        }

        var queue = new PriorityQueue<long, (long Count, int Left, int Right)>(PairOrder.Instance);
        foreach ((long key, long count) in counts)
        {
            if (count >= options.MinPairFrequency)
            {
                queue.Enqueue(key, (count, Left(key), Right(key)));
            }
        }

        var merges = new List<(string, string)>();
        var touched = new HashSet<long>();
        while (vocabulary.Count < vocabularySize && queue.TryDequeue(out long pair, out var priority))
        {
            long current = counts.GetValueOrDefault(pair);
            if (current != priority.Count)
            {
                // Stale: the count only fell since this entry was queued; requeue at its real count.
                if (current >= options.MinPairFrequency)
                {
                    queue.Enqueue(pair, (current, priority.Left, priority.Right));
                }

                continue;
            }

            int left = Left(pair), right = Right(pair);
            string merged = vocabulary[left] + vocabulary[right];
            if (!ids.TryGetValue(merged, out int id))
            {
                id = vocabulary.Count;
                ids[merged] = id;
                vocabulary.Add(merged);
            }

            merges.Add((vocabulary[left], vocabulary[right]));
            touched.Clear();
            foreach (int w in where[pair].Order())
            {
                List<int> symbols = words[w];
                if (!Contains(symbols, left, right))
                {
                    continue; // the pair left this chunk in an earlier merge
                }

                RemovePairs(symbols, frequency[w], counts);
                var next = new List<int>(symbols.Count);
                for (int i = 0; i < symbols.Count; i++)
                {
                    if (symbols[i] == left && i + 1 < symbols.Count && symbols[i + 1] == right)
                    {
                        next.Add(id);
                        i++;
                    }
                    else
                    {
                        next.Add(symbols[i]);
                    }
                }

                words[w] = next;
                AddPairs(next, frequency[w], w, counts, where, id, touched);
            }

            counts.Remove(pair);
            where.Remove(pair);

            // Only pairs holding the new id can have grown; every other count only fell.
            foreach (long key in touched)
            {
                long count = counts.GetValueOrDefault(key);
                if (count >= options.MinPairFrequency)
                {
                    queue.Enqueue(key, (count, Left(key), Right(key)));
                }
            }
        }

        return (vocabulary, merges);
    }

    private static Dictionary<string, int> CountChunks(IEnumerable<string> documents, IReadOnlyList<string> specials)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        var spans = new List<(int Start, int End)>();
        var builder = new StringBuilder();
        char[] byteChars = ByteLevelStep.ByteChars;
        byte[] utf8 = new byte[256];
        foreach (string document in documents)
        {
            ArgumentNullException.ThrowIfNull(document, nameof(documents));
            foreach (string piece in CutSpecials(document, specials))
            {
                spans.Clear();
                Gpt2PreTokenizer.Split(piece, spans);
                foreach ((int start, int end) in spans)
                {
                    ReadOnlySpan<char> chunk = piece.AsSpan(start, end - start);
                    int byteCount = Encoding.UTF8.GetMaxByteCount(chunk.Length);
                    if (byteCount > utf8.Length)
                    {
                        utf8 = new byte[byteCount];
                    }

                    // Lone surrogates become U+FFFD's bytes, as in the ByteLevel pre-tokenizer.
                    int n = Encoding.UTF8.GetBytes(chunk, utf8);
                    builder.Clear();
                    for (int i = 0; i < n; i++)
                    {
                        builder.Append(byteChars[utf8[i]]);
                    }

                    string key = builder.ToString();
                    counts[key] = counts.GetValueOrDefault(key) + 1;
                }
            }
        }

        return counts;
    }

    private static IEnumerable<string> CutSpecials(string text, IReadOnlyList<string> specials)
    {
        IEnumerable<string> pieces = [text];
        foreach (string special in specials)
        {
            pieces = pieces.SelectMany(p => p.Split(special, StringSplitOptions.RemoveEmptyEntries));
        }

        return pieces;
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    private static int Left(long key) => (int)(key >> 32);

    private static int Right(long key) => (int)key;

    private static bool Contains(List<int> symbols, int left, int right)
    {
        for (int i = 0; i + 1 < symbols.Count; i++)
        {
            if (symbols[i] == left && symbols[i + 1] == right)
            {
                return true;
            }
        }

        return false;
    }

    private static void RemovePairs(List<int> symbols, long frequency, Dictionary<long, long> counts)
    {
        for (int i = 0; i + 1 < symbols.Count; i++)
        {
            long key = Key(symbols[i], symbols[i + 1]);
            counts[key] -= frequency;
        }
    }

    private static void AddPairs(List<int> symbols, long frequency, int word, Dictionary<long, long> counts, Dictionary<long, HashSet<int>> where, int newId, HashSet<long>? touched)
    {
        for (int i = 0; i + 1 < symbols.Count; i++)
        {
            long key = Key(symbols[i], symbols[i + 1]);
            counts[key] = counts.GetValueOrDefault(key) + frequency;
            if (!where.TryGetValue(key, out HashSet<int>? set))
            {
                where[key] = set = [];
            }

            set.Add(word);
            if (symbols[i] == newId || symbols[i + 1] == newId)
            {
                touched?.Add(key);
            }
        }
    }

    private static void Write(string path, List<string> vocabulary, List<(string Left, string Right)> merges, int specialCount)
    {
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null)
        {
            Directory.CreateDirectory(folder);
        }

        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("version", "1.0");
            json.WriteNull("truncation");
            json.WriteNull("padding");
            json.WriteStartArray("added_tokens");
            for (int i = 0; i < specialCount; i++)
            {
                json.WriteStartObject();
                json.WriteNumber("id", i);
                json.WriteString("content", vocabulary[i]);
                json.WriteBoolean("single_word", false);
                json.WriteBoolean("lstrip", false);
                json.WriteBoolean("rstrip", false);
                json.WriteBoolean("normalized", false);
                json.WriteBoolean("special", true);
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteNull("normalizer");
            foreach (string step in new[] { "pre_tokenizer", "post_processor", "decoder" })
            {
                json.WriteStartObject(step);
                json.WriteString("type", "ByteLevel");
                json.WriteBoolean("add_prefix_space", false);
                json.WriteBoolean("trim_offsets", true);
                json.WriteBoolean("use_regex", true);
                json.WriteEndObject();
            }

            json.WriteStartObject("model");
            json.WriteString("type", "BPE");
            json.WriteNull("dropout");
            json.WriteNull("unk_token");
            json.WriteNull("continuing_subword_prefix");
            json.WriteNull("end_of_word_suffix");
            json.WriteBoolean("fuse_unk", false);
            json.WriteBoolean("byte_fallback", false);
            json.WriteBoolean("ignore_merges", false);
            json.WriteStartObject("vocab");
            for (int i = 0; i < vocabulary.Count; i++)
            {
                json.WriteNumber(vocabulary[i], i);
            }

            json.WriteEndObject();
            json.WriteStartArray("merges");
            foreach ((string left, string right) in merges)
            {
                json.WriteStartArray();
                json.WriteStringValue(left);
                json.WriteStringValue(right);
                json.WriteEndArray();
            }

            json.WriteEndArray();
            json.WriteEndObject();
            json.WriteEndObject();
        }

        File.WriteAllBytes(path, stream.ToArray());
    }

    // Highest count first; ties: smaller left id, then smaller right id.
    private sealed class PairOrder : IComparer<(long Count, int Left, int Right)>
    {
        public static readonly PairOrder Instance = new();

        public int Compare((long Count, int Left, int Right) x, (long Count, int Left, int Right) y) =>
            x.Count != y.Count ? y.Count.CompareTo(x.Count) : x.Left != y.Left ? x.Left.CompareTo(y.Left) : x.Right.CompareTo(y.Right);
    }
}
