using Headlight.Explain.Census;

namespace Headlight.Tests.Census;

/// <summary>
/// Every census metric on synthetic attention patterns whose answer is known: a pure previous-token head
/// scores 1, uniform attention scores exactly the chance level (1/n for a one-key pattern), and so on.
/// </summary>
public sealed class AttentionStatisticsTests
{
    private const int Cls = 101;
    private const int Sep = 102;
    private const int Comma = 1010;

    // [CLS] w w , w w w . w [SEP] — 10 tokens; control at 0 and 9, punctuation at 3 and 7.
    private static TextRow Text(int n = 10)
    {
        var ids = Enumerable.Range(0, n).Select(i => 2000 + i).ToArray();
        var kinds = new TokenKind[n];
        ids[0] = Cls;
        kinds[0] = TokenKind.Control;
        ids[^1] = Sep;
        kinds[^1] = TokenKind.Control;
        foreach (int p in new[] { 3, 7 }.Where(p => p < n - 1))
        {
            ids[p] = Comma;
            kinds[p] = TokenKind.Punctuation;
        }

        return new TextRow(ids, kinds);
    }

    // [CLS] a b c d e a b c d e [SEP]: copies of length 5 starting at 1.
    private static RepeatRow Repeat(bool framed = true)
    {
        int[] copy = [3001, 3002, 3003, 3004, 3005];
        int[] ids = framed ? [Cls, .. copy, .. copy, Sep] : [.. copy, .. copy];
        var kinds = ids.Select(id => id is Cls or Sep ? TokenKind.Control : TokenKind.Ordinary).ToArray();
        return new RepeatRow(ids, kinds, framed ? 1 : 0, copy.Length);
    }

    // probs [1 head, stride, stride] with row i = pattern(i) over keys [0, n); padding beyond n stays 0.
    private static float[] Pattern(int n, int stride, Func<int, int, float> weight)
    {
        var p = new float[stride * stride];
        for (int i = 0; i < n; i++)
        {
            for (int k = 0; k < n; k++)
            {
                p[(i * stride) + k] = weight(i, k);
            }
        }

        return p;
    }

    private static float OneHot(int k, int target) => k == target ? 1f : 0f;

    private static HeadScores Run(bool causal, int stride, float[] probs, TextRow? text = null, RepeatRow? repeat = null)
    {
        var stats = new AttentionStatistics(1, 1, causal);
        if (text is not null)
        {
            stats.AddText(0, probs, stride, text);
        }

        if (repeat is not null)
        {
            stats.AddRepeat(0, probs, stride, repeat);
        }

        return stats.Scores(0, 0);
    }

    [Theory]
    [InlineData(false, 10)]
    [InlineData(false, 13)]
    [InlineData(true, 10)]
    public void Pure_previous_token_head_scores_one(bool causal, int stride)
    {
        var text = Text();
        var s = Run(causal, stride, Pattern(10, stride, (i, k) => OneHot(k, Math.Max(i - 1, 0))), text);
        Assert.Equal(1.0, s.Previous, 12);
        Assert.Equal(0.0, s.Next, 12);
        Assert.Equal(-1, s.Offset);
        Assert.Equal(1.0, s.OffsetArgmaxShare, 12);
        Assert.Equal(1.0, s.Confidence, 12);
        Assert.Equal(0.0, s.Entropy, 12);
        Assert.Equal(HeadRole.Previous | HeadRole.Positional, CensusThresholds.Assign(s));
    }

    [Fact]
    public void Pure_next_token_head_scores_one_on_an_encoder()
    {
        var s = Run(false, 10, Pattern(10, 10, (i, k) => OneHot(k, Math.Min(i + 1, 9))), Text());
        Assert.Equal(1.0, s.Next, 12);
        Assert.Equal(+1, s.Offset);
        Assert.Equal(HeadRole.Next | HeadRole.Positional, CensusThresholds.Assign(s));
    }

