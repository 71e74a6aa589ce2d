using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;

namespace Headlight.Models.Tokenization;

/// <summary>
/// Byte-level BPE by merge rank (merges.txt / vocab.bpe), as GPT-2's reference encoder does it: a
/// chunk starts as one token per byte, and the adjacent pair with the lowest merge rank (the
/// leftmost of equals) is merged until no adjacent pair has a rank.
/// </summary>
/// <remarks>
/// <see cref="BytePairMerge"/> makes a chunk of n bytes cost O(n log n) rather than the reference's
/// O(n²) rescans, with the same result. Results are cached per chunk.
/// </remarks>
internal sealed class BpeMerges : IBpeEncoder
{
    private const int CacheLimit = 100_000;

    private readonly BpeVocabulary vocabulary;

    // (left id, right id) -> (rank, merged id)
    private readonly Dictionary<long, (int Rank, int Id)> ranks;
    private readonly ConcurrentDictionary<string, int[]> cache = new(StringComparer.Ordinal);

    private BpeMerges(BpeVocabulary vocabulary, Dictionary<long, (int Rank, int Id)> ranks, string sha256)
    {
        this.vocabulary = vocabulary;
        this.ranks = ranks;
        Sha256 = sha256;
    }

    /// <summary>Number of merges.</summary>
    public int Count => ranks.Count;

    /// <summary>SHA-256 (lower-case hex) of the merges as "left right\n" lines in rank order: the same for the same merges, whatever the file's header or line ends.</summary>
    public string Sha256 { get; }

    /// <summary>
    /// Reads merges.txt: an optional first line "#version: …", then one merge per line, two
    /// vocabulary tokens separated by one space; empty lines only at the end. A malformed line,
    /// a token (or the merged token) missing from <paramref name="vocabulary"/>, a repeated merge
    /// or invalid UTF-8 throw <see cref="VocabularyFormatException"/> naming <paramref name="source"/> and the line.
    /// </summary>
    public static BpeMerges Load(Stream stream, string source, BpeVocabulary vocabulary)
    {
        var ranks = new Dictionary<long, (int Rank, int Id)>(50_000);
        var lines = new Dictionary<long, int>(50_000);
        var encoding = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        ReadOnlySpan<byte> rest = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        if (rest.StartsWith("\uFEFF"u8))
        {
            rest = rest[3..];
        }

        int lineNumber = 0, emptyLine = 0;
        while (!rest.IsEmpty)
        {
            // One line, \n or \r\n ended (the last may have no end).
            lineNumber++;
            int newline = rest.IndexOf((byte)'\n');
            ReadOnlySpan<byte> bytes = newline < 0 ? rest : rest[..newline];
            rest = newline < 0 ? [] : rest[(newline + 1)..];
            if (bytes.EndsWith("\r"u8))
            {
                bytes = bytes[..^1];
            }

            string line;
            try
            {
                line = encoding.GetString(bytes);
            }
            catch (DecoderFallbackException e)
            {
                throw new VocabularyFormatException(source, $"line {lineNumber} is not valid UTF-8", lineNumber, null, e);
            }

            if (lineNumber == 1 && line.StartsWith("#version", StringComparison.Ordinal))
            {
                continue;
            }

            if (line.Length == 0)
            {
                emptyLine = emptyLine == 0 ? lineNumber : emptyLine;
                continue;
            }

            if (emptyLine != 0)
            {
                throw new VocabularyFormatException(source, $"line {emptyLine} is empty (empty lines may only end the file)", emptyLine, null);
            }

            int space = line.IndexOf(' ', StringComparison.Ordinal);
            if (space <= 0 || space == line.Length - 1 || line.IndexOf(' ', space + 1) >= 0)
            {
                throw new VocabularyFormatException(
                    source, $"line {lineNumber} '{line}' is not a merge: two tokens separated by one space", lineNumber, line);
            }

            string left = line[..space], right = line[(space + 1)..];
            int leftId = Id(left), rightId = Id(right), mergedId = Id(left + right);
            long key = Key(leftId, rightId);
            if (!lines.TryAdd(key, lineNumber))
            {
                throw new VocabularyFormatException(source, $"line {lineNumber} repeats the merge '{line}' of line {lines[key]}", lineNumber, line);
            }

            ranks.Add(key, (ranks.Count, mergedId));
            hash.AppendData(Encoding.UTF8.GetBytes($"{left} {right}\n"));
        }

        return new BpeMerges(vocabulary, ranks, Convert.ToHexStringLower(hash.GetHashAndReset()));

        int Id(string token) => vocabulary.TryGetId(token, out int id)
            ? id
            : throw new VocabularyFormatException(source, $"line {lineNumber} uses '{token}', which the vocabulary does not have", lineNumber, token);
    }

    /// <inheritdoc/>
    public void Encode(ReadOnlySpan<char> chunk, ReadOnlySpan<byte> utf8, List<int> ids)
    {
        var lookup = cache.GetAlternateLookup<ReadOnlySpan<char>>();
        if (lookup.TryGetValue(chunk, out int[]? cached))
        {
            ids.AddRange(cached);
            return;
        }

        int[] result = Merge(utf8);
        if (cache.Count >= CacheLimit)
        {
            cache.Clear();
        }

        lookup.TryAdd(chunk, result);
        ids.AddRange(result);
    }

    // utf8 [n] -> ids [m ≤ n]
    private int[] Merge(ReadOnlySpan<byte> utf8)
    {
        Span<int> byteIds = stackalloc int[256];
        for (int b = 0; b < byteIds.Length; b++)
        {
            byteIds[b] = vocabulary.ByteId((byte)b);
        }

        return BytePairMerge.Merge(utf8, byteIds, new Ranks(ranks));
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    private readonly struct Ranks(Dictionary<long, (int Rank, int Id)> ranks) : IPairRanks
    {
        public bool TryGetMerge(int left, int right, out int rank, out int merged)
        {
            bool found = ranks.TryGetValue(Key(left, right), out var merge);
            (rank, merged) = merge;
            return found;
        }
    }
}
