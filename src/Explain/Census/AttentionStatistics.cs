namespace Headlight.Explain.Census;

/// <summary>What a position holds, for the special-token and punctuation scores.</summary>
[Flags]
internal enum TokenKind : byte
{
    Ordinary = 0,
    Control = 1,        // [CLS], [SEP], <|endoftext|>: added by the tokenizer, stands for no text
    Punctuation = 2,
}

/// <summary>One corpus text as the census sees it: ids and kinds [n].</summary>
internal sealed record TextRow(int[] Ids, TokenKind[] Kinds)
{
    public int Length => Ids.Length;
}

/// <summary>
/// A random token sequence repeated twice, ids and kinds [n]: the copies are
/// [<see cref="CopyStart"/>, +<see cref="CopyLength"/>) and [CopyStart + CopyLength, +CopyLength).
/// </summary>
internal sealed record RepeatRow(int[] Ids, TokenKind[] Kinds, int CopyStart, int CopyLength)
{
    public int Length => Ids.Length;
}

/// <summary>
/// A tagged sentence as the census sees it: ids and kinds [n], and its syntactic links in token positions
/// (see <see cref="TaggedLink"/>).
/// </summary>
internal sealed record TaggedRow(int[] Ids, TokenKind[] Kinds, TaggedLink[] Links)
{
    public int Length => Ids.Length;
}

/// <summary>
/// One syntactic pair in token positions: the query token (the first token of the later word) and the key
/// word's tokens [<see cref="KeyStart"/>, <see cref="KeyEnd"/>), all before the query.
/// </summary>
internal sealed record TaggedLink(SyntacticRelation Relation, int Query, int KeyStart, int KeyEnd);

/// <summary>
/// Running sums of every attention metric, per (layer, head), plus one slot for uniform attention over
/// the same corpus (the chance level). Fed one row of one layer at a time, straight from the captured
/// probabilities, so nothing is kept between batches but these sums. Everything is summed in float64 in
/// a fixed order: the same inputs give the same numbers.
/// </summary>
internal sealed class AttentionStatistics
{
    private const int Offsets = (2 * CensusThresholds.MaxOffset) + 1;

    private readonly int layers;
    private readonly int heads;
    private readonly bool causal;
    private readonly int chance;

    // [slot]: sums and the number of queries each is averaged over
    private readonly double[] entropy, normalizedEntropy, confidence, previous, next, first, separator, punctuation, duplicate, induction;
    private readonly long[] queries, normalizedCount, previousCount, nextCount, duplicateCount, inductionCount;

    // [slot, offset + MaxOffset]: queries whose strongest key is at that offset, and queries where it is visible
    private readonly long[] offsetHits, offsetCount;

    // [slot, relation]: attention mass from each link's query on its key word, and the number of links
    private readonly double[] syntactic;
    private readonly long[] syntacticCount;

    public AttentionStatistics(int layers, int heads, bool causal)
    {
        this.layers = layers;
        this.heads = heads;
        this.causal = causal;
        chance = layers * heads;
        int slots = chance + 1;
        entropy = new double[slots];
        normalizedEntropy = new double[slots];
        confidence = new double[slots];
        previous = new double[slots];
        next = new double[slots];
        first = new double[slots];
        separator = new double[slots];
        punctuation = new double[slots];
        duplicate = new double[slots];
        induction = new double[slots];
        queries = new long[slots];
        normalizedCount = new long[slots];
        previousCount = new long[slots];
        nextCount = new long[slots];
        duplicateCount = new long[slots];
        inductionCount = new long[slots];
        offsetHits = new long[slots * Offsets];
        offsetCount = new long[slots * Offsets];
        syntactic = new double[slots * Relations];
        syntacticCount = new long[slots * Relations];
    }

    private const int Relations = 4;

    /// <summary>
    /// Adds one text of one layer: <paramref name="probs"/> [heads, stride, stride] is that row's captured
    /// attention (query rows and keys beyond the text's length are padding and are not read).
    /// </summary>
    public void AddText(int layer, ReadOnlySpan<float> probs, int stride, TextRow row)
    {
        CheckProbs(probs, stride, row.Length);
        for (int h = 0; h < heads; h++)
        {
            AddTextHead((layer * heads) + h, probs.Slice(h * stride * stride, stride * stride), stride, row);
        }
    }

