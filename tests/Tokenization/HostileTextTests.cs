using System.Diagnostics;
using System.Text;
using Headlight.Models.Tokenization;
using Headlight.Tests.Library;

namespace Headlight.Tests.Tokenization;

/// <summary>
/// Text built to make tokenizers slow: long runs of combining marks (BERT's accent stripping) and
/// long chunks of one letter (GPT-2's byte-pair merges). Time must grow about linearly.
/// Timed against itself, so it runs alone: other tests running beside it would charge their time to
/// one length and not the other.
/// </summary>
[Collection(nameof(RunsAlone))]
public sealed class HostileTextTests
{
    private static readonly int[] Lengths = [10_000, 40_000, 160_000];

    // "a" then n/2 × U+0301 (class 230) then n/2 × U+0316 (class 220): NFD moves every U+0316 before every U+0301.
    private static string CombiningRun(int n) => "a" + new string('\u0301', n / 2) + new string('\u0316', n / 2);

    [Fact]
    public void Bert_accent_stripping_is_linear_in_a_run_of_combining_marks()
    {
        var tokenizer = TestVocab.Tokenizer();
        Assert.Equal(["a"], tokenizer.Encode(CombiningRun(1000)).Tokens.Skip(1).SkipLast(1));
        AssertNearLinear(n => tokenizer.Encode(CombiningRun(n)));
    }

    [Fact]
    public void Bert_canonical_order_of_short_and_long_runs_is_a_stable_sort_by_class()
    {
        // Spacing marks with a combining class (Mc) survive accent stripping, so the output shows
        // their order; the nonspacing ones (Mn) are sorted with them, then dropped. (.NET's own
        // Normalize leaves some of these unsorted, so the reference is a plain stable sort.)
        var basic = new BertBasicTokenizer(lowerCase: false, stripAccents: true, isolateCjk: true);
        string[] marks = ["\u302E", "\u302F", "\u1B44", "\uA953", "\u1BAA", "\u0301", "\u0316"];
        var random = new Random(3);
        for (int trial = 0; trial < 40; trial++)
        {
            var text = new StringBuilder("e");
            int length = trial < 20 ? random.Next(2, 17) : random.Next(17, 500);
            for (int i = 0; i < length; i++)
            {
                text.Append(marks[random.Next(marks.Length)]);
            }

            text.Append('x').Append(marks[random.Next(marks.Length)]).Append(marks[random.Next(marks.Length)]);
            var expected = new StringBuilder();
            var run = new List<char>();
            foreach (char c in text.ToString() + "z")
            {
                if (UnicodeTables.CombiningClass(c) != 0)
                {
                    run.Add(c);
                    continue;
                }

                expected.Append(run.OrderBy(m => UnicodeTables.CombiningClass(m)).Where(m => !BertCharacters.IsNonspacingMark(m)).ToArray()).Append(c);
                run.Clear();
            }

            Assert.Equal(expected.ToString()[..^1], basic.Split(text.ToString()).Chars.ToString());
        }
    }

    [Fact]
    public void Gpt2_long_chunks_are_linear_in_length()
    {
        var tokenizer = Gpt2Tokenizer.CreateDefault();
        Assert.True(tokenizer.UsesTiktoken);
        AssertNearLinear(n => tokenizer.Encode(new string('日', n)));
        AssertNearLinear(n => tokenizer.Encode(new string('a', n)));
    }

    [Fact]
    public void Gpt2_long_chunk_threshold_is_above_the_longest_token()
    {
        var tiktoken = Gpt2Tiktoken.Instance;
        int longest = Enumerable.Range(0, tiktoken.Vocabulary.Count).Max(id => tiktoken.Vocabulary.Bytes(id).Length);
        Assert.True(longest < Gpt2Tiktoken.LongChunkBytes, $"longest token {longest} bytes");
    }

