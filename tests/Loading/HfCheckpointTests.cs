using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Headlight.Models;
using Headlight.Models.Loading;

namespace Headlight.Tests.Loading;

/// <summary>Hugging Face folders: the shared GPT-2 fixture and small BERT folders written in the test.</summary>
public sealed class HfCheckpointTests : IDisposable
{
    private const int D = 8;
    private const int Inter = 12;
    private const int Vocab = 11;
    private const int Positions = 7;

    private readonly TempFolder temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Gpt2_fixture_loads_with_conv1d_layout()
    {
        string folder = LoadingFiles.SharedFixture("gpt2-tiny");
        var checkpoint = HfCheckpoint.LoadGpt2(folder);

        Assert.Equal(new Gpt2Config(32, 2, 4, 128, ActivationFunction.GeluTanh, 64, 1e-5, 512), checkpoint.Config with { Architectures = [] });
        Assert.Equal(["GPT2LMHeadModel"], checkpoint.Config.Architectures);

        // wte, wpe, ln_f (2) and 12 per layer; the U8 causal-mask buffers are skipped.
        Assert.Equal(2 + 2 + (2 * 12), checkpoint.Weights.Count);
        Assert.False(checkpoint.Weights.Contains("h.0.attn.bias") || checkpoint.Weights.Contains("h.1.attn.bias"));
        var attn = checkpoint.Weights["h.1.attn.c_attn.weight"];
        Assert.Equal((TensorLayout.InOut, 32, 96), (attn.Layout, attn.InFeatures, attn.OutFeatures));
        Assert.Equal([32, 96], attn.Shape);
        Assert.Equal(TensorLayout.None, checkpoint.Weights["wte.weight"].Layout);
        Assert.Null(checkpoint.VocabJsonPath);

        // Values read independently from the file's bytes.
        byte[] file = File.ReadAllBytes(Path.Combine(folder, "model.safetensors"));
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(file);
        using var header = JsonDocument.Parse(file.AsMemory(8, (int)headerLength));
        foreach (string name in new[] { "wte.weight", "h.0.mlp.c_proj.weight", "ln_f.bias" })
        {
            var offsets = header.RootElement.GetProperty(name).GetProperty("data_offsets");
            int begin = 8 + (int)headerLength + offsets[0].GetInt32();
            int end = 8 + (int)headerLength + offsets[1].GetInt32();
            var expected = new float[(end - begin) / 4];
            for (int i = 0; i < expected.Length; i++)
            {
                expected[i] = BinaryPrimitives.ReadSingleLittleEndian(file.AsSpan(begin + (4 * i)));
            }

            Assert.Equal(expected, checkpoint.Weights[name].Data.ToArray());
        }
    }

    [Fact]
    public void Gpt2_with_a_missing_or_misshapen_tensor_is_rejected()
    {
        string fixture = LoadingFiles.SharedFixture("gpt2-tiny");
        using var source = SafeTensorsFile.Open(Path.Combine(fixture, "model.safetensors"));

        string folder = temp.File("gpt2-missing");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(fixture, "config.json"), Path.Combine(folder, "config.json"));
        WriteFromFixture(source, Path.Combine(folder, "model.safetensors"), skip: "h.1.mlp.c_fc.bias", reshape: null);
        var e = LoadingFiles.ThrowsFormat(() => HfCheckpoint.LoadGpt2(folder), Path.Combine(folder, "model.safetensors"), "h.1.mlp.c_fc.bias");
        Assert.Contains("[128]", e.Message, StringComparison.Ordinal);

