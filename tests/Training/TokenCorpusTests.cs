using Headlight.Models.Tokenization;
using Headlight.Models.Training;

namespace Headlight.Tests.Training;

public sealed class TokenCorpusTests : IDisposable
{
    private readonly string folder = TrainingFiles.TempFolder();
    private readonly HfTokenizer tokenizer = HfTokenizer.FromFile(Path.Combine(TrainingFiles.Fixture("trained-bpe"), "tokenizer.json"));

    public void Dispose() => Directory.Delete(folder, recursive: true);

    private string WriteLines(string name, IEnumerable<string> lines)
    {
        string path = Path.Combine(folder, name);
        File.WriteAllLines(path, lines);
        return path;
    }

    private static string[] Sentences(int count) =>
        Enumerable.Range(0, count).Select(i => $"Sentence number {i} says that the {i % 7} foxes jumped over {i * 3} dogs.").ToArray();

    [Fact]
    public void Ids_are_the_documents_encoded_and_joined_by_the_separator()
    {
        string[] lines = Sentences(20);
        string path = WriteLines("corpus.txt", lines);
        TokenCorpus corpus = TokenCorpus.Load(path, tokenizer, null, heldOutFraction: 0.1, separatorId: 0);
        int[] expected = lines.SelectMany(l => tokenizer.Encode(l).Ids.Append(0)).ToArray();
        Assert.Equal(20, corpus.Documents);
        Assert.Equal(2, corpus.HeldOutDocuments);
        Assert.Equal(expected.Length, corpus.TrainTokens + corpus.HeldOutTokens);
        int train = lines.Take(18).Sum(l => tokenizer.Encode(l).Ids.Count + 1);
        Assert.Equal(train, corpus.TrainTokens);
        Assert.Equal(expected[..train], corpus.TrainIds.ToArray());
        Assert.Equal(expected[train..], corpus.HeldOutIds.ToArray());
    }

    [Fact]
    public void Sampled_windows_are_slices_of_the_training_part()
    {
        TokenCorpus corpus = TokenCorpus.Load(WriteLines("corpus.txt", Sentences(50)), tokenizer, null, separatorId: 0);
        const int length = 16;
        int[] inputs = new int[length * 8], targets = new int[length * 8];
        corpus.SampleWindows(new Random(7), length, inputs, targets);
        int[] train = corpus.TrainIds.ToArray();

        // Replay the same draws to know each window's start.
        var replay = new Random(7);
        for (int w = 0; w < 8; w++)
        {
            int start = replay.Next(corpus.TrainTokens - length);
            Assert.Equal(train[start..(start + length)], inputs[(w * length)..((w + 1) * length)]);
            Assert.Equal(train[(start + 1)..(start + length + 1)], targets[(w * length)..((w + 1) * length)]);
        }
    }

    [Fact]
    public void Held_out_windows_are_fixed_non_overlapping_and_disjoint_from_training()
    {
        string[] lines = Sentences(60);
        TokenCorpus corpus = TokenCorpus.Load(WriteLines("corpus.txt", lines), tokenizer, null, heldOutFraction: 0.2, separatorId: 0);
        Assert.Equal(12, corpus.HeldOutDocuments);
        const int length = 8;
        int count = corpus.HeldOutWindowCount(length, 100);
        Assert.Equal((corpus.HeldOutTokens - 1) / length, count);
        int[] inputs = new int[count * length], targets = new int[count * length];
        Assert.Equal(count, corpus.HeldOutWindows(length, 100, inputs, targets));
        int[] heldOut = corpus.HeldOutIds.ToArray();
        Assert.Equal(heldOut[..(count * length)], inputs);
        Assert.Equal(heldOut[1..(count * length + 1)], targets);

        int[] again = new int[count * length], againTargets = new int[count * length];
        corpus.HeldOutWindows(length, 100, again, againTargets);
        Assert.Equal(inputs, again);

        // The held-out part is exactly the last 12 documents.
        int[] tail = lines[48..].SelectMany(l => tokenizer.Encode(l).Ids.Append(0)).ToArray();
        Assert.Equal(tail, heldOut);
        Assert.Equal(2, corpus.HeldOutWindows(length, 2, inputs, targets));
    }

    [Fact]
    public void A_folder_is_one_document_per_file_in_name_order()
    {
        string texts = Path.Combine(folder, "texts");
        Directory.CreateDirectory(texts);
        File.WriteAllText(Path.Combine(texts, "b.txt"), "Second file.\nStill second.");
        File.WriteAllText(Path.Combine(texts, "a.txt"), "First file.");
        File.WriteAllText(Path.Combine(texts, "c.md"), "not read");
        TokenCorpus corpus = TokenCorpus.Load(texts, tokenizer, null, heldOutFraction: 0.5, separatorId: 0);
        Assert.Equal(2, corpus.Documents);
        Assert.Equal(1, corpus.HeldOutDocuments);
        Assert.Equal(tokenizer.Encode("First file.").Ids.Append(0), corpus.TrainIds.ToArray());
        Assert.Equal(tokenizer.Encode("Second file.\nStill second.").Ids.Append(0), corpus.HeldOutIds.ToArray());
    }

