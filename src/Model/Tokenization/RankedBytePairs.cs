namespace Headlight.Models.Tokenization;

/// <summary>
/// tiktoken's byte-pair encoding of one chunk (repeatedly merge the adjacent pair whose joined bytes
/// have the lowest rank, the leftmost of equals) in O(n log n): pairs wait in a priority queue ordered
/// by rank, then position, over a linked list of symbols, as <see cref="BpeMerges"/> does for merges.txt.
/// </summary>
/// <remarks>
/// A pair's rank is the id of the token its two halves join into, whichever split of that token the
/// halves are, which is how tiktoken ranks pairs (it looks the joined bytes up), and differs from
/// merges.txt, where only one split of each token is a merge. Used for chunks too long for the
/// library's own quadratic loop.
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
    public void Encode(ReadOnlySpan<byte> utf8, List<int> ids)
    {
        int n = utf8.Length;
        var id = new int[n];
        var next = new int[n];
        var previous = new int[n];
        for (int i = 0; i < n; i++)
        {
            id[i] = byteIds[utf8[i]];
            next[i] = i + 1 < n ? i + 1 : -1;
            previous[i] = i - 1;
        }

        // Priority rank·2³² + position: the lowest rank first, the leftmost of equals.
        var queue = new PriorityQueue<int, long>();
        var initial = new List<(int, long)>(n);
        for (int i = 0; i + 1 < n; i++)
        {
            if (pairs.TryGetValue(Key(id[i], id[i + 1]), out int merged))
            {
                initial.Add((i, ((long)merged << 32) | (uint)i));
            }
        }

        queue.EnqueueRange(initial); // into an empty queue: one O(n) heapify

        while (queue.TryDequeue(out int left, out var priority))
        {
            // Stale entries: the left symbol was merged away, or either side changed since.
            int right = next[left];
            if (id[left] < 0 || right < 0 || !pairs.TryGetValue(Key(id[left], id[right]), out int merged) || merged != (int)(priority >> 32))
            {
                continue;
            }

            id[left] = merged;
            id[right] = -1;
            next[left] = next[right];
            if (next[left] >= 0)
            {
                previous[next[left]] = left;
                Offer(left, next[left]);
            }

            if (previous[left] >= 0)
            {
                Offer(previous[left], left);
            }
        }

        for (int i = n > 0 ? 0 : -1; i >= 0; i = next[i])
        {
            ids.Add(id[i]);
        }

        void Offer(int left, int right)
        {
            if (pairs.TryGetValue(Key(id[left], id[right]), out int merged))
            {
                queue.Enqueue(left, ((long)merged << 32) | (uint)left);
            }
        }
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;
}