        WriteFromFixture(source, Path.Combine(folder, "model.safetensors"), skip: null, reshape: ("h.0.attn.c_proj.weight", [16, 64]));
        e = LoadingFiles.ThrowsFormat(() => HfCheckpoint.LoadGpt2(folder), Path.Combine(folder, "model.safetensors"), "h.0.attn.c_proj.weight");
        Assert.Contains("[32, 32]", e.Message, StringComparison.Ordinal);
        Assert.Contains("[16, 64]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bert_folder_with_prefix_classifier_and_half_precision_loads()
    {
        string folder = BertFolder("classifier", classifier: true, f16: true);
        var checkpoint = HfCheckpoint.LoadBert(folder);
        Assert.Equal((D, 2, 2, Inter, Vocab), (checkpoint.Config.HiddenSize, checkpoint.Config.Layers, checkpoint.Config.Heads, checkpoint.Config.IntermediateSize, checkpoint.Config.VocabSize));
        Assert.True(checkpoint.Config.IsSequenceClassifier);
        Assert.NotNull(checkpoint.VocabPath);
        Assert.Null(checkpoint.SentenceEmbedding);

        var up = checkpoint.Weights["encoder.layer.1.intermediate.dense.weight"];
        Assert.Equal((TensorLayout.OutIn, Inter, D), (up.Layout, up.OutFeatures, up.InFeatures));
        Assert.Equal("bert.encoder.layer.1.intermediate.dense.weight", up.Source);
        Assert.Equal([Inter, D], up.Shape);
        Assert.Equal(TensorLayout.OutIn, checkpoint.Weights["classifier.weight"].Layout);
        Assert.False(checkpoint.Weights.Contains("embeddings.position_ids"));

        // Every F16 value in the file was written from (float)(Half)x.
        float[] written = Values("bert.encoder.layer.1.intermediate.dense.weight", Inter * D).Select(v => (float)(Half)v).ToArray();
        Assert.Equal(written, up.Data.ToArray());
    }

    [Fact]
    public void Bert_shape_mismatch_names_tensor_expected_and_found()
    {
        string folder = BertFolder("mismatch", classifier: false, f16: false, reshape: ("bert.encoder.layer.0.attention.self.key.weight", [D, D - 1]));
        var e = LoadingFiles.ThrowsFormat(() => HfCheckpoint.LoadBert(folder), Path.Combine(folder, "model.safetensors"), "encoder.layer.0.attention.self.key.weight");
        Assert.Contains($"[{D}, {D}]", e.Message, StringComparison.Ordinal);
        Assert.Contains($"[{D}, {D - 1}]", e.Message, StringComparison.Ordinal);

        string missing = BertFolder("missing", classifier: true, f16: false, skip: "classifier.bias");
        LoadingFiles.ThrowsFormat(() => HfCheckpoint.LoadBert(missing), Path.Combine(missing, "model.safetensors"), "classifier.bias");

        string extraLayer = BertFolder("extra", classifier: false, f16: false, layers: 3, configLayers: 2);
        LoadingFiles.ThrowsFormat(() => HfCheckpoint.LoadBert(extraLayer), Path.Combine(extraLayer, "model.safetensors"), "encoder.layer.2");

        string noWeights = temp.File("no-weights");
        Directory.CreateDirectory(noWeights);
        File.WriteAllText(Path.Combine(noWeights, "config.json"), BertConfigJson(2, classifier: false).ToJsonString());
        Assert.Throws<FileNotFoundException>(() => HfCheckpoint.LoadBert(noWeights));
    }

    [Fact]
    public void Bert_sentence_transformers_folder_reports_pooling()
    {
        string folder = BertFolder("st", classifier: false, f16: false);
        File.WriteAllText(Path.Combine(folder, "modules.json"), "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},{\"idx\":1,\"name\":\"1\",\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"},{\"idx\":2,\"name\":\"2\",\"path\":\"2_Normalize\",\"type\":\"sentence_transformers.models.Normalize\"}]");
        Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), "{\"word_embedding_dimension\": 8, \"pooling_mode_mean_tokens\": true}");
        Assert.Equal(new SentenceEmbeddingConfig(PoolingMode.Mean, true, D), HfCheckpoint.LoadBert(folder).SentenceEmbedding);