    [Fact]
    public void The_cache_is_reused_and_invalidated_by_a_changed_input()
    {
        string cache = Path.Combine(folder, "cache");
        string path = WriteLines("corpus.txt", Sentences(30));
        TokenCorpus first = TokenCorpus.Load(path, tokenizer, cache, separatorId: 0);
        Assert.False(first.FromCache);
        Assert.True(File.Exists(first.CachePath));

        TokenCorpus second = TokenCorpus.Load(path, tokenizer, cache, separatorId: 0);
        Assert.True(second.FromCache);
        Assert.Equal(first.CachePath, second.CachePath);
        Assert.Equal(first.TrainIds.ToArray(), second.TrainIds.ToArray());
        Assert.Equal(first.HeldOutIds.ToArray(), second.HeldOutIds.ToArray());

        // Another separator or an edited file is another key.
        Assert.False(TokenCorpus.Load(path, tokenizer, cache, separatorId: null).FromCache);
        File.AppendAllText(path, "One more line.\n");
        TokenCorpus edited = TokenCorpus.Load(path, tokenizer, cache, separatorId: 0);
        Assert.False(edited.FromCache);
        Assert.NotEqual(first.CachePath, edited.CachePath);
        Assert.Equal(31, edited.Documents);
    }

    [Fact]
    public void The_cache_is_invalidated_by_another_tokenizer_file()
    {
        string cache = Path.Combine(folder, "cache");
        string path = WriteLines("corpus.txt", Sentences(10));
        string other = Path.Combine(folder, "other.json");
        ByteLevelBpeTrainer.Train(TrainingFiles.SmallText, 300, other);
        TokenCorpus.Load(path, tokenizer, cache);
        TokenCorpus withOther = TokenCorpus.Load(path, HfTokenizer.FromFile(other), cache);
        Assert.False(withOther.FromCache);
    }

    [Theory]
    [InlineData("truncated")]
    [InlineData("header")]
    [InlineData("out-of-vocabulary")]
    [InlineData("empty")]
    public void A_corrupt_cache_is_rebuilt(string damage)
    {
        string cache = Path.Combine(folder, "cache");
        string path = WriteLines("corpus.txt", Sentences(30));
        TokenCorpus first = TokenCorpus.Load(path, tokenizer, cache, separatorId: 0);
        byte[] bytes = File.ReadAllBytes(first.CachePath!);
        byte[] broken = damage switch
        {
            "truncated" => bytes[..^4],
            "header" => [.. bytes[..4].Select(b => (byte)~b), .. bytes[4..]],
            "out-of-vocabulary" => [.. bytes[..^4], 0xFF, 0xFF, 0xFF, 0x7F],
            _ => [],
        };
        File.WriteAllBytes(first.CachePath!, broken);

        TokenCorpus rebuilt = TokenCorpus.Load(path, tokenizer, cache, separatorId: 0);
        Assert.False(rebuilt.FromCache);
        Assert.Equal(first.TrainIds.ToArray(), rebuilt.TrainIds.ToArray());
        Assert.Equal(bytes, File.ReadAllBytes(first.CachePath!));
        Assert.True(TokenCorpus.Load(path, tokenizer, cache, separatorId: 0).FromCache);
    }

    [Fact]
    public void A_corpus_too_small_for_a_window_names_the_file_and_the_sizes()
    {
        string path = WriteLines("tiny.txt", ["Just a few words.", "And a few more."]);
        TokenCorpus corpus = TokenCorpus.Load(path, tokenizer, null, heldOutFraction: 0.5, separatorId: 0);
        int[] inputs = new int[64], targets = new int[64];
        var error = Assert.Throws<ArgumentException>(() => corpus.SampleWindows(new Random(1), 64, inputs, targets));
        Assert.Contains(path, error.Message, StringComparison.Ordinal);
        Assert.Contains($"{corpus.TrainTokens} tokens", error.Message, StringComparison.Ordinal);
        Assert.Contains("64 + 1", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => corpus.HeldOutWindows(64, 1, inputs, targets));

        Assert.Throws<ArgumentException>(() => TokenCorpus.Load(WriteLines("blank.txt", ["", ""]), tokenizer, null));
        Assert.Throws<FileNotFoundException>(() => TokenCorpus.Load(Path.Combine(folder, "missing.txt"), tokenizer, null));
    }
}
