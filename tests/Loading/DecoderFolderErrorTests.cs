using System.Text.Json.Nodes;
using Headlight.Models;

namespace Headlight.Tests.Loading;

/// <summary>
/// Bad GPT-NeoX, Llama and Qwen2 folders: each is a <see cref="ModelFormatException"/> naming the file and the key or
/// tensor, raised from config.json and the weight headers before any weight is read.
/// </summary>
public sealed class DecoderFolderErrorTests
{
    public static TheoryData<string, string, string, string> ConfigEdits => new()
    {
        // fixture, key, new JSON value, the field the error names
        { "llama-tiny", "model_type", "\"mistral\"", "model_type" },
        { "llama-tiny", "num_key_value_heads", "3", "num_key_value_heads" },
        { "llama-tiny", "num_key_value_heads", "0", "num_key_value_heads" },
        { "qwen2-tiny", "num_attention_heads", "5", "num_attention_heads" },
        { "llama-tiny", "rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}", "rope_scaling.rope_type" },
        { "llama-tiny", "rope_scaling", "{\"type\": \"dynamic\", \"factor\": 2.0}", "rope_scaling.type" },
        { "llama-tiny", "rope_scaling", "{\"rope_type\": \"llama3\", \"factor\": 8.0}", "low_freq_factor" },
        { "llama-tiny", "rope_scaling", "\"llama3\"", "rope_scaling" },
        { "llama-tiny", "hidden_act", "\"gelu\"", "hidden_act" },
        { "llama-tiny", "head_dim", "32", "head_dim" },
        { "llama-tiny", "rope_theta", "-1", "rope_theta" },
        { "llama-tiny", "layer_types", "[\"sliding_attention\", \"full_attention\"]", "layer_types" },
        { "pythia-tiny", "rotary_pct", "0.1875", "rotary_pct" },
        { "pythia-tiny", "rotary_pct", "1.5", "rotary_pct" },
        { "pythia-tiny", "use_parallel_residual", "false", "use_parallel_residual" },
        { "pythia-tiny", "hidden_act", "\"relu\"", "hidden_act" },
        { "qwen2-tiny", "use_sliding_window", "true", "use_sliding_window" },
        { "qwen2-tiny", "eos_token_id", "\"x\"", "eos_token_id" },
        { "qwen2-tiny", "quantization_config", "{\"bits\": 4}", "quantization_config" },
    };

    [Theory]
    [MemberData(nameof(ConfigEdits))]
    public void A_config_it_cannot_honour_is_refused_naming_the_key(string fixture, string key, string value, string field)
    {
        using var folder = Copy(fixture);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(folder.Path, "config.json")))!.AsObject();
        config[key] = JsonNode.Parse(value);
        File.WriteAllText(Path.Combine(folder.Path, "config.json"), config.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => Headlight.Models.Model.Load(folder.Path, Backends.Require("cpu")));
        Assert.Contains(field, e.Field, StringComparison.Ordinal);
        Assert.EndsWith("config.json", e.FilePath, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("llama-tiny", "intermediate_size", 100, "model.layers.0.mlp.gate_proj.weight")]
    [InlineData("llama-tiny", "num_key_value_heads", 4, "model.layers.0.self_attn.k_proj.weight")]
    [InlineData("qwen2-tiny", "vocab_size", 500, "model.embed_tokens.weight")]
    [InlineData("pythia-tiny", "hidden_size", 32, "gpt_neox.embed_in.weight")]
    [InlineData("pythia-tiny", "num_hidden_layers", 1, "gpt_neox.layers.1.")]
    [InlineData("llama-tiny", "num_hidden_layers", 3, "model.layers.2.")]
    public void Shapes_that_disagree_with_the_config_name_the_tensor(string fixture, string key, int value, string tensor)
    {
        using var folder = Copy(fixture);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(folder.Path, "config.json")))!.AsObject();
        config[key] = value;
        File.WriteAllText(Path.Combine(folder.Path, "config.json"), config.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => Headlight.Models.Model.Load(folder.Path, Backends.Require("cpu")));
        Assert.StartsWith(tensor, e.Field, StringComparison.Ordinal);
        Assert.EndsWith("model.safetensors", e.FilePath, StringComparison.Ordinal);
    }

    [Fact]
    public void A_tied_config_without_its_head_or_an_untied_one_missing_it_is_explained()
    {
        // llama-tiny stores lm_head.weight; declared tied, the stored head is skipped as transformers does.
        using (var tied = Copy("llama-tiny"))
        {
            Edit(tied, "tie_word_embeddings", JsonValue.Create(true));
            using var model = Headlight.Models.Model.Load(tied.Path, Backends.Require("cpu"));
            Assert.False(model.Config.HasUntiedHead);
        }

        // qwen2-tiny has no lm_head.weight: declared untied, the missing head is named.
        using var untied = Copy("qwen2-tiny");
        Edit(untied, "tie_word_embeddings", JsonValue.Create(false));
        var e = Assert.Throws<ModelFormatException>(() => Headlight.Models.Model.Load(untied.Path, Backends.Require("cpu")));
        Assert.Equal("lm_head.weight", e.Field);
        Assert.Contains("tie_word_embeddings", e.Expected, StringComparison.Ordinal);
    }

    [Fact]
    public void Llama3_rope_scaling_rescales_the_frequencies_as_hugging_face_does()
    {
        var config = new ModelConfig
        {
            Family = ModelFamily.LlamaDecoder, Layers = 1, Hidden = 2048, Heads = 32, Intermediate = 8, VocabSize = 8, MaxPositions = 8,
            LayerNormEpsilon = 1e-5f, Activation = Headlight.Kernels.GeluForm.Erf, RotaryDims = 64, RopeTheta = 500000,
            RopeScaling = new Llama3RopeScaling(32, 1, 4, 8192),
        };
        var inverse = RotaryFrequencies.Inverse(config);

        // Independently: the three bands of modeling_rope_utils' llama3 rule, written out per frequency.
        for (int j = 0; j < 32; j++)
        {
            double f = Math.Pow(500000, -2.0 * j / 64);
            double wavelength = 2 * Math.PI / f;
            double expected = wavelength < 8192 / 4.0 ? f
                : wavelength > 8192 / 1.0 ? f / 32
                : ((1 - ((8192 / wavelength) - 1) / 3) * f / 32) + (((8192 / wavelength) - 1) / 3 * f);
            Assert.Equal(expected, inverse[j], 1e-15);
        }

        // The highest frequency is untouched, the lowest divided by the factor.
        Assert.Equal(1.0, inverse[0]);
        Assert.Equal(Math.Pow(500000, -62.0 / 64) / 32, inverse[31], 1e-20);
    }

    private static void Edit(TempFolder folder, string key, JsonNode? value)
    {
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(folder.Path, "config.json")))!.AsObject();
        config[key] = value;
        File.WriteAllText(Path.Combine(folder.Path, "config.json"), config.ToJsonString());
    }

    private static TempFolder Copy(string fixture)
    {
        var folder = new TempFolder();
        foreach (string file in new[] { "config.json", "model.safetensors" })
        {
            File.Copy(Path.Combine(LoadingFiles.SharedFixture(fixture), file), Path.Combine(folder.Path, file));
        }

        return folder;
    }
}
