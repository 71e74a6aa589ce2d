namespace Headlight.Models.Tokenization;

/// <summary>
/// tiktoken's byte-pair encoding of one chunk (repeatedly merge the adjacent pair whose joined bytes
/// have the lowest rank, the leftmost of equals) in O(n log n) with <see cref="BytePairMerge"/>, as
/// <see cref="BpeMerges"/> does for merges.txt.
/// </summary>
/// <remarks>
/// A pair's rank is the id of the token its two halves join into, whichever split of that token the
/// halves are, which is how tiktoken ranks pairs (it looks the joined bytes up), and differs from
/// merges.txt, where only one split of each token is a merge. Used for chunks too long for
/// Microsoft.ML.Tokenizers' quadratic loop.
/// </remarks>
internal sealed class RankedBytePairs
{
    private readonly int[] byteIds = new int[256];

    // (left id, right id) -> id of the joined token, which is also its rank
    private readonly Dictionary<long, int> pairs = new();

    /// <summary>Builds the pair table of <paramref name="vocabulary"/>, whose ids are its ranks; ids at or above <paramref name="count"/> (special tokens) take no part.</summary>
    public RankedBytePairs(BpeVocabulary vocabulary, int count)
    {
        for (int b = 0; b < 256; b++)
        {
            byteIds[b] = vocabulary.ByteId((byte)b);
        }

        for (int id = 0; id < count; id++)
        {
            ReadOnlySpan<byte> bytes = vocabulary.Bytes(id);
            MaxTokenBytes = Math.Max(MaxTokenBytes, bytes.Length);
            for (int split = 1; split < bytes.Length; split++)
            {
                if (vocabulary.TryGetId(BpeVocabulary.ToAlphabet(bytes[..split]), out int left) && left < count
                    && vocabulary.TryGetId(BpeVocabulary.ToAlphabet(bytes[split..]), out int right) && right < count)
                {
                    pairs[Key(left, right)] = id;
                }
            }
        }
    }

    /// <summary>The longest token, in bytes: a longer chunk is never one token.</summary>
    public int MaxTokenBytes { get; }

    /// <summary>Appends the ids of <paramref name="utf8"/> to <paramref name="ids"/>.</summary>
    public void Encode(ReadOnlySpan<byte> utf8, List<int> ids) => ids.AddRange(BytePairMerge.Merge(utf8, byteIds, new Ranks(pairs)));

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;

    // A pair ranks as the token it joins into.
    private readonly struct Ranks(Dictionary<long, int> pairs) : IPairRanks
    {
        public bool TryGetMerge(int left, int right, out int rank, out int merged)
        {
            bool found = pairs.TryGetValue(Key(left, right), out merged);
            rank = merged;
            return found;
        }
    }
}