    [Fact]
    public void Gpt2_ranked_merge_gives_tiktokens_ids_on_every_chunk()
    {
        var tiktoken = Gpt2Tiktoken.Instance;
        var random = new Random(7);
        string[] pools =
        [
            "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789", " \t\n", ".,;:!?'\"()[]{}-_/\\@#$%^&*",
            "éèêëàâäôöûüçñß", "日本語中文漢字かなカナ한국어", "🍕😀👍🏽", "\u0301\u0316\u0327", "привет мир", "ααβγδ",
        ];
        var texts = new List<string>();
        for (int i = 0; i < 400; i++)
        {
            var text = new StringBuilder();
            int length = random.Next(1, i < 300 ? 80 : 700);
            while (text.Length < length)
            {
                string pool = pools[random.Next(random.Next(1, pools.Length + 1))];
                text.Append(char.IsSurrogate(pool[0]) ? pool.Substring(2 * random.Next(pool.Length / 2), 2) : pool[random.Next(pool.Length)].ToString());
            }

            texts.Add(text.ToString());
        }

        // Single chunks around the threshold and far over it, with repeats that tempt equal ranks.
        for (int bytes = Gpt2Tiktoken.LongChunkBytes - 6; bytes <= Gpt2Tiktoken.LongChunkBytes + 6; bytes++)
        {
            texts.Add(new string('a', bytes));
            texts.Add(" " + RandomLetters(random, bytes - 1));
            texts.Add(string.Concat(Enumerable.Repeat("ab", bytes / 2)));
        }

        texts.Add(new string('日', 700));
        texts.Add(string.Concat(Enumerable.Repeat("the", 600)));
        texts.Add(RandomLetters(random, 3000));

        var chunks = new List<(int Start, int End)>();
        int compared = 0;
        foreach (string text in texts)
        {
            chunks.Clear();
            Gpt2PreTokenizer.Split(text, chunks);
            foreach (var (start, end) in chunks)
            {
                string chunk = text[start..end];
                byte[] utf8 = Encoding.UTF8.GetBytes(chunk);
                if (tiktoken.Vocabulary.TryGetId(BpeVocabulary.ToAlphabet(utf8), out _))
                {
                    continue; // tiktoken returns a whole-chunk token without merging
                }

                var expected = new List<int>();
                var actual = new List<int>();
                tiktoken.EncodeTiktoken(chunk, utf8, expected);
                tiktoken.EncodeRanked(utf8, actual);
                Assert.True(expected.SequenceEqual(actual), $"chunk '{chunk}': tiktoken [{string.Join(",", expected)}], ranked [{string.Join(",", actual)}]");
                compared++;
            }
        }

        Assert.True(compared > 1000, $"{compared} chunks compared");
    }

    private static string RandomLetters(Random random, int n)
    {
        var chars = new char[n];
        for (int i = 0; i < n; i++)
        {
            chars[i] = (char)('a' + random.Next(26));
        }

        return new string(chars);
    }

    // Time (min of 3 runs) may grow at most 5× per 4× length. Times under 2 ms are clock and
    // scheduler noise, so the shorter input counts as at least 2 ms; a step that fails is measured
    // again (up to three times), since a busy machine can slow one measurement, never all of them.
    private static void AssertNearLinear(Action<int> run)
    {
        run(Lengths[0]);
        for (int i = 1; i < Lengths.Length; i++)
        {
            string failure = string.Empty;
            for (int attempt = 0; attempt < 3; attempt++)
            {
                double small = MinTime(run, Lengths[i - 1]), large = MinTime(run, Lengths[i]);
                double ratio = large / Math.Max(small, 2.0);
                if (ratio <= 5)
                {
                    failure = string.Empty;
                    break;
                }

                failure = $"{Lengths[i - 1]} -> {Lengths[i]} characters: {small:F1} -> {large:F1} ms ({ratio:F1}×)";
            }

            Assert.True(failure.Length == 0, failure);
        }
    }

    // A collection first, so that one an earlier run's garbage makes due is not charged to this run.
    private static double MinTime(Action<int> run, int n) => Enumerable.Range(0, 3).Min(_ =>
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var clock = Stopwatch.StartNew();
        run(n);
        return clock.Elapsed.TotalMilliseconds;
    });
}