    /// <summary>Adds one repeated sequence of one layer: only the duplicate-token and induction scores use it.</summary>
    public void AddRepeat(int layer, ReadOnlySpan<float> probs, int stride, RepeatRow row)
    {
        CheckProbs(probs, stride, row.Length);
        for (int h = 0; h < heads; h++)
        {
            AddRepeatHead((layer * heads) + h, probs.Slice(h * stride * stride, stride * stride), stride, row);
        }
    }

    /// <summary>Adds one tagged sentence of one layer: only the syntactic scores use it.</summary>
    public void AddTagged(int layer, ReadOnlySpan<float> probs, int stride, TaggedRow row)
    {
        CheckProbs(probs, stride, row.Length);
        for (int h = 0; h < heads; h++)
        {
            AddTaggedHead((layer * heads) + h, probs.Slice(h * stride * stride, stride * stride), stride, row);
        }
    }

    /// <summary>Adds the chance level of one tagged sentence.</summary>
    public void AddTaggedChance(TaggedRow row) => AddTaggedHead(chance, Uniform(row.Length), row.Length, row);

    /// <summary>Adds the chance level of one text: what a head attending uniformly over the visible keys scores.</summary>
    public void AddTextChance(TextRow row) => AddTextHead(chance, Uniform(row.Length), row.Length, row);

    /// <summary>Adds the chance level of one repeated sequence.</summary>
    public void AddRepeatChance(RepeatRow row) => AddRepeatHead(chance, Uniform(row.Length), row.Length, row);