        File.WriteAllText(Path.Combine(folder, "vocab.txt"), string.Join('\n', Enumerable.Range(0, Vocab + 1).Select(i => $"t{i}")));
        LoadingFiles.ThrowsFormat(() => HfCheckpoint.LoadBert(folder), Path.Combine(folder, "vocab.txt"), "lines");
    }

    [Theory]
    [InlineData(100_000_000)]
    [InlineData(int.MaxValue)]
    [InlineData(3)]
    public void Num_labels_other_than_the_classifiers_rows_fail_before_reading_weights(int labels)
    {
        string folder = BertFolder("labels" + labels, classifier: true, f16: false);
        string config = Path.Combine(folder, "config.json");
        var json = JsonNode.Parse(File.ReadAllText(config))!.AsObject();
        json["num_labels"] = labels;
        File.WriteAllText(config, json.ToJsonString());
        var clock = System.Diagnostics.Stopwatch.StartNew();
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = LoadingFiles.ThrowsFormat(() => HfCheckpoint.LoadBert(folder), config, "num_labels");
        Assert.InRange(clock.ElapsedMilliseconds, 0, 5000);
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 20_000_000);
        Assert.Contains("classifier.weight", e.Message, StringComparison.Ordinal);
        Assert.Contains($"{labels}", e.Found, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false, float.NaN, 5)]
    [InlineData(false, float.PositiveInfinity, 0)]
    [InlineData(true, float.NegativeInfinity, 95)]
    public void A_weight_holding_nan_or_infinity_is_rejected_naming_tensor_and_index(bool f16, float bad, int index)
    {
        string folder = BertFolder("nonfinite" + index, classifier: false, f16);
        string path = Path.Combine(folder, "model.safetensors");
        const string Tensor = "bert.encoder.layer.1.output.dense.weight";
        var entries = new List<(string, string, long[], byte[])>();
        using (var source = SafeTensorsFile.Open(path))
        {
            foreach (string name in source.Names)
            {
                var info = source.Tensors[name];
                byte[] bytes = source.RawBytes(name).ToArray();
                if (name == Tensor)
                {
                    if (f16)
                    {
                        BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(2 * index), (Half)bad);
                    }
                    else
                    {
                        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * index), bad);
                    }
                }

                entries.Add((name, info.DType.ToString(), info.Shape.ToArray(), bytes));
            }
        }

        File.WriteAllBytes(path, LoadingFiles.SafeTensors(entries));
        var e = LoadingFiles.ThrowsFormat(() => HfCheckpoint.LoadBert(folder), path, Tensor);
        Assert.Contains($"flat index {index}", e.Found, StringComparison.Ordinal);
        Assert.Contains("HEADLIGHT_ALLOW_NONFINITE_WEIGHTS", e.Message, StringComparison.Ordinal);

        // The opt-out (ModelLoadOptions.AllowNonFiniteWeights, scoped to one load) loads it as it is;
        // the process-wide environment variable is not set here, since tests run in parallel.
        using (NonFiniteWeights.Allow(true))
        {
            var loaded = HfCheckpoint.LoadBert(folder);
            Assert.False(float.IsFinite(loaded.Weights["encoder.layer.1.output.dense.weight"].Data.Span[index]));
        }

        LoadingFiles.ThrowsFormat(() => HfCheckpoint.LoadBert(folder), path, Tensor);
    }

    [Fact]
    public void First_non_finite_is_found_at_every_position_and_costs_little()
    {
        var values = new float[300];
        Assert.Equal(-1, NonFiniteWeights.FirstNonFinite(values));
        Assert.Equal(-1, NonFiniteWeights.FirstNonFinite([float.MaxValue, float.MinValue, float.Epsilon, -0f]));
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = i % 3 == 0 ? float.NaN : i % 3 == 1 ? float.PositiveInfinity : float.NegativeInfinity;
            values[Math.Min(i + 7, values.Length - 1)] = float.NaN;
            Assert.Equal(i, NonFiniteWeights.FirstNonFinite(values));
            Array.Clear(values);
        }

        // MiniLM's 22.7 M parameters: the check must stay a small part of loading.
        var large = new float[22_700_000];
        NonFiniteWeights.FirstNonFinite(large);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal(-1, NonFiniteWeights.FirstNonFinite(large));
        Assert.InRange(clock.ElapsedMilliseconds, 0, 1000);
    }

    private static float[] Values(string name, int count) => TestData.Uniform(name.Aggregate(17, (h, c) => unchecked((h * 31) + c)) & 0xFFFF, count);

    private static JsonObject BertConfigJson(int layers, bool classifier)
    {
        var json = HfConfigTests.BertJson();
        json["architectures"] = new JsonArray(classifier ? "BertForSequenceClassification" : "BertModel");
        json["hidden_size"] = D;
        json["num_hidden_layers"] = layers;
        json["num_attention_heads"] = 2;
        json["intermediate_size"] = Inter;
        json["max_position_embeddings"] = Positions;
        json["vocab_size"] = Vocab;
        return json;
    }

    /// <summary>A BERT folder with HF names under the <c>bert.</c> prefix, [out, in] linear weights and an int64 position_ids buffer.</summary>
    private string BertFolder(string name, bool classifier, bool f16, (string Name, long[] Shape)? reshape = null, string? skip = null, int layers = 2, int? configLayers = null)
    {
        var tensors = new List<(string, long[])>
        {
            ("bert.embeddings.word_embeddings.weight", [Vocab, D]),
            ("bert.embeddings.position_embeddings.weight", [Positions, D]),
            ("bert.embeddings.token_type_embeddings.weight", [2, D]),
            ("bert.embeddings.LayerNorm.weight", [D]),
            ("bert.embeddings.LayerNorm.bias", [D]),
        };

        for (int i = 0; i < layers; i++)
        {
            string p = $"bert.encoder.layer.{i}.";
            foreach (string linear in new[] { "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense" })
            {
                int outF = linear == "intermediate.dense" ? Inter : D;
                int inF = linear == "output.dense" ? Inter : D;
                tensors.Add(($"{p}{linear}.weight", [outF, inF]));
                tensors.Add(($"{p}{linear}.bias", [outF]));
            }

            foreach (string norm in new[] { "attention.output.LayerNorm", "output.LayerNorm" })
            {
                tensors.Add(($"{p}{norm}.weight", [D]));
                tensors.Add(($"{p}{norm}.bias", [D]));
            }
        }

        tensors.Add(("bert.pooler.dense.weight", [D, D]));
        tensors.Add(("bert.pooler.dense.bias", [D]));
        if (classifier)
        {
            tensors.Add(("classifier.weight", [2, D]));
            tensors.Add(("classifier.bias", [2]));
        }

        var entries = new List<(string, string, long[], byte[])>();
        foreach (var (tensor, shape) in tensors)
        {
            if (tensor == skip)
            {
                continue;
            }

            long[] actual = reshape is { } r && r.Name == tensor ? r.Shape : shape;
            int count = (int)actual.Aggregate(1L, (a, b) => a * b);
            float[] values = Values(tensor, count);
            entries.Add(f16
                ? (tensor, "F16", actual, values.SelectMany(v => BitConverter.GetBytes((Half)v)).ToArray())
                : (tensor, "F32", actual, LoadingFiles.F32(values)));
        }

        entries.Add(("bert.embeddings.position_ids", "I64", [1, Positions], new byte[8 * Positions]));

        string folder = temp.File(name);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), BertConfigJson(configLayers ?? layers, classifier).ToJsonString());
        File.WriteAllBytes(Path.Combine(folder, "model.safetensors"), LoadingFiles.SafeTensors(entries));
        File.WriteAllText(Path.Combine(folder, "vocab.txt"), string.Join('\n', Enumerable.Range(0, Vocab).Select(i => $"t{i}")) + "\n", Encoding.UTF8);
        return folder;
    }

    private static void WriteFromFixture(SafeTensorsFile source, string target, string? skip, (string Name, long[] Shape)? reshape)
    {
        var entries = new List<(string, string, long[], byte[])>();
        foreach (string name in source.Names)
        {
            if (name == skip)
            {
                continue;
            }

            var info = source.Tensors[name];
            long[] shape = reshape is { } r && r.Name == name ? r.Shape : info.Shape.ToArray();
            entries.Add((name, info.DType == SafeTensorsDType.U8 ? "U8" : "F32", shape, source.RawBytes(name).ToArray()));
        }

        File.WriteAllBytes(target, LoadingFiles.SafeTensors(entries));
    }
}
