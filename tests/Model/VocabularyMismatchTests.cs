using System.Text;
using System.Text.Json;
using Headlight.Models;
using Headlight.Models.Tokenization;
using Headlight.Tests.Loading;

namespace Headlight.Tests.Model;

/// <summary>
/// Tokenizer and model vocabularies of different sizes. A model id past a smaller tokenizer (an embedding padded past
/// it) is shown as <c>&lt;id N&gt;</c> by FromIds, TopK and Generate; a tokenizer larger than the model is refused at
/// load, naming both files and both sizes.
/// </summary>
public sealed class VocabularyMismatchTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("headlight-vocab-mismatch-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    [Fact]
    public void Model_ids_past_a_smaller_tokenizer_get_a_placeholder_in_from_ids_top_k_and_generate()
    {
        // gpt2-tiny has 512 embeddings; this tokenizer has the 256 byte tokens and <|endoftext|> (ids 0-256).
        CopyGpt2Tiny(extraTokens: 0);
        using var model = Headlight.Models.Model.Load(folder, Backends.Require("cpu"));
        Assert.Equal(257, model.Tokenizer!.VocabularySize);
        var batch = model.FromIds([[300, 65, 511]]);
        Assert.Equal(new[] { "<id 300>", "A", "<id 511>" }, batch.Texts[0].Tokens);
        var result = model.Forward(batch);
        var top = model.TopK(result, 0, 2, 512);
        Assert.Equal(512, top.Count);
        Assert.All(top.Where(p => p.Id >= 257), p => Assert.Equal($"<id {p.Id}>", p.Token));
        var generated = model.Generate([300, 301], 5);
        Assert.Equal(5, generated.Count);
        Assert.All(generated, id => Assert.InRange(id, 0, 511));
    }

    [Fact]
    public void A_gpt2_tokenizer_larger_than_the_model_is_refused_at_load_naming_both_files_and_sizes()
    {
        CopyGpt2Tiny(extraTokens: 300);
        var e = Assert.Throws<ModelFormatException>(() => Headlight.Models.Model.Load(folder, Backends.Require("cpu")));
        Assert.Equal(Path.Combine(folder, "vocab.json"), e.FilePath);
        Assert.Contains("config.json", e.Message, StringComparison.Ordinal);
        Assert.Contains("512", e.Message, StringComparison.Ordinal);
        Assert.Contains("557", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_onnx_models_vocab_txt_larger_than_the_model_is_refused_at_load_naming_both_files_and_sizes()
    {
        var files = TestModels.Files("minilm");
        string onnx = Path.Combine(folder, "model.onnx");
        File.Copy(files.ModelPath, onnx);
        var lines = File.ReadAllLines(files.VocabPath).ToList();
        int modelVocab = lines.Count;
        lines.AddRange(Enumerable.Range(0, 5).Select(i => $"extra{i}"));
        File.WriteAllLines(Path.Combine(folder, "vocab.txt"), lines);
        var e = Assert.Throws<ModelFormatException>(() => Headlight.Models.Model.Load(onnx, Backends.Require("cpu")));
        Assert.Equal(Path.Combine(folder, "vocab.txt"), e.FilePath);
        Assert.Contains(onnx, e.Message, StringComparison.Ordinal);
        Assert.Contains(modelVocab.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message, StringComparison.Ordinal);
        Assert.Contains((modelVocab + 5).ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message, StringComparison.Ordinal);
    }

    // gpt2-tiny's config and weights, with a vocab.json of the 256 byte tokens, extraTokens two-letter tokens and
    // <|endoftext|>, and an empty merges.txt.
    private void CopyGpt2Tiny(int extraTokens)
    {
        string fixture = LoadingFiles.SharedFixture("gpt2-tiny");
        File.Copy(Path.Combine(fixture, "config.json"), Path.Combine(folder, "config.json"));
        File.Copy(Path.Combine(fixture, "model.safetensors"), Path.Combine(folder, "model.safetensors"));
        var tokens = Enumerable.Range(0, 256).Select(b => BpeVocabulary.ToAlphabet([(byte)b]))
            .Concat(Enumerable.Range(0, extraTokens).Select(i => $"{(char)('a' + (i / 26))}{(char)('a' + (i % 26))}"))
            .Append("<|endoftext|>");
        var vocab = tokens.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i);
        File.WriteAllText(Path.Combine(folder, "vocab.json"), JsonSerializer.Serialize(vocab), Encoding.UTF8);
        File.WriteAllText(Path.Combine(folder, "merges.txt"), "#version: 0.2\n", Encoding.UTF8);
    }
}
