using Headlight.Explain.Census;
using Headlight.Models;
using Headlight.Tests.Explain;
using Headlight.Tests.Loading;
using RandomWeights = Headlight.Explain.Census.RandomWeights;

namespace Headlight.Tests.Census;

/// <summary>The built-in corpus, corpus files, and the token rows a census builds from them.</summary>
public sealed class CorpusTests
{
    [Fact]
    public void Built_in_corpus_has_a_few_hundred_varied_distinct_texts()
    {
        var corpus = CensusCorpus.BuiltIn();
        Assert.Equal("built-in", corpus.Name);
        Assert.InRange(corpus.Texts.Count, 300, 1000);
        Assert.Equal(corpus.Texts.Count, corpus.Texts.Distinct(StringComparer.Ordinal).Count());
        Assert.All(corpus.Texts, t => Assert.False(t.StartsWith('#')));
        Assert.Contains(corpus.Texts, t => t.EndsWith('?'));
        Assert.Contains(corpus.Texts, t => t.Contains("=>", StringComparison.Ordinal));
        Assert.Contains(corpus.Texts, t => t.Split(' ').Length >= 35);
        Assert.Contains(corpus.Texts, t => t.Split(' ').Length == 1);
        Assert.Equal(64, corpus.Sha256.Length);
        Assert.Equal(corpus.Sha256, CensusCorpus.BuiltIn().Sha256);
    }

    [Fact]
    public void Corpus_files_skip_comments_and_blank_lines()
    {
        using var temp = new TempFolder();
        string path = temp.File("c.txt");
        File.WriteAllText(path, "# heading\r\nFirst text.\r\n\r\n   Second text.  \n#another\n");
        var corpus = CensusCorpus.FromFile(path);
        Assert.Equal(["First text.", "Second text."], corpus.Texts);
        Assert.Equal(CensusCorpus.FromTexts("x", ["First text.", "Second text."]).Sha256, corpus.Sha256);
        File.WriteAllText(path, "# only a comment\n\n");
        Assert.Contains("no text", Assert.Throws<ArgumentException>(() => CensusCorpus.FromFile(path)).Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => CensusCorpus.FromTexts("x", ["ok", " "]));
        Assert.Throws<ArgumentOutOfRangeException>(() => corpus.WithRepeats(3, 1, 0));
    }

    [Fact]
    public void Encoder_rows_carry_special_tokens_punctuation_and_designed_repeats()
    {
        using var model = Headlight.Models.Model.Load("minilm", Backends.Require("cpu"));
        var corpus = CensusCorpus.FromTexts("t", ["Hello, world!", "Yes."]).WithRepeats(5, 7, 3);
        var plan = CorpusPlan.Build(model, corpus);
        var hello = plan.Texts[0];
        Assert.Equal(["[CLS]", "hello", ",", "world", "!", "[SEP]"], hello.Ids.Select(model.Tokenizer!.GetToken));
        Assert.Equal([TokenKind.Control, TokenKind.Ordinary, TokenKind.Punctuation, TokenKind.Ordinary, TokenKind.Punctuation, TokenKind.Control], hello.Kinds);

        Assert.Equal(5, plan.Repeats.Count);
        Assert.Equal(7, plan.RepeatLength);
        foreach (var row in plan.Repeats)
        {
            Assert.Equal(2 + 14, row.Length);
            Assert.Equal(1, row.CopyStart);
            Assert.Equal("[CLS]", model.Tokenizer!.GetToken(row.Ids[0]));
            Assert.Equal("[SEP]", model.Tokenizer!.GetToken(row.Ids[^1]));
            Assert.Equal(row.Ids.AsSpan(1, 7).ToArray(), row.Ids.AsSpan(8, 7).ToArray());
            Assert.Equal(7, row.Ids.AsSpan(1, 7).ToArray().Distinct().Count());
            Assert.All(row.Ids.AsSpan(1, 14).ToArray(), id => Assert.False(model.Tokenizer!.GetToken(id).StartsWith('[')));
        }

        // The same seed gives the same sequences; another seed others.
        Assert.Equal(plan.Repeats.Select(r => r.Ids), CorpusPlan.Build(model, corpus).Repeats.Select(r => r.Ids));
        Assert.NotEqual(plan.Repeats[0].Ids, CorpusPlan.Build(model, corpus.WithRepeats(5, 7, 4)).Repeats[0].Ids);
    }

    [Fact]
    public void Decoder_rows_start_with_bos_and_models_without_a_tokenizer_get_random_texts()
    {
        using var tiny = TinyModel.Gpt2(9801);
        using var model = Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu"));
        var plan = CorpusPlan.Build(model, CensusCorpus.BuiltIn().WithRepeats(4, 20, 0));
        Assert.Equal("random tokens", plan.TextSource);
        Assert.All(plan.Texts, t => Assert.InRange(t.Length, 1, TinyModel.Positions));
        Assert.Equal(TinyModel.Positions / 2, plan.RepeatLength);
        Assert.All(plan.Repeats, r => Assert.Equal(0, r.CopyStart));

        // A GPT-2 with GPT-2's tokenizer (random weights, small width): <|endoftext|> is prepended as BOS.
        var tokenizer = Headlight.Models.Tokenization.Gpt2Tokenizer.CreateDefault();
        var config = model.Config with { VocabSize = tokenizer.VocabularySize };
        using var gpt2 = Headlight.Models.Model.FromWeights("gpt2-random", config, RandomWeights.Draw(config, 1), tokenizer, model.Device);
        var gptPlan = CorpusPlan.Build(gpt2, CensusCorpus.FromTexts("t", ["Hello, world!"]).WithRepeats(2, 5, 0));
        Assert.Equal([tokenizer.EndOfTextTokenId, .. tokenizer.Encode("Hello, world!").Ids], gptPlan.Texts[0].Ids);
        Assert.Equal(TokenKind.Control, gptPlan.Texts[0].Kinds[0]);
        Assert.Equal(TokenKind.Punctuation, gptPlan.Texts[0].Kinds[2]);
        Assert.All(gptPlan.Repeats, r => Assert.Equal((1, tokenizer.EndOfTextTokenId, 11), (r.CopyStart, r.Ids[0], r.Length)));
    }

    [Fact]
    public void Batches_group_rows_of_similar_length_within_the_token_budget()
    {
        int[] lengths = [5, 30, 6, 7, 31, 5, 12];
        var batches = CorpusPlan.Batches(lengths, maxTokens: 40, maxRows: 3);
        Assert.Equal(Enumerable.Range(0, lengths.Length), batches.SelectMany(b => b).Order());
        Assert.All(batches, b => Assert.True(b.Length <= 3 && (b.Length == 1 || b.Length * b.Max(i => lengths[i]) <= 40)));
        Assert.Equal([0, 5, 2], batches[0]);

        // Within the budget, a short row is still not padded to a much longer one.
        Assert.Equal([[0, 1, 2], [3], [4]], CorpusPlan.Batches([10, 11, 12, 20, 100], maxTokens: 4096, maxRows: 64));
    }
}
