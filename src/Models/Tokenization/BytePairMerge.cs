namespace Headlight.Models.Tokenization;

/// <summary>How a byte-pair encoding ranks adjacent symbols: the rank of the pair and the symbol it merges into.</summary>
internal interface IPairRanks
{
    /// <summary>Whether (<paramref name="left"/>, <paramref name="right"/>) merges, and if so its rank (lower first) and merged id.</summary>
    bool TryGetMerge(int left, int right, out int rank, out int merged);
}

/// <summary>
/// The byte-pair merge loop in O(n log n): a chunk starts as one symbol per byte in a linked list, and
/// the adjacent pair of lowest rank (the leftmost of equals) merges until none has a rank. Pairs wait in
/// a priority queue ordered by rank, then position, and are checked when taken out (a neighbour may
/// have merged since). Merging the leftmost lowest pair one at a time gives the same result as merging
/// every occurrence of that pair in one pass, because a merge never creates another occurrence of the
/// pair it merged.
/// </summary>
internal static class BytePairMerge
{
    /// <summary>utf8 [n] -> ids [m ≤ n]; <paramref name="byteIds"/> gives each byte's starting symbol.</summary>
    public static int[] Merge<TRanks>(ReadOnlySpan<byte> utf8, ReadOnlySpan<int> byteIds, TRanks ranks)
        where TRanks : IPairRanks
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

        // Priority rank·2³² + position; the first pairs go in as one O(n) heapify.
        var initial = new List<(int, long)>(n);
        for (int i = 0; i + 1 < n; i++)
        {
            if (ranks.TryGetMerge(id[i], id[i + 1], out int rank, out _))
            {
                initial.Add((i, Priority(rank, i)));
            }
        }

        var queue = new PriorityQueue<int, long>(initial);
        int count = n;
        while (queue.TryDequeue(out int left, out long priority))
        {
            // Stale entries: the left symbol was merged away, or either side changed since.
            int right = next[left];
            if (id[left] < 0 || right < 0 || !ranks.TryGetMerge(id[left], id[right], out int rank, out int merged) || rank != (int)(priority >> 32))
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

            count--;
        }

        var result = new int[count];
        for (int i = 0, k = 0; i >= 0 && k < count; i = next[i])
        {
            result[k++] = id[i];
        }

        return result;

        void Offer(int left, int right)
        {
            if (ranks.TryGetMerge(id[left], id[right], out int rank, out _))
            {
                queue.Enqueue(left, Priority(rank, left));
            }
        }
    }

    private static long Priority(int rank, int position) => ((long)rank << 32) | (uint)position;
}
