using System.Text.Json.Nodes;
using Headlight.Models;
using Headlight.Models.Loading;

namespace Headlight.Tests.Loading;

/// <summary>Hugging Face config.json parsing and sentence-transformers module configs.</summary>
public sealed class HfConfigTests : IDisposable
{
    private readonly TempFolder temp = new();

    public void Dispose() => temp.Dispose();

    /// <summary>bert-base-uncased's configuration, as save_pretrained writes it.</summary>
    public static JsonObject BertJson() => new()
    {
        ["architectures"] = new JsonArray("BertModel"),
        ["model_type"] = "bert",
        ["hidden_size"] = 768,
        ["num_hidden_layers"] = 12,
        ["num_attention_heads"] = 12,
        ["intermediate_size"] = 3072,
        ["hidden_act"] = "gelu",
        ["max_position_embeddings"] = 512,
        ["type_vocab_size"] = 2,
        ["layer_norm_eps"] = 1e-12,
        ["vocab_size"] = 30522,
        ["hidden_dropout_prob"] = 0.1,
    };

    /// <summary>GPT-2 small's configuration.</summary>
    public static JsonObject Gpt2Json() => new()
    {
        ["architectures"] = new JsonArray("GPT2LMHeadModel"),
        ["model_type"] = "gpt2",
        ["n_embd"] = 768,
        ["n_layer"] = 12,
        ["n_head"] = 12,
        ["n_positions"] = 1024,
        ["n_ctx"] = 1024,
        ["n_inner"] = null,
        ["activation_function"] = "gelu_new",
        ["layer_norm_epsilon"] = 1e-5,
        ["vocab_size"] = 50257,
    };

    [Fact]
    public void Reads_a_bert_config()
    {
        string path = Write(BertJson());
        var config = HfConfig.ReadBert(path);
        Assert.Equal(new BertConfig(768, 12, 12, 3072, ActivationFunction.GeluErf, 512, 1e-12, 30522, 2), config with { Architectures = [] });
        Assert.Equal(["BertModel"], config.Architectures);
        Assert.Equal(64, config.HeadDim);
        Assert.False(config.IsSequenceClassifier);
        Assert.IsType<BertConfig>(HfConfig.Read(path));
    }

    [Fact]
    public void Reads_a_gpt2_config()
    {
        var json = Gpt2Json();
        var config = HfConfig.ReadGpt2(Write(json));
        Assert.Equal(new Gpt2Config(768, 12, 12, 3072, ActivationFunction.GeluTanh, 1024, 1e-5, 50257), config with { Architectures = [] });

        json["n_inner"] = 1000;
        json.Remove("model_type");
        var explicitInner = HfConfig.Read(Write(json));
        Assert.Equal(1000, Assert.IsType<Gpt2Config>(explicitInner).IntermediateSize);
    }

    [Fact]
    public void Sequence_classifier_labels_come_from_id2label_or_num_labels()
    {
        var json = BertJson();
        json["architectures"] = new JsonArray("BertForSequenceClassification");
        json["id2label"] = new JsonObject { ["1"] = "POSITIVE", ["0"] = "NEGATIVE" };
        var config = HfConfig.ReadBert(Write(json));
        Assert.True(config.IsSequenceClassifier);
        Assert.Equal(["NEGATIVE", "POSITIVE"], config.Labels);

        json.Remove("id2label");
        json["num_labels"] = 3;
        Assert.Equal(["LABEL_0", "LABEL_1", "LABEL_2"], HfConfig.ReadBert(Write(json)).Labels);

        json["id2label"] = new JsonObject { ["0"] = "A", ["2"] = "C" };
        Rejects(json, HfConfig.ReadBert, "id2label");
    }

    public static TheoryData<string> BertFields => new()
    {
        "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "hidden_act",
        "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "vocab_size",
    };

    [Theory]
    [MemberData(nameof(BertFields))]
    public void Missing_or_invalid_bert_fields_are_named(string field)
    {
        var json = BertJson();
        json.Remove(field);
        Rejects(json, HfConfig.ReadBert, field);

        json[field] = field == "hidden_act" ? "swishy" : -3;
        Rejects(json, HfConfig.ReadBert, field);

        json[field] = "12";
        if (field != "hidden_act")
        {
            Rejects(json, HfConfig.ReadBert, field);
        }
    }

    public static TheoryData<string> Gpt2Fields => new()
    {
        "n_embd", "n_layer", "n_head", "n_positions", "activation_function", "layer_norm_epsilon", "vocab_size",
    };

