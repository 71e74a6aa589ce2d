using Headlight.Models;
using Headlight.Models.Tokenization;
using Headlight.Tests.Loading;

namespace Headlight.Tests.Model;

/// <summary>Bad model paths and bad inputs give typed errors that name the file, field or limit.</summary>
public sealed class ModelInputErrorTests
{
    [Fact]
    public void Unknown_name_says_what_names_exist()
    {
        var e = Assert.Throws<FileNotFoundException>(() => Headlight.Models.Model.Load("no-such-model", Backends.Require("cpu")));
        Assert.Contains("minilm", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_architecture_names_the_field()
    {
        string folder = Directory.CreateTempSubdirectory("headlight-arch").FullName;
        try
        {
            File.WriteAllText(Path.Combine(folder, "config.json"), """{"model_type": "t5", "d_model": 512}""");
            var e = Assert.Throws<ModelFormatException>(() => Headlight.Models.Model.Load(folder, Backends.Require("cpu")));
            Assert.Equal("model_type", e.Field);
            Assert.Contains("t5", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Truncated_onnx_file_is_a_format_error_naming_the_file()
    {
        string path = Path.Combine(Path.GetTempPath(), $"headlight-truncated-{Guid.NewGuid():N}.onnx");
        try
        {
            byte[] bytes = File.ReadAllBytes(TestModels.Files("minilm").ModelPath);
            File.WriteAllBytes(path, bytes[..(bytes.Length / 3)]);
            var e = Assert.Throws<ModelFormatException>(() => Headlight.Models.Model.Load(path, Backends.Require("cpu")));
            Assert.Equal(path, e.FilePath);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void Config_that_disagrees_with_the_weights_names_tensor_and_shapes()
    {
        string folder = Directory.CreateTempSubdirectory("headlight-gpt2").FullName;
        try
        {
            string fixture = LoadingFiles.SharedFixture("gpt2-tiny");
            File.Copy(Path.Combine(fixture, "model.safetensors"), Path.Combine(folder, "model.safetensors"));
            string config = File.ReadAllText(Path.Combine(fixture, "config.json")).Replace("\"n_embd\": 32", "\"n_embd\": 48", StringComparison.Ordinal);
            File.WriteAllText(Path.Combine(folder, "config.json"), config);
            var e = Assert.Throws<ModelFormatException>(() => Headlight.Models.Model.Load(folder, Backends.Require("cpu")));
            Assert.Contains("48", e.Expected, StringComparison.Ordinal);
            Assert.Contains("32", e.Found, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void Text_longer_than_the_positions_fails_unless_truncation_is_asked_for()
    {
        // The bare ONNX file carries no sentence-transformers max_seq_length: only the 512 positions bound it.
        string onnx = Headlight.Models.Loading.ModelCatalog.Extract(Headlight.Models.Loading.ModelCatalog.MiniLM).ModelPath;
        using var model = Headlight.Models.Model.Load(onnx, Backends.Require("cpu"));
        string longText = string.Join(" ", Enumerable.Repeat("word", 600));
        var e = Assert.Throws<InputTooLongException>(() => model.Tokenize([longText]));
        Assert.Equal(512, e.Limit);
        Assert.Equal(602, e.TokenCount);
        var batch = model.Tokenize([longText], TruncationMode.LongestFirst);
        Assert.Equal(512, batch.SequenceLength);
        Assert.Equal(512, model.Forward(batch).SequenceLength);
    }

    [Fact]
    public void Packaged_minilm_cuts_texts_at_its_max_seq_length_as_sentence_transformers_does()
    {
        // all-MiniLM-L6-v2's sentence_bert_config.json sets max_seq_length 256: sentence-transformers cuts every
        // text to 256 tokens, [CLS] and [SEP] included, so a 300-word text embeds as its first 254 words.
        using var model = Headlight.Models.Model.Load("minilm", Backends.Require("cpu"));
        Assert.Equal(256, model.Config.MaxSequenceLength);
        var words = Enumerable.Range(0, 300).Select(i => i % 3 == 0 ? "river" : i % 3 == 1 ? "stone" : "light").ToArray();
        var batch = model.Tokenize([string.Join(" ", words)]);
        Assert.Equal(256, batch.SequenceLength);
        float[] cut = model.Embed([string.Join(" ", words)])[0];
        float[] first = model.Embed([string.Join(" ", words.Take(254))])[0];
        Assert.Equal(first, cut);
    }

    [Fact]
    public void Empty_text_bad_ids_and_unknown_capture_names_are_argument_errors()
    {
        using var model = Headlight.Models.Model.Load("minilm", Backends.Require("cpu"));
        Assert.Contains("empty", Assert.Throws<ArgumentException>(() => model.Tokenize(["  \t "])).Message, StringComparison.Ordinal);
        var badId = Assert.Throws<ArgumentException>(() => model.FromIds([[101, 30522, 102]]));
        Assert.Contains("30522", badId.Message, StringComparison.Ordinal);
        var capture = Assert.Throws<ArgumentException>(() => model.Forward(model.Tokenize(["hi"]), ["layer9.attn.probs"]));
        Assert.Contains("6 layers", capture.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => model.Forward(model.Tokenize(["hi"]), ["layer0.attn.weights"]));
    }

    [Fact]
    public void Decoder_only_calls_on_an_encoder_are_rejected()
    {
        using var model = Headlight.Models.Model.Load("minilm", Backends.Require("cpu"));
        var result = model.Forward(model.Tokenize(["hi"]));
        Assert.Throws<InvalidOperationException>(() => model.TopK(result, 0, 0, 3));
        Assert.Throws<InvalidOperationException>(() => model.Generate([101], 2));
    }

    [Theory]
    [InlineData(int.MaxValue)]
    [InlineData(int.MaxValue - 1)]
    public void Generate_count_that_overflows_the_position_check_names_count_and_limit(int count)
    {
        using var model = Headlight.Models.Model.Load(LoadingFiles.SharedFixture("gpt2-tiny"), Backends.Require("cpu"));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate([1, 2], count));
        Assert.Equal("count", e.ParamName);
        Assert.Contains(model.Config.MaxTokens.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Message, StringComparison.Ordinal);
        Assert.Contains("position limit", e.Message, StringComparison.Ordinal);
    }
}