    /// <summary>The scores of one head so far (no roles, no importance).</summary>
    public HeadScores Scores(int layer, int head)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, layers);
        ArgumentOutOfRangeException.ThrowIfNegative(head);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(head, heads);
        return Scores((layer * heads) + head, layer, head);
    }

    /// <summary>The scores of uniform attention over the same corpus (layer and head −1).</summary>
    public HeadScores Chance() => Scores(chance, -1, -1);

    private HeadScores Scores(int slot, int layer, int head)
    {
        // Best offset: highest share; ties go to the smaller |offset|, then the negative one.
        int bestOffset = 0;
        double bestShare = -1;
        foreach (int o in OffsetOrder())
        {
            long count = offsetCount[(slot * Offsets) + o + CensusThresholds.MaxOffset];
            if (count == 0)
            {
                continue;
            }

            double share = (double)offsetHits[(slot * Offsets) + o + CensusThresholds.MaxOffset] / count;
            if (share > bestShare)
            {
                bestShare = share;
                bestOffset = o;
            }
        }

        long q = queries[slot];
        return new HeadScores
        {
            Layer = layer,
            Head = head,
            Entropy = Mean(entropy[slot], q),
            NormalizedEntropy = Mean(normalizedEntropy[slot], normalizedCount[slot]),
            Confidence = Mean(confidence[slot], q),
            Previous = Mean(previous[slot], previousCount[slot]),
            Next = Mean(next[slot], nextCount[slot]),
            Offset = bestOffset,
            OffsetArgmaxShare = Math.Max(bestShare, 0),
            First = Mean(first[slot], q),
            Separator = Mean(separator[slot], q),
            Punctuation = Mean(punctuation[slot], q),
            Duplicate = Mean(duplicate[slot], duplicateCount[slot]),
            Induction = Mean(induction[slot], inductionCount[slot]),
            DetNoun = Syntactic(slot, SyntacticRelation.DetNoun),
            AdjNoun = Syntactic(slot, SyntacticRelation.AdjNoun),
            PrepObject = Syntactic(slot, SyntacticRelation.PrepObject),
            VerbSubject = Syntactic(slot, SyntacticRelation.VerbSubject),
        };
    }

    // 0, -1, +1, -2, +2, ...
    private static IEnumerable<int> OffsetOrder()
    {
        yield return 0;
        for (int o = 1; o <= CensusThresholds.MaxOffset; o++)
        {
            yield return -o;
            yield return o;
        }
    }

    private static double Mean(double sum, long count) => count == 0 ? 0 : sum / count;

    // Null when no link of the relation was seen (no tagged text, or none of that kind).
    private double? Syntactic(int slot, SyntacticRelation relation)
    {
        int i = (slot * Relations) + (int)relation;
        return syntacticCount[i] == 0 ? null : syntactic[i] / syntacticCount[i];
    }

    // probs [stride, stride] of one head; each link adds the mass its query puts on the key word's tokens
    private void AddTaggedHead(int slot, ReadOnlySpan<float> probs, int stride, TaggedRow row)
    {
        foreach (var link in row.Links)
        {
            var a = probs.Slice(link.Query * stride, row.Length);
            double mass = 0;
            for (int k = link.KeyStart; k < link.KeyEnd; k++)
            {
                mass += a[k];
            }

            int i = (slot * Relations) + (int)link.Relation;
            syntactic[i] += mass;
            syntacticCount[i]++;
        }
    }

    // probs [stride, stride] of one head; queries and keys [0, n)
    private void AddTextHead(int slot, ReadOnlySpan<float> probs, int stride, TextRow row)
    {
        int n = row.Length;
        var kinds = row.Kinds;
        int offsetBase = slot * Offsets;
        for (int i = 0; i < n; i++)
        {
            var a = probs.Slice(i * stride, n);
            int visible = causal ? i + 1 : n;
            double h = 0, sep = 0, punct = 0;
            float max = float.NegativeInfinity;
            int argmax = 0;
            for (int k = 0; k < visible; k++)
            {
                float p = a[k];
                if (p > 0)
                {
                    h -= p * Math.Log(p);
                }

                if (p > max)
                {
                    max = p;
                    argmax = k;
                }

                if (k > 0 && (kinds[k] & TokenKind.Control) != 0)
                {
                    sep += p;
                }

                if ((kinds[k] & TokenKind.Punctuation) != 0)
                {
                    punct += p;
                }
            }

            queries[slot]++;
            entropy[slot] += h;
            confidence[slot] += max;
            first[slot] += a[0];
            separator[slot] += sep;
            punctuation[slot] += punct;
            if (visible > 1)
            {
                normalizedEntropy[slot] += h / Math.Log(visible);
                normalizedCount[slot]++;
            }

            if (i >= 1)
            {
                previous[slot] += a[i - 1];
                previousCount[slot]++;
            }

            if (i + 1 < n)
            {
                // A causal head cannot see token i+1: it scores 0 there, as it should.
                next[slot] += causal ? 0 : a[i + 1];
                nextCount[slot]++;
            }

            for (int o = -CensusThresholds.MaxOffset; o <= CensusThresholds.MaxOffset; o++)
            {
                int k = i + o;
                if (k >= 0 && k < visible)
                {
                    offsetCount[offsetBase + o + CensusThresholds.MaxOffset]++;
                    if (argmax == k)
                    {
                        offsetHits[offsetBase + o + CensusThresholds.MaxOffset]++;
                    }
                }
            }
        }
    }

    // probs [stride, stride] of one head on [.. copy | copy ..]
    private void AddRepeatHead(int slot, ReadOnlySpan<float> probs, int stride, RepeatRow row)
    {
        int n = row.Length;
        int start = row.CopyStart;
        int length = row.CopyLength;
        for (int i = start; i < start + (2 * length); i++)
        {
            var a = probs.Slice(i * stride, n);
            bool second = i >= start + length;

            // The other copy of the same token, where the head can see it.
            int other = second ? i - length : i + length;
            if (!causal || other < i)
            {
                duplicate[slot] += a[other];
                duplicateCount[slot]++;
            }

            if (second)
            {
                induction[slot] += a[i - length + 1];
                inductionCount[slot]++;
            }
        }
    }

    // [n, n]: each query spreads its attention evenly over the keys it can see.
    private float[] Uniform(int n)
    {
        var u = new float[n * n];
        for (int i = 0; i < n; i++)
        {
            int visible = causal ? i + 1 : n;
            u.AsSpan(i * n, visible).Fill(1f / visible);
        }

        return u;
    }

    private void CheckProbs(ReadOnlySpan<float> probs, int stride, int n)
    {
        if (n > stride || probs.Length < heads * stride * stride)
        {
            throw new ArgumentException($"Attention of {heads} heads over {stride} positions needs {heads * stride * stride} values and at most {stride} tokens; got {probs.Length} values and {n} tokens.", nameof(probs));
        }
    }
}