    [Theory]
    [MemberData(nameof(Gpt2Fields))]
    public void Missing_or_invalid_gpt2_fields_are_named(string field)
    {
        var json = Gpt2Json();
        json.Remove(field);
        Rejects(json, HfConfig.ReadGpt2, field);

        json[field] = field == "activation_function" ? "gelu_newest" : 0;
        Rejects(json, HfConfig.ReadGpt2, field);
    }

    [Fact]
    public void Inconsistent_or_unknown_configs_are_rejected()
    {
        var bert = BertJson();
        bert["num_attention_heads"] = 10;
        var e = Rejects(bert, HfConfig.ReadBert, "num_attention_heads");
        Assert.Contains("768", e.Message, StringComparison.Ordinal);

        var gpt2 = Gpt2Json();
        gpt2["n_inner"] = 0;
        Rejects(gpt2, HfConfig.ReadGpt2, "n_inner");
        gpt2["n_inner"] = null;
        gpt2["layer_norm_epsilon"] = "small";
        Rejects(gpt2, HfConfig.ReadGpt2, "layer_norm_epsilon");

        var t5 = BertJson();
        t5["model_type"] = "t5";
        Rejects(t5, HfConfig.Read, "model_type");

        var unknownArchitecture = BertJson();
        unknownArchitecture.Remove("model_type");
        unknownArchitecture["architectures"] = new JsonArray("MistralForCausalLM");
        Rejects(unknownArchitecture, HfConfig.Read, "architectures");

        var neither = BertJson();
        neither.Remove("model_type");
        neither.Remove("architectures");
        Rejects(neither, HfConfig.Read, "architectures");

        Rejects(Gpt2Json(), HfConfig.ReadBert, "model_type");
        Rejects(BertJson(), HfConfig.ReadGpt2, "model_type");

        string bad = temp.File("bad.json");
        File.WriteAllText(bad, "{\"hidden_size\": 768,");
        LoadingFiles.ThrowsFormat(() => HfConfig.Read(bad), bad, "(file)");
        File.WriteAllText(bad, "[768]");
        LoadingFiles.ThrowsFormat(() => HfConfig.Read(bad), bad, "(root)");
        File.WriteAllBytes(bad, [(byte)'{', 0xC3, 0x28, (byte)'}']);
        LoadingFiles.ThrowsFormat(() => HfConfig.Read(bad), bad, "(file)");
        Assert.Throws<FileNotFoundException>(() => HfConfig.Read(temp.File("absent.json")));
    }