    [Fact]
    public void A_causal_head_cannot_score_on_the_next_token()
    {
        // Even a (malformed) pattern that puts weight on i+1 scores 0: the key is not visible.
        var s = Run(true, 10, Pattern(10, 10, (i, k) => OneHot(k, Math.Min(i + 1, 9))), Text());
        Assert.Equal(0.0, s.Next, 12);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Uniform_attention_scores_the_chance_level(bool causal)
    {
        foreach (int n in new[] { 3, 10, 17 })
        {
            var text = Text(n);
            var stats = new AttentionStatistics(1, 1, causal);
            stats.AddText(0, Pattern(n, n, (i, k) => causal ? (k <= i ? 1f / (i + 1) : 0f) : 1f / n), n, text);
            stats.AddTextChance(text);
            var s = stats.Scores(0, 0);
            var chance = stats.Chance();
            Assert.Equal(-1, chance.Layer);
            Assert.Equal(chance with { Layer = 0, Head = 0 }, s);

            // Independent expectations, in float64: 1/visible per key, log(visible) entropy.
            double Mean(Func<int, double> perQuery, int from = 0, int to = int.MaxValue)
                => Enumerable.Range(from, Math.Min(n, to) - from).Average(perQuery);
            int Visible(int i) => causal ? i + 1 : n;
            Assert.Equal(Mean(i => 1.0 / Visible(i), from: 1), s.Previous, 6);
            Assert.Equal(Mean(i => Math.Log(Visible(i))), s.Entropy, 6);
            Assert.Equal(1.0, s.NormalizedEntropy, 6);
            Assert.Equal(Mean(i => 1.0 / Visible(i)), s.First, 6);
            Assert.Equal(Mean(i => (causal && i < n - 1 ? 0 : 1.0) / Visible(i)), s.Separator, 6);
            int[] punct = [.. new[] { 3, 7 }.Where(p => p < n - 1)];
            Assert.Equal(Mean(i => punct.Count(p => p < Visible(i)) / (double)Visible(i)), s.Punctuation, 6);
            Assert.Equal(causal ? 0 : Mean(i => 1.0 / n, to: n - 1), s.Next, 6);
            if (n == 17)
            {
                // Long enough that uniform attention passes no role (short texts put 1/3 on each of 3 keys).
                Assert.Equal(HeadRole.None, CensusThresholds.Assign(s));
            }
        }
    }

    [Fact]
    public void Special_token_and_punctuation_heads_score_one()
    {
        var text = Text();
        var first = Run(false, 10, Pattern(10, 10, (i, k) => OneHot(k, 0)), text);
        Assert.Equal(1.0, first.First, 12);
        Assert.Equal(HeadRole.First, CensusThresholds.Assign(first) & ~HeadRole.Positional);

        var sep = Run(false, 10, Pattern(10, 10, (i, k) => OneHot(k, 9)), text);
        Assert.Equal(1.0, sep.Separator, 12);
        Assert.Equal(0.0, sep.First, 12);
        Assert.True((CensusThresholds.Assign(sep) & HeadRole.Separator) != 0);

        var punct = Run(false, 10, Pattern(10, 10, (i, k) => k is 3 or 7 ? 0.5f : 0f), text);
        Assert.Equal(1.0, punct.Punctuation, 6);
        Assert.True((CensusThresholds.Assign(punct) & HeadRole.Punctuation) != 0);
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(true, false)]
    public void Duplicate_and_induction_heads_on_repeated_tokens(bool causal, bool framed)
    {
        var row = Repeat(framed);
        int n = row.Length;
        int start = row.CopyStart;
        int length = row.CopyLength;

        // Induction: the second copy attends to the token after the earlier copy; everything else to itself.
        var induction = Run(causal, n, Pattern(n, n, (i, k) => OneHot(k, i >= start + length && i < start + (2 * length) ? i - length + 1 : i)), repeat: row);
        Assert.Equal(1.0, induction.Induction, 12);
        Assert.Equal(HeadRole.Induction, CensusThresholds.Assign(induction));

        // Duplicate: each token attends to its other copy where it can see it.
        var duplicate = Run(causal, n, Pattern(n, n, (i, k) =>
        {
            bool inCopies = i >= start && i < start + (2 * length);
            int other = i >= start + length ? i - length : i + length;
            return OneHot(k, inCopies && (!causal || other < i) ? other : i);
        }), repeat: row);
        Assert.Equal(1.0, duplicate.Duplicate, 12);
        Assert.Equal(0.0, duplicate.Induction, 12);
        Assert.Equal(HeadRole.Duplicate, CensusThresholds.Assign(duplicate));

        // Uniform attention: the chance level; for the second copy's queries 1/visible keys.
        var stats = new AttentionStatistics(1, 1, causal);
        stats.AddRepeatChance(row);
        var chance = stats.Chance();
        double expected = Enumerable.Range(start + length, length).Average(i => 1.0 / (causal ? i + 1 : n));
        Assert.Equal(expected, chance.Induction, 6);
    }

    [Fact]
    public void Padding_keys_and_queries_are_not_read()
    {
        // A row of 6 tokens in a batch padded to 9: garbage in the padding must not change a thing.
        var text = Text(6);
        var clean = Pattern(6, 9, (i, k) => OneHot(k, Math.Max(i - 1, 0)));
        var dirty = (float[])clean.Clone();
        for (int i = 0; i < 9; i++)
        {
            for (int k = 0; k < 9; k++)
            {
                if (i >= 6 || k >= 6)
                {
                    dirty[(i * 9) + k] = float.NaN;
                }
            }
        }

        Assert.Equal(Run(false, 9, clean, text), Run(false, 9, dirty, text));
    }

    [Fact]
    public void Heads_and_layers_are_kept_apart()
    {
        // 2 layers x 2 heads: [layer 1, head 0] previous-token, every other head on [CLS].
        var text = Text();
        var stats = new AttentionStatistics(2, 2, causal: false);
        for (int l = 0; l < 2; l++)
        {
            var probs = new float[2 * 100];
            for (int h = 0; h < 2; h++)
            {
                bool previous = l == 1 && h == 0;
                Pattern(10, 10, (i, k) => OneHot(k, previous ? Math.Max(i - 1, 0) : 0)).CopyTo(probs, h * 100);
            }

            stats.AddText(l, probs, 10, text);
        }

        Assert.Equal(1.0, stats.Scores(1, 0).Previous, 12);
        Assert.Equal(1.0, stats.Scores(0, 0).First, 12);
        Assert.Equal(1.0, stats.Scores(0, 1).First, 12);
        Assert.Equal(1.0, stats.Scores(1, 1).First, 12);
        Assert.Throws<ArgumentOutOfRangeException>(() => stats.Scores(2, 0));
        Assert.Throws<ArgumentException>(() => stats.AddText(0, new float[10], 10, text));
    }

    [Fact]
    public void Thresholds_decide_roles_at_their_stated_values()
    {
        var h = new HeadScores { Layer = 0, Head = 0, Previous = CensusThresholds.Mass, OffsetArgmaxShare = CensusThresholds.OffsetArgmax - 1e-9 };
        Assert.Equal(HeadRole.Previous, CensusThresholds.Assign(h));
        Assert.Equal(HeadRole.None, CensusThresholds.Assign(h with { Previous = CensusThresholds.Mass - 1e-9 }));
        Assert.Equal(HeadRole.Positional, CensusThresholds.Assign(h with { Previous = 0, OffsetArgmaxShare = CensusThresholds.OffsetArgmax }));
        var (role, strength) = CensusThresholds.Strongest(h with { Induction = 0.9 });
        Assert.Equal(HeadRole.Induction, role);
        Assert.Equal(0.9 / CensusThresholds.Mass, strength, 12);
        Assert.Equal(CensusThresholds.Roles.Count, CensusThresholds.Describe().Count);
        Assert.All(CensusThresholds.Roles, r => Assert.NotEqual('-', CensusThresholds.Letter(r)));
    }

    [Fact]
    public void Role_shares_count_heads()
    {
        HeadScores H(HeadRole roles) => new() { Layer = 0, Head = 0, Roles = roles };
        var shares = RoleShares.Of([H(HeadRole.First), H(HeadRole.Previous | HeadRole.Positional), H(HeadRole.None), H(HeadRole.Separator | HeadRole.Induction)]);
        Assert.Equal(0.75, shares.Interpretable);
        Assert.Equal(0.5, shares.InterpretableExceptSpecialTokens);
        Assert.Equal(0.25, shares.PerRole[HeadRole.Previous]);
        Assert.Equal(0.0, shares.PerRole[HeadRole.Next]);
    }
}
