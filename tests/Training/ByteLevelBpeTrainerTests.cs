using System.Text.Json;
using Headlight.Models.Tokenization;
using Headlight.Models.Training;
using Xunit.Abstractions;

namespace Headlight.Tests.Training;

public sealed class ByteLevelBpeTrainerTests(ITestOutputHelper output)
{
    // "abab abab ab" → chunks "abab", "Ġabab", "Ġab" (once each).
    // Counts: (a,b) 5, (b,a) 2, (Ġ,a) 2 → merge a b. Then (ab,ab) 2, (Ġ,ab) 2: tie, Ġ (alphabet id)
    // is smaller than ab (id 257) → merge Ġ ab. Then (ab,ab) 1, (Ġab,ab) 1: tie → ab ab, then Ġab ab.
    [Fact]
    public void Merges_on_a_tiny_text_match_the_hand_computed_list()
    {
        var once = new ByteLevelBpeOptions { MinPairFrequency = 1 };
        var (vocabulary, merges) = ByteLevelBpeTrainer.Learn(["abab abab ab"], 1000, once);
        Assert.Equal([("a", "b"), ("Ġ", "ab"), ("ab", "ab"), ("Ġab", "ab")], merges);
        Assert.Equal(["ab", "Ġab", "abab", "Ġabab"], vocabulary.Skip(257));
        Assert.Equal("<|endoftext|>", vocabulary[0]);

        var twice = ByteLevelBpeTrainer.Learn(["abab abab ab"], 1000, new ByteLevelBpeOptions()).Merges;
        Assert.Equal([("a", "b"), ("Ġ", "ab")], twice);

        var capped = ByteLevelBpeTrainer.Learn(["abab abab ab"], 258, once).Merges;
        Assert.Equal([("a", "b")], capped);
    }

    [Fact]
    public void Overlapping_runs_merge_left_to_right_and_specials_are_cut_out()
    {
        // "aaa" → (a,a) counted twice in the chunk; merging gives "aa a", so (aa,a) once.
        var options = new ByteLevelBpeOptions { MinPairFrequency = 1, SpecialTokens = ["<s>", "</s>"] };
        var (vocabulary, merges) = ByteLevelBpeTrainer.Learn(["aaa<s>b</s>"], 1000, options);
        Assert.Equal([("a", "a"), ("aa", "a")], merges);
        Assert.Equal(["<s>", "</s>"], vocabulary.Take(2));
    }

    [Fact]
    public void Written_file_loads_and_round_trips_unicode_text()
    {
        string folder = TrainingFiles.TempFolder();
        string path = Path.Combine(folder, "tokenizer.json");
        ByteLevelBpeTrainer.Train(TrainingFiles.SmallText, 400, path, new ByteLevelBpeOptions { MinPairFrequency = 1 });
        HfTokenizer tokenizer = HfTokenizer.FromFile(path);
        Assert.Equal(400, tokenizer.VocabularySize);
        Assert.True(tokenizer.IsSpecial(0));
        Assert.Equal("<|endoftext|>", tokenizer.GetToken(0));

        string[] texts =
        [
            "The quick brown fox.", "Grüße, мир, 世界! 😀🎉 𝒜𝒷𝒸", "e\u0301 ﬁ ①", "  spaces   and\ttabs\r\nand lines\n\n",
            "code: def f(x):\n    return x ** 2", "unseen words: zyxwvut qqq", "", "<|endoftext|> between <|endoftext|>",
        ];
        foreach (string text in texts)
        {
            TokenizedText encoded = tokenizer.Encode(text);
            Assert.Equal(text, tokenizer.Decode(encoded.Ids.ToArray()));
        }

        Assert.Equal([0], tokenizer.Encode("<|endoftext|>").Ids);
        Directory.Delete(folder, recursive: true);
    }

    [Fact]
    public void Training_is_deterministic_and_independent_of_document_order()
    {
        string folder = TrainingFiles.TempFolder();
        string a = Path.Combine(folder, "a.json"), b = Path.Combine(folder, "b.json"), c = Path.Combine(folder, "c.json");
        ByteLevelBpeTrainer.Train(TrainingFiles.SmallText, 500, a);
        ByteLevelBpeTrainer.Train(TrainingFiles.SmallText, 500, b);
        ByteLevelBpeTrainer.Train(TrainingFiles.SmallText.Reverse(), 500, c);
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(b));
        Assert.Equal(File.ReadAllBytes(a), File.ReadAllBytes(c));
        Directory.Delete(folder, recursive: true);
    }

    [Fact]
    public void Bad_arguments_are_refused()
    {
        string path = Path.Combine(Path.GetTempPath(), "never-written.json");
        Assert.Throws<ArgumentOutOfRangeException>(() => ByteLevelBpeTrainer.Train(["x"], 256, path));
        Assert.Throws<ArgumentOutOfRangeException>(() => ByteLevelBpeTrainer.Train(["x"], 300, path, new ByteLevelBpeOptions { MinPairFrequency = 0 }));
        Assert.Throws<ArgumentException>(() => ByteLevelBpeTrainer.Train(["x"], 300, path, new ByteLevelBpeOptions { SpecialTokens = ["<a>", "<a>"] }));
        Assert.False(File.Exists(path));
    }

    // tests/fixtures/trained-bpe: this trainer's output on Brown (4,096 entries) and the ids Hugging
    // Face's tokenizers gives with it (tools/tokenizer-referee/generate-trained-bpe.mjs).
    [Fact]
    public void Trained_brown_tokenizer_encodes_as_the_referee()
    {
        string folder = TrainingFiles.Fixture("trained-bpe");
        HfTokenizer tokenizer = HfTokenizer.FromFile(Path.Combine(folder, "tokenizer.json"));
        using var expected = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(folder, "expected.json")));
        int count = 0;
        var failures = new List<string>();
        foreach (JsonElement c in expected.RootElement.GetProperty("cases").EnumerateArray())
        {
            count++;
            string text = c.GetProperty("text").GetString()!;
            int[] ids = c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            int[] actual = tokenizer.Encode(text).Ids.ToArray();
            if (!ids.SequenceEqual(actual))
            {
                failures.Add($"{c.GetProperty("name").GetString()}: expected [{string.Join(",", ids)}], got [{string.Join(",", actual)}]");
            }
            else if (tokenizer.Decode(actual) != c.GetProperty("decoded").GetString())
            {
                failures.Add($"{c.GetProperty("name").GetString()}: decoded differently");
            }
        }

        output.WriteLine($"{count - failures.Count} of {count} cases agree with the referee");
        Assert.True(count >= 300, $"only {count} cases");
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(10)));
    }
}