    [Fact]
    public void Sentence_transformers_pooling_and_normalisation()
    {
        Assert.Equal(new SentenceEmbeddingConfig(PoolingMode.Mean, true, 384), SentenceFolder("mean_tokens", normalize: true));
        Assert.Equal(new SentenceEmbeddingConfig(PoolingMode.Cls, false, 384), SentenceFolder("cls_token", normalize: false));
        Assert.Equal(PoolingMode.Max, SentenceFolder("max_tokens", normalize: false).Pooling);

        string folder = temp.File("st-two");
        SentenceFolder("mean_tokens", normalize: true, folder: folder);
        string pooling = Path.Combine(folder, "1_Pooling", "config.json");
        File.WriteAllText(pooling, "{\"word_embedding_dimension\": 384, \"pooling_mode_cls_token\": true, \"pooling_mode_mean_tokens\": true}");
        LoadingFiles.ThrowsFormat(() => SentenceEmbeddingConfig.Read(folder), pooling, "pooling_mode");
        File.WriteAllText(pooling, "{\"word_embedding_dimension\": 384, \"pooling_mode_mean_tokens\": false}");
        LoadingFiles.ThrowsFormat(() => SentenceEmbeddingConfig.Read(folder), pooling, "pooling_mode");
        File.WriteAllText(pooling, "{\"pooling_mode_weightedmean_tokens\": true}");
        LoadingFiles.ThrowsFormat(() => SentenceEmbeddingConfig.Read(folder), pooling, "pooling_mode_weightedmean_tokens");

        string modules = Path.Combine(folder, "modules.json");
        File.WriteAllText(modules, "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},{\"idx\":1,\"name\":\"1\",\"path\":\"2_Dense\",\"type\":\"sentence_transformers.models.Dense\"}]");
        LoadingFiles.ThrowsFormat(() => SentenceEmbeddingConfig.Read(folder), modules, "[1].type");
        File.WriteAllText(modules, "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"}]");
        LoadingFiles.ThrowsFormat(() => SentenceEmbeddingConfig.Read(folder), modules, "type");
    }

    [Theory]
    [InlineData("bert", "layer_norm_eps", 3.5e38)]
    [InlineData("bert", "layer_norm_eps", 1e308)]
    [InlineData("bert", "layer_norm_eps", 1e-50)]
    [InlineData("gpt2", "layer_norm_epsilon", 3.5e38)]
    [InlineData("gpt2", "layer_norm_epsilon", 1e300)]
    public void An_epsilon_a_float_cannot_hold_is_rejected_naming_its_key(string family, string key, double value)
    {
        var json = family == "bert" ? BertJson() : Gpt2Json();
        json[key] = value;
        var e = Rejects(json, family == "bert" ? HfConfig.ReadBert : HfConfig.ReadGpt2, key);
        Assert.Equal(key, e.Field);
        AssertNamesKeysNotProperties(e);
    }

    [Fact]
    public void N_embd_whose_default_inner_width_overflows_is_rejected()
    {
        // 4·n_embd with n_inner null was computed in 32 bits: 2^29 gave a negative width.
        var json = Gpt2Json();
        json["n_embd"] = 1 << 29;
        json["n_head"] = 1;
        json["n_inner"] = null;
        var e = Rejects(json, HfConfig.ReadGpt2, "n_embd");
        Assert.Contains("n_inner", e.Message, StringComparison.Ordinal);
        AssertNamesKeysNotProperties(e);
    }

    [Theory]
    [InlineData("gpt2", "n_embd", 1 << 29, "n_inner", 8)]
    [InlineData("gpt2", "n_embd", 1 << 20, "n_inner", 8)]
    [InlineData("gpt2", "n_inner", 1 << 30, "n_embd", 64)]
    [InlineData("gpt2", "vocab_size", 1 << 30, "n_embd", 64)]
    [InlineData("gpt2", "n_positions", 1 << 30, "n_embd", 64)]
    [InlineData("bert", "hidden_size", 1 << 30, "intermediate_size", 8)]
    [InlineData("bert", "intermediate_size", int.MaxValue, "hidden_size", 64)]
    [InlineData("bert", "vocab_size", int.MaxValue, "hidden_size", 64)]
    public void Sizes_whose_weights_overflow_a_tensor_are_rejected_naming_the_key(string family, string key, int value, string other, int otherValue)
    {
        var json = family == "bert" ? BertJson() : Gpt2Json();
        json[key] = value;
        json[other] = otherValue;
        json[family == "bert" ? "num_attention_heads" : "n_head"] = 1;

        var e = Rejects(json, family == "bert" ? HfConfig.ReadBert : HfConfig.ReadGpt2, key);
        Assert.Equal(key, e.Field);
        AssertNamesKeysNotProperties(e);
    }

    [Fact]
    public void Num_labels_alone_makes_no_list()
    {
        // 100,000,000 placeholder labels used to take 43 s and 12.5 GB; 2^31 − 1 ran out of memory.
        var json = BertJson();
        json["architectures"] = new JsonArray("BertForSequenceClassification");
        json["num_labels"] = int.MaxValue;
        long before = GC.GetAllocatedBytesForCurrentThread();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var config = HfConfig.ReadBert(Write(json));
        Assert.InRange(clock.ElapsedMilliseconds, 0, 5000);
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 10_000_000);
        Assert.Equal(int.MaxValue, config.Labels.Count);
        Assert.Equal("LABEL_2147483646", config.Labels[int.MaxValue - 1]);
        Assert.Equal(["LABEL_0", "LABEL_1"], config.Labels.Take(2));
    }

    private static void AssertNamesKeysNotProperties(ModelFormatException e)
    {
        foreach (string property in new[] { "LayerNormEps", "HiddenSize", "IntermediateSize", "VocabSize", "MaxPositions", "Heads\b" })
        {
            Assert.DoesNotMatch(property, e.Message);
        }

        Assert.False(e.Message.EndsWith("..", StringComparison.Ordinal), e.Message);
    }

    private string Write(JsonObject json)
    {
        string path = temp.File($"config{Guid.NewGuid():N}.json");
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    private ModelFormatException Rejects(JsonObject json, Func<string, TransformerConfig> read, string field)
    {
        string path = Write(json);
        return LoadingFiles.ThrowsFormat(() => read(path), path, field);
    }

    private SentenceEmbeddingConfig SentenceFolder(string mode, bool normalize, string? folder = null)
    {
        folder ??= temp.File("st-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
        string normalizeModule = normalize ? ",{\"idx\":2,\"name\":\"2\",\"path\":\"2_Normalize\",\"type\":\"sentence_transformers.models.Normalize\"}" : string.Empty;
        File.WriteAllText(Path.Combine(folder, "modules.json"), "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},{\"idx\":1,\"name\":\"1\",\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"}" + normalizeModule + "]");
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), $"{{\"word_embedding_dimension\": 384, \"pooling_mode_cls_token\": false, \"pooling_mode_{mode}\": true, \"pooling_mode_mean_sqrt_len_tokens\": false}}");
        return SentenceEmbeddingConfig.Read(folder);
    }
}
