using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using Headlight.Models;
using Headlight.Models.Loading;
using Xunit.Abstractions;
using static Headlight.Tests.Loading.TorchBinWriter;

namespace Headlight.Tests.Loading;

/// <summary>
/// Weight files as the Hub ships them, in folders the tests write: sharded safetensors behind
/// <c>model.safetensors.index.json</c>, <c>pytorch_model.bin</c> archives (read without executing the pickle),
/// untied GPT-2 heads, and config.json keys that must be honoured, known inert, or refused.
/// </summary>
public sealed class HfWeightFilesTests : IDisposable
{
    private readonly TempFolder temp = new();

    public void Dispose() => temp.Dispose();

    // ---- sharded safetensors ----

    [Fact]
    public void Sharded_safetensors_load_like_the_single_file()
    {
        string fixture = LoadingFiles.SharedFixture("gpt2-tiny");
        var expected = HfCheckpoint.LoadGpt2(fixture).Weights;
        string folder = ShardedGpt2("sharded", shards: 3);

        var loaded = HfCheckpoint.LoadGpt2(folder);
        Assert.Equal(Path.Combine(folder, "model.safetensors.index.json"), loaded.Weights.SourcePath);
        Assert.Equal(expected.Names.Order(StringComparer.Ordinal), loaded.Weights.Names.Order(StringComparer.Ordinal));
        foreach (string name in expected.Names)
        {
            Assert.Equal(expected[name].Data.ToArray(), loaded.Weights[name].Data.ToArray());
            Assert.Equal(expected[name].Layout, loaded.Weights[name].Layout);
        }
    }

    [Fact]
    public void Sharded_safetensors_keep_half_precision_shards_working()
    {
        string fixture = LoadingFiles.SharedFixture("gpt2-tiny");
        var expected = HfCheckpoint.LoadGpt2(fixture).Weights;
        string folder = ShardedGpt2("sharded-half", shards: 2, dtype: n => n.StartsWith("h.1.", StringComparison.Ordinal) ? "BF16" : n.StartsWith("h.0.", StringComparison.Ordinal) ? "F16" : "F32");
        var loaded = HfCheckpoint.LoadGpt2(folder).Weights;
        foreach (string name in expected.Names)
        {
            float[] want = expected[name].Data.ToArray();
            if (name.StartsWith("h.1.", StringComparison.Ordinal))
            {
                want = want.Select(v => BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(v) & unchecked((int)0xFFFF0000))).ToArray();
            }
            else if (name.StartsWith("h.0.", StringComparison.Ordinal))
            {
                want = want.Select(v => (float)(Half)v).ToArray();
            }

            Assert.Equal(want, loaded[name].Data.ToArray());
        }
    }

    [Fact]
    public void Sharded_index_problems_are_typed_errors_naming_the_index_and_tensor()
    {
        string Broken(string name, Action<JsonObject, string> edit)
        {
            string folder = ShardedGpt2(name, shards: 2);
            string index = Path.Combine(folder, "model.safetensors.index.json");
            var json = JsonNode.Parse(File.ReadAllText(index))!.AsObject();
            edit(json["weight_map"]!.AsObject(), folder);
            File.WriteAllText(index, json.ToJsonString());
            return folder;
        }

        void Fails(string folder, string field, string text)
        {
            var e = LoadingFiles.ThrowsFormat(() => HfCheckpoint.LoadGpt2(folder), Path.Combine(folder, "model.safetensors.index.json"), field);
            Assert.Contains(text, e.Message, StringComparison.Ordinal);
        }

        // An index naming a shard that is not there.
        Fails(Broken("missing-shard", (m, _) => m["transformer.ln_f.bias"] = "model-00003-of-00003.safetensors"), "weight_map.transformer.ln_f.bias", "no such file");

        // A tensor in two shards: the second shard also holds wte.weight.
        string twice = ShardedGpt2("twice", shards: 2, extra: (1, "wte.weight"));
        Fails(twice, "weight_map.transformer.wte.weight", "also in 'model-00002-of-00002.safetensors'");

        // A tensor the index lists that its shard lacks.
        Fails(Broken("listed-absent", (m, _) => m["h.9.ln_1.weight"] = "model-00001-of-00002.safetensors"), "weight_map.h.9.ln_1.weight", "a shard without it");

        // A tensor in a shard that the index does not name: refused, the index is stale or hand-edited.
        Fails(Broken("unlisted", (m, _) => m.Remove("transformer.ln_f.weight")), "weight_map.transformer.ln_f.weight", "no entry");

        // Shard names must be plain file names inside the folder.
        foreach (string bad in new[] { "../model-00001-of-00002.safetensors", "/etc/passwd", "sub/model.safetensors", "..", "a\\b.safetensors" })
        {
            Fails(Broken($"path-{Guid.NewGuid():N}", (m, _) => m["transformer.wpe.weight"] = bad), "weight_map.transformer.wpe.weight", "plain file name");
        }

        Fails(Broken("not-a-string", (m, _) => m["transformer.wpe.weight"] = 3), "weight_map.transformer.wpe.weight", "shard file name");
    }

    [Fact]
    public void Folder_without_weights_lists_what_was_looked_for()
    {
        string folder = temp.File("empty");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(LoadingFiles.SharedFixture("gpt2-tiny"), "config.json"), Path.Combine(folder, "config.json"));
        var e = Assert.Throws<FileNotFoundException>(() => HfCheckpoint.LoadGpt2(folder));
        foreach (string name in CheckpointTensors.Candidates)
        {
            Assert.Contains(name, e.Message, StringComparison.Ordinal);
        }

        Assert.Contains(folder, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Sharded_pytorch_bin_loads_through_its_index()
    {
        string fixture = LoadingFiles.SharedFixture("gpt2-tiny");
        var expected = HfCheckpoint.LoadGpt2(fixture).Weights;
        using var source = SafeTensorsFile.Open(Path.Combine(fixture, "model.safetensors"));
        string folder = temp.File("bin-sharded");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(fixture, "config.json"), Path.Combine(folder, "config.json"));
        var map = new JsonObject();
        var names = source.Names.ToList();
        for (int s = 0; s < 2; s++)
        {
            string file = $"pytorch_model-{s + 1:D5}-of-00002.bin";
            var storages = new Dictionary<string, Storage>();
            var tensors = new List<Tensor>();
            foreach (string tensor in names.Where((_, i) => i % 2 == s))
            {
                var info = source.Tensors[tensor];
                string key = $"{storages.Count}";
                storages[key] = new(key, info.DType == SafeTensorsDType.U8 ? "ByteStorage" : "FloatStorage", info.ElementCount, source.RawBytes(tensor).ToArray());
                tensors.Add(new(tensor, key, 0, info.Shape.ToArray()));
                map[tensor] = file;
            }

            File.WriteAllBytes(Path.Combine(folder, file), Archive("archive", Pickle(tensors, storages), storages.Values));
        }

        File.WriteAllText(Path.Combine(folder, "pytorch_model.bin.index.json"), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());
        var loaded = HfCheckpoint.LoadGpt2(folder).Weights;
        Assert.Equal(Path.Combine(folder, "pytorch_model.bin.index.json"), loaded.SourcePath);
        foreach (string name in expected.Names)
        {
            Assert.Equal(expected[name].Data.ToArray(), loaded[name].Data.ToArray());
        }
    }

    // ---- pytorch_model.bin ----

    [Fact]
    public void Pytorch_bin_loads_like_the_safetensors_fixture()
    {
        string fixture = LoadingFiles.SharedFixture("gpt2-tiny");
        var expected = HfCheckpoint.LoadGpt2(fixture).Weights;
        string folder = BinGpt2("bin");

        var loaded = HfCheckpoint.LoadGpt2(folder).Weights;
        Assert.Equal(Path.Combine(folder, "pytorch_model.bin"), loaded.SourcePath);
        Assert.Equal(expected.Names.Order(StringComparer.Ordinal), loaded.Names.Order(StringComparer.Ordinal));
        foreach (string name in expected.Names)
        {
            float[] want = expected[name].Data.ToArray();
            if (name == "ln_f.weight")
            {
                want = want.Select(v => (float)(Half)v).ToArray();
            }

            Assert.Equal(want, loaded[name].Data.ToArray());
            Assert.Equal(expected[name].Layout, loaded[name].Layout);
        }

        // The same model as safetensors and as .bin gives the same logits.
        using var a = Headlight.Models.Model.Load(fixture, Backends.Require("cpu"));
        using var b = Headlight.Models.Model.Load(BinGpt2("bin-exact", halfNorm: false), Backends.Require("cpu"));
        int[] ids = [3, 100, 7, 42];
        Assert.Equal(a.Forward(a.FromIds([ids])).Logits!, b.Forward(b.FromIds([ids])).Logits!);
    }

    [Fact]
    public void Bert_pytorch_bin_with_prefix_gamma_beta_buffers_and_mlm_head_loads()
    {
        string reference = TinyBertFolder("bert-st");
        using var source = SafeTensorsFile.Open(Path.Combine(reference, "model.safetensors"));
        var storages = new Dictionary<string, Storage>();
        var tensors = new List<Tensor>();
        void Add(string name, string type, long[] shape, byte[] bytes)
        {
            string key = $"{storages.Count}";
            long numel = shape.Aggregate(1L, (a, b) => a * b);
            storages[key] = new(key, type, numel, bytes);
            tensors.Add(new(name, key, 0, shape));
        }

        foreach (string name in source.Names)
        {
            // As bert-base-uncased's .bin: a bert. prefix and TensorFlow's gamma / beta LayerNorm names.
            string stored = "bert." + name.Replace("LayerNorm.weight", "LayerNorm.gamma", StringComparison.Ordinal).Replace("LayerNorm.bias", "LayerNorm.beta", StringComparison.Ordinal);
            Add(stored, "FloatStorage", source.Tensors[name].Shape.ToArray(), source.RawBytes(name).ToArray());
        }

        Add("bert.embeddings.position_ids", "LongStorage", [1, 16], Enumerable.Range(0, 16).SelectMany(i => BitConverter.GetBytes((long)i)).ToArray());
        Add("cls.predictions.bias", "FloatStorage", [20], LoadingFiles.F32(new float[20]));

        string folder = temp.File("bert-bin");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(reference, "config.json"), Path.Combine(folder, "config.json"));
        File.WriteAllBytes(Path.Combine(folder, "pytorch_model.bin"), Archive("archive", Pickle(tensors, storages), storages.Values));

        var loaded = HfCheckpoint.LoadBert(folder).Weights;
        Assert.Equal(source.ReadFloat32("embeddings.LayerNorm.weight"), loaded["embeddings.LayerNorm.weight"].Data.ToArray());
        Assert.False(loaded.Contains("embeddings.position_ids"));

        using var a = Headlight.Models.Model.Load(reference, Backends.Require("cpu"));
        using var b = Headlight.Models.Model.Load(folder, Backends.Require("cpu"));
        int[] ids = [1, 7, 3, 19, 2];
        Assert.Equal(a.Forward(a.FromIds([ids])).LastHiddenState, b.Forward(b.FromIds([ids])).LastHiddenState);
    }

    [Fact]
    public void Hostile_pytorch_bin_files_are_refused_without_executing_anything()
    {
        var storages = new Dictionary<string, Storage> { ["0"] = new("0", "FloatStorage", 4, LoadingFiles.F32(1, 2, 3, 4)) };
        byte[] good = Pickle([new Tensor("w", "0", 0, [2, 2])], storages);

        string Write(string name, byte[] bytes)
        {
            string folder = temp.File(name);
            Directory.CreateDirectory(folder);
            File.Copy(Path.Combine(LoadingFiles.SharedFixture("gpt2-tiny"), "config.json"), Path.Combine(folder, "config.json"));
            File.WriteAllBytes(Path.Combine(folder, "pytorch_model.bin"), bytes);
            return Path.Combine(folder, "pytorch_model.bin");
        }

        ModelFormatException Refused(string name, byte[] bytes, string field, string? text = null)
        {
            string path = Write(name, bytes);
            var e = Assert.Throws<ModelFormatException>(() => TorchArchive.Open(path).Dispose());
            Assert.StartsWith(path, e.FilePath, StringComparison.Ordinal);
            Assert.Contains(field, e.Field, StringComparison.Ordinal);
            Assert.Contains(path, e.Message, StringComparison.Ordinal);
            if (text is not null)
            {
                Assert.Contains(text, e.Message, StringComparison.Ordinal);
            }

            // Through the folder loader too.
            Assert.Throws<ModelFormatException>(() => HfCheckpoint.LoadGpt2(Path.GetDirectoryName(path)!));
            return e;
        }

        // The archive itself is fine.
        using (var ok = TorchArchive.Open(Write("good", Archive("archive", good, storages.Values))))
        {
            Assert.Equal([1f, 2, 3, 4], ok.ReadFloat32("w"));
        }

        // Zip64 records, as torch writes past 4 GiB, read the same.
        using (var ok64 = TorchArchive.Open(Write("zip64", Archive("archive", good, storages.Values, zip64: true))))
        {
            Assert.Equal([1f, 2, 3, 4], ok64.ReadFloat32("w"));
        }

        // The classic payload: GLOBAL os system, REDUCE with a command.
        var evil = new PickleBuilder().Op(0x80).Op(2).Global("os", "system").Op('(').Unicode("touch /tmp/pwned").Op('t').Op('R').Op('.').ToArray();
        Refused("os-system", Archive("archive", evil, storages.Values), "GLOBAL os.system");

        // builtins.eval, and a name outside the rebuild set inside torch.
        Refused("eval", Archive("archive", new PickleBuilder().Op(0x80).Op(2).Global("builtins", "eval").Op('.').ToArray(), storages.Values), "GLOBAL builtins.eval");
        Refused("torch-load", Archive("archive", new PickleBuilder().Op(0x80).Op(2).Global("torch", "load").Op('.').ToArray(), storages.Values), "GLOBAL torch.load");

        // REDUCE on an allowed global that is not a rebuild function.
        var reduceStorage = new PickleBuilder().Op(0x80).Op(2).Global("torch", "FloatStorage").Op(')').Op('R').Op('.').ToArray();
        Refused("reduce-storage", Archive("archive", reduceStorage, storages.Values), "REDUCE torch.FloatStorage");

        // REDUCE on a string (not a callable at all).
        var reduceString = new PickleBuilder().Op(0x80).Op(2).Unicode("os.system").Op(')').Op('R').Op('.').ToArray();
        Refused("reduce-string", Archive("archive", reduceString, storages.Values), "REDUCE 'os.system'");

        // Opcodes outside the state-dict subset: INST and STACK_GLOBAL import by other routes.
        Refused("inst", Archive("archive", Encoding.Latin1.GetBytes("\u0080\u0002ios\nsystem\n."), storages.Values), "opcode 0x69 'i'");
        Refused("stack-global", Archive("archive", new PickleBuilder().Op(0x80).Op(4).Unicode("os").Unicode("system").Op(0x93).Op('.').ToArray(), storages.Values), "opcode 0x93");

        // Truncated: the pickle stops mid-tensor, or a string claims more bytes than there are.
        Refused("truncated", Archive("archive", good[..(good.Length / 2)], storages.Values), "byte ", "truncated");
        var longString = new PickleBuilder().Op(0x80).Op(2).Op('X').Raw([0xff, 0xff, 0xff, 0x7f]).ToArray();
        Refused("long-string", Archive("archive", longString, storages.Values), "byte 2", "truncated");

        // A view past the end of its storage: offset 2 + 4 elements in a storage of 4.
        byte[] beyond = Pickle([new Tensor("w", "0", 2, [2, 2])], storages);
        Refused("offset-beyond", Archive("archive", beyond, storages.Values), "_rebuild_tensor_v2", "inside storage '0' of 4");

        // A storage whose entry holds fewer bytes than the persistent id declares.
        var shortStorage = new Dictionary<string, Storage> { ["0"] = new("0", "FloatStorage", 4, LoadingFiles.F32(1, 2, 3)) };
        Refused("short-storage", Archive("archive", good, shortStorage.Values), "archive/data/0", "16 bytes");

        // A storage key the archive lacks, and a key that tries to leave the folder.
        Refused("no-storage", Archive("archive", good, []), "archive/data/0", "no such entry");
        var escaping = new Dictionary<string, Storage> { ["../x"] = new("../x", "FloatStorage", 4, LoadingFiles.F32(1, 2, 3, 4)) };
        Refused("escaping-key", Archive("archive", Pickle([new Tensor("w", "../x", 0, [2, 2])], escaping), storages.Values), "archive/data/../x", "no such entry");

        // Many views of one storage: each fits, together they declare far more than the file holds.
        var large = new Dictionary<string, Storage> { ["0"] = new("0", "FloatStorage", 1024, new byte[4096]) };
        byte[] views = Pickle(Enumerable.Range(0, 64).Select(i => new Tensor($"w{i}", "0", 0, [32, 32])), large);
        Refused("many-views", Archive("archive", views, large.Values), "(state dict)", "at most twice");

        // Non-contiguous strides (a transposed view) are refused rather than read wrongly.
        Refused("strided", Archive("archive", Pickle([new Tensor("w", "0", 0, [2, 2], Stride: [1, 2])], storages), storages.Values), "_rebuild_tensor_v2", "contiguous");

        // Compressed entries (deflate, method 8) are not inflated; a file that is no zip at all.
        Refused("deflated", Archive("archive", good, storages.Values, method: 8), "archive/data.pkl", "stored (uncompressed)");
        // The legacy (before PyTorch 1.6) format: pickles back to back, starting with a magic number.
        byte[] legacy = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, (byte)'.', .. new byte[64]];
        Refused("legacy", legacy, "end of central directory", "PyTorch >= 1.6");

        // A pickle that is not a dict of tensors.
        Refused("a-list", Archive("archive", new PickleBuilder().Op(0x80).Op(2).Op(']').Op('.').ToArray(), storages.Values), "pickle result", "a list");

        // Two pickles at the top of the archive.
        byte[] two = Zip([("a/data.pkl", good), ("b/data.pkl", good), ("a/data/0", storages["0"].Bytes)]);
        Refused("two-pickles", two, "data.pkl", "a/data.pkl, b/data.pkl");

        // A central directory claiming an entry far larger than the file: checked before reading.
        byte[] huge = Archive("archive", good, storages.Values);
        int central = huge.Length - 22 - (int)BinaryPrimitives.ReadUInt32LittleEndian(huge.AsSpan(huge.Length - 10));
        BinaryPrimitives.WriteUInt32LittleEndian(huge.AsSpan(central + 20), 0x7fffffff);
        BinaryPrimitives.WriteUInt32LittleEndian(huge.AsSpan(central + 24), 0x7fffffff);
        Refused("huge-entry", huge, "archive/data.pkl", "before the central directory");
    }

    // ---- the untied GPT-2 head ----

    [Fact]
    public void Untied_gpt2_head_is_used_and_a_tied_copy_is_ignored()
    {
        string fixture = LoadingFiles.SharedFixture("gpt2-tiny");
        using var source = SafeTensorsFile.Open(Path.Combine(fixture, "model.safetensors"));
        int v = 512, d = 32;

        // lm_head[k] = wte[(k + 1) % v]: untied logits at k are the tied model's logits at k + 1.
        float[] wte = source.ReadFloat32("wte.weight");
        float[] head = new float[v * d];
        for (int k = 0; k < v; k++)
        {
            wte.AsSpan(((k + 1) % v) * d, d).CopyTo(head.AsSpan(k * d, d));
        }

        string untied = Gpt2WithHead("untied", source, head, tie: false);
        string tiedWithCopy = Gpt2WithHead("tied-copy", source, head, tie: true);
        string untiedWithout = Gpt2WithHead("untied-without", source, null, tie: false);

        int[] ids = [5, 17, 300, 2];
        using var plain = Headlight.Models.Model.Load(fixture, Backends.Require("cpu"));
        using var withHead = Headlight.Models.Model.Load(untied, Backends.Require("cpu"));
        using var ignored = Headlight.Models.Model.Load(tiedWithCopy, Backends.Require("cpu"));
        float[] tiedLogits = plain.Forward(plain.FromIds([ids])).Logits!;
        float[] untiedLogits = withHead.Forward(withHead.FromIds([ids])).Logits!;
        for (int p = 0; p < ids.Length; p++)
        {
            for (int k = 0; k < v; k++)
            {
                Assert.Equal(tiedLogits[(p * v) + ((k + 1) % v)], untiedLogits[(p * v) + k], 5);
            }
        }

        Assert.NotEqual(tiedLogits, untiedLogits);
        Assert.Equal(head, withHead.OutputEmbeddings.ToArray());
        Assert.True(withHead.Config.HasUntiedHead);
        Assert.Equal(plain.Config.ParameterCount + (v * d), withHead.Config.ParameterCount);

        // Explanations read the same head: the explained next-token logit is the untied model's.
        var explained = Headlight.Explain.Explainer.Explain(withHead, withHead.FromIds([ids]), new Headlight.Explain.NextTokenLogitTarget(9, 2), new Headlight.Explain.SaliencyOptions());
        Assert.Equal(untiedLogits[(2 * v) + 9], explained.Rows[0].TargetValue, 4);
        Assert.NotEqual(tiedLogits[(2 * v) + 9], explained.Rows[0].TargetValue, 4);
        Assert.Equal(wte, withHead.WordEmbeddings.ToArray());

        // tie_word_embeddings true: a stored lm_head.weight is what transformers overwrites with wte.
        Assert.Equal(tiedLogits, ignored.Forward(ignored.FromIds([ids])).Logits!);
        Assert.Equal(wte, ignored.OutputEmbeddings.ToArray());

        var e = LoadingFiles.ThrowsFormat(() => HfCheckpoint.LoadGpt2(untiedWithout), Path.Combine(untiedWithout, "model.safetensors"), "lm_head.weight");
        Assert.Contains("tie_word_embeddings", e.Message, StringComparison.Ordinal);
    }

    // ---- config.json keys ----

    /// <summary>Key → behaviour; each row is a folder with that key added to a valid config.</summary>
    public static TheoryData<string, string, string, string> KeyRows() => new()
    {
        // family, key, JSON value, outcome: "ok" (honoured or inert), "ignored" (unknown, reported) or "refused"
        { "bert", "position_embedding_type", "\"absolute\"", "ok" },
        { "bert", "position_embedding_type", "\"relative_key\"", "refused" },
        { "bert", "position_embedding_type", "\"relative_key_query\"", "refused" },
        { "bert", "is_decoder", "true", "refused" },
        { "bert", "add_cross_attention", "true", "refused" },
        { "bert", "pruned_heads", "{\"0\": [1]}", "refused" },
        { "bert", "pruned_heads", "{}", "ok" },
        { "bert", "quantization_config", "{\"load_in_8bit\": true}", "refused" },
        { "bert", "hidden_dropout_prob", "0.1", "ok" },
        { "bert", "attention_probs_dropout_prob", "0.1", "ok" },
        { "bert", "_name_or_path", "\"bert-base-uncased\"", "ok" },
        { "bert", "transformers_version", "\"4.44.0\"", "ok" },
        { "bert", "torch_dtype", "\"float16\"", "ok" },
        { "bert", "gradient_checkpointing", "false", "ok" },
        { "bert", "use_cache", "true", "ok" },
        { "bert", "pad_token_id", "0", "ok" },
        { "bert", "classifier_dropout", "null", "ok" },
        { "bert", "tie_word_embeddings", "false", "ok" },
        { "bert", "some_future_option", "7", "ignored" },
        { "gpt2", "tie_word_embeddings", "true", "ok" },
        { "gpt2", "n_ctx", "64", "ok" },
        { "gpt2", "summary_type", "\"cls_index\"", "ok" },
        { "gpt2", "reorder_and_upcast_attn", "true", "ok" },
        { "gpt2", "scale_attn_weights", "true", "ok" },
        { "gpt2", "scale_attn_weights", "false", "refused" },
        { "gpt2", "scale_attn_by_inverse_layer_idx", "true", "refused" },
        { "gpt2", "add_cross_attention", "true", "refused" },
        { "gpt2", "task_specific_params", "{\"text-generation\": {\"do_sample\": true}}", "ok" },
        { "gpt2", "rotary_dim", "16", "ignored" },
    };

    [Theory]
    [MemberData(nameof(KeyRows))]
    public void Config_keys_are_honoured_inert_reported_or_refused(string family, string key, string json, string outcome)
    {
        string folder = family == "bert" ? TinyBertFolder($"{key}-{Guid.NewGuid():N}") : CopyFixture($"{key}-{Guid.NewGuid():N}");
        string configPath = Path.Combine(folder, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        config[key] = JsonNode.Parse(json);
        File.WriteAllText(configPath, config.ToJsonString());

        if (outcome == "refused")
        {
            var e = LoadingFiles.ThrowsFormat(() => Headlight.Models.Model.Load(folder, Backends.Require("cpu")).Dispose(), configPath, key);
            Assert.Equal(key, e.Field);
            Assert.Contains(JsonNode.Parse(json)!.ToJsonString(), e.Message.Replace(" ", string.Empty, StringComparison.Ordinal), StringComparison.Ordinal);
            return;
        }

        using var model = Headlight.Models.Model.Load(folder, Backends.Require("cpu"));
        Assert.Equal(outcome == "ignored" ? [key] : [], model.Config.IgnoredConfigKeys);
    }

    [Fact]
    public void Every_family_key_table_row_is_classified_once()
    {
        foreach (var (family, rows) in HfConfigKeys.Families)
        {
            var keys = rows.Select(r => r.Key).Concat(HfConfigKeys.Common.Select(r => r.Key)).ToList();
            Assert.True(keys.Count == keys.Distinct(StringComparer.Ordinal).Count(), $"{family}: a key appears twice: {string.Join(", ", keys.GroupBy(k => k).Where(g => g.Count() > 1).Select(g => g.Key))}");
            Assert.All(rows.Concat(HfConfigKeys.Common).Where(r => r.Use == ConfigKeyUse.Checked), r => Assert.NotNull(r.Accepts));
        }
    }

    // ---- folders ----

    private string CopyFixture(string name)
    {
        string fixture = LoadingFiles.SharedFixture("gpt2-tiny");
        string folder = temp.File(name);
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(fixture, "config.json"), Path.Combine(folder, "config.json"));
        File.Copy(Path.Combine(fixture, "model.safetensors"), Path.Combine(folder, "model.safetensors"));
        return folder;
    }

    /// <summary>The gpt2-tiny fixture split into <c>model-0000i-of-0000n.safetensors</c> shards with the Hub's index, under the <c>transformer.</c> prefix as GPT2LMHeadModel saves.</summary>
    private string ShardedGpt2(string name, int shards, Func<string, string>? dtype = null, (int Shard, string Tensor)? extra = null)
    {
        string fixture = LoadingFiles.SharedFixture("gpt2-tiny");
        using var source = SafeTensorsFile.Open(Path.Combine(fixture, "model.safetensors"));
        string folder = temp.File(name);
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(fixture, "config.json"), Path.Combine(folder, "config.json"));

        var names = source.Names.ToList();
        var map = new JsonObject();
        long total = 0;
        for (int s = 0; s < shards; s++)
        {
            string file = $"model-{s + 1:D5}-of-{shards:D5}.safetensors";
            var part = names.Where((_, i) => i * shards / names.Count == s).ToList();
            if (extra is { } x && x.Shard == s)
            {
                part.Add(x.Tensor);
            }

            var entries = new List<(string, string, long[], byte[])>();
            foreach (string tensor in part)
            {
                var info = source.Tensors[tensor];
                string type = info.DType == SafeTensorsDType.U8 ? "U8" : dtype?.Invoke(tensor) ?? "F32";
                byte[] bytes = type switch
                {
                    "F16" => source.ReadFloat32(tensor).SelectMany(v => BitConverter.GetBytes((Half)v)).ToArray(),
                    "BF16" => source.ReadFloat32(tensor).SelectMany(v => BitConverter.GetBytes((ushort)(BitConverter.SingleToUInt32Bits(v) >> 16))).ToArray(),
                    _ => source.RawBytes(tensor).ToArray(),
                };
                string stored = "transformer." + tensor;
                entries.Add((stored, type, info.Shape.ToArray(), bytes));
                map[stored] ??= file;
                total += bytes.Length;
            }

            File.WriteAllBytes(Path.Combine(folder, file), LoadingFiles.SafeTensors(entries, new Dictionary<string, string> { ["format"] = "pt" }));
        }

        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = map };
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), index.ToJsonString());
        return folder;
    }

    /// <summary>
    /// The gpt2-tiny fixture as a <c>pytorch_model.bin</c> under the archive folder <c>gpt2-tiny/</c>: wte and wpe
    /// share one storage (wpe at an offset), weights are nn.Parameters, the causal-mask buffers are ByteStorages
    /// and ln_f.weight a HalfStorage (unless <paramref name="halfNorm"/> is false).
    /// </summary>
    private string BinGpt2(string name, bool halfNorm = true)
    {
        string fixture = LoadingFiles.SharedFixture("gpt2-tiny");
        using var source = SafeTensorsFile.Open(Path.Combine(fixture, "model.safetensors"));
        var storages = new Dictionary<string, Storage>();
        var tensors = new List<Tensor>();
        byte[] wte = source.RawBytes("wte.weight").ToArray(), wpe = source.RawBytes("wpe.weight").ToArray();
        storages["0"] = new("0", "FloatStorage", (wte.Length + wpe.Length) / 4, [.. wte, .. wpe]);
        tensors.Add(new("transformer.wte.weight", "0", 0, [512, 32], Parameter: true));
        tensors.Add(new("transformer.wpe.weight", "0", wte.Length / 4, [64, 32], Parameter: true));
        foreach (string tensor in source.Names.Where(n => n is not "wte.weight" and not "wpe.weight"))
        {
            var info = source.Tensors[tensor];
            string key = $"{storages.Count}";
            if (info.DType == SafeTensorsDType.U8)
            {
                storages[key] = new(key, "ByteStorage", info.ElementCount, source.RawBytes(tensor).ToArray());
            }
            else if (tensor == "ln_f.weight" && halfNorm)
            {
                storages[key] = new(key, "HalfStorage", info.ElementCount, source.ReadFloat32(tensor).SelectMany(v => BitConverter.GetBytes((Half)v)).ToArray());
            }
            else
            {
                storages[key] = new(key, "FloatStorage", info.ElementCount, source.RawBytes(tensor).ToArray());
            }

            tensors.Add(new("transformer." + tensor, key, 0, info.Shape.ToArray(), Parameter: info.DType != SafeTensorsDType.U8));
        }

        string folder = temp.File(name);
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(fixture, "config.json"), Path.Combine(folder, "config.json"));
        File.WriteAllBytes(Path.Combine(folder, "pytorch_model.bin"), Archive("gpt2-tiny", Pickle(tensors, storages), storages.Values));
        return folder;
    }

    private string Gpt2WithHead(string name, SafeTensorsFile source, float[]? head, bool tie)
    {
        string fixture = LoadingFiles.SharedFixture("gpt2-tiny");
        string folder = temp.File(name);
        Directory.CreateDirectory(folder);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(fixture, "config.json")))!.AsObject();
        config["tie_word_embeddings"] = tie;
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
        var entries = source.Names.Select(n => ("transformer." + n, source.Tensors[n].DType == SafeTensorsDType.U8 ? "U8" : "F32", source.Tensors[n].Shape.ToArray(), source.RawBytes(n).ToArray())).ToList();
        if (head is not null)
        {
            entries.Add(("lm_head.weight", "F32", [512, 32], LoadingFiles.F32(head)));
        }

        File.WriteAllBytes(Path.Combine(folder, "model.safetensors"), LoadingFiles.SafeTensors(entries));
        return folder;
    }

    /// <summary>A one-layer BERT (d = 8, 2 heads) with HF names, written as model.safetensors.</summary>
    private string TinyBertFolder(string name)
    {
        const int D = 8, Inter = 16, Vocab = 20, Positions = 16;
        var tensors = new List<(string, long[])>
        {
            ("embeddings.word_embeddings.weight", [Vocab, D]),
            ("embeddings.position_embeddings.weight", [Positions, D]),
            ("embeddings.token_type_embeddings.weight", [2, D]),
            ("embeddings.LayerNorm.weight", [D]),
            ("embeddings.LayerNorm.bias", [D]),
        };
        foreach (string linear in new[] { "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense" })
        {
            int outF = linear == "intermediate.dense" ? Inter : D;
            int inF = linear == "output.dense" ? Inter : D;
            tensors.Add(($"encoder.layer.0.{linear}.weight", [outF, inF]));
            tensors.Add(($"encoder.layer.0.{linear}.bias", [outF]));
        }

        foreach (string norm in new[] { "attention.output.LayerNorm", "output.LayerNorm" })
        {
            tensors.Add(($"encoder.layer.0.{norm}.weight", [D]));
            tensors.Add(($"encoder.layer.0.{norm}.bias", [D]));
        }

        int seed = 1;
        var entries = tensors.Select(t => (t.Item1, "F32", t.Item2, LoadingFiles.F32(TestData.Uniform(seed++, (int)t.Item2.Aggregate(1L, (a, b) => a * b))))).ToList();
        var config = HfConfigTests.BertJson();
        config["hidden_size"] = D;
        config["num_hidden_layers"] = 1;
        config["num_attention_heads"] = 2;
        config["intermediate_size"] = Inter;
        config["max_position_embeddings"] = Positions;
        config["vocab_size"] = Vocab;
        string folder = temp.File(name);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
        File.WriteAllBytes(Path.Combine(folder, "model.safetensors"), LoadingFiles.SafeTensors(entries));
        return folder;
    }
}

/// <summary>Peak memory while loading a ~100 MB model the test writes; alone, so no other test's allocations count.</summary>
[Collection(nameof(Headlight.Tests.Library.RunsAlone))]
public sealed class HfWeightMemoryTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempFolder temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Loading_a_100_MB_sharded_model_allocates_at_most_1_25_times_its_float32_weights()
    {
        string folder = temp.File("big");
        Directory.CreateDirectory(folder);
        long floatBytes = WriteBigShardedGpt2(folder, shards: 5);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        ResetPeakRss();
        long rssBefore = Status("VmRSS");
        long anonBefore = Status("RssAnon");
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();

        var checkpoint = HfCheckpoint.LoadGpt2(folder);

        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        long peak = Status("VmHWM") - rssBefore;
        long anon = Status("RssAnon") - anonBefore;
        long held = checkpoint.Weights.Names.Sum(n => 4L * checkpoint.Weights[n].Data.Length);
        output.WriteLine($"float32 weights {floatBytes / 1e6:F1} MB; managed allocation while loading {allocated / 1e6:F1} MB ({(double)allocated / floatBytes:F3}x); " +
            $"peak RSS growth {peak / 1e6:F1} MB ({(double)peak / floatBytes:F3}x); anonymous RSS growth {anon / 1e6:F1} MB ({(double)anon / floatBytes:F3}x)");

        Assert.Equal(floatBytes, held);
        Assert.True(allocated <= 1.25 * floatBytes, $"Loading allocated {allocated} bytes for {floatBytes} bytes of float32 weights.");
        Assert.True(peak <= 1.25 * floatBytes, $"Peak RSS grew by {peak} bytes for {floatBytes} bytes of float32 weights.");

        GC.KeepAlive(checkpoint);
    }

    [Fact]
    public void Loading_a_100_MB_single_file_allocates_at_most_1_25_times_its_float32_weights()
    {
        // Tensors are read with positional reads, so the file's pages never join the process's RSS beside the arrays.
        string single = temp.File("big-single");
        Directory.CreateDirectory(single);
        long floatBytes = WriteBigShardedGpt2(single, shards: 1);
        File.Delete(Path.Combine(single, "model.safetensors.index.json"));
        File.Move(Path.Combine(single, "model-00001-of-00001.safetensors"), Path.Combine(single, "model.safetensors"));
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        ResetPeakRss();
        long rssBefore = Status("VmRSS");
        long allocatedBefore = GC.GetAllocatedBytesForCurrentThread();
        var one = HfCheckpoint.LoadGpt2(single);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - allocatedBefore;
        long peak = Status("VmHWM") - rssBefore;
        output.WriteLine($"one file, float32 weights {floatBytes / 1e6:F1} MB: managed allocation {allocated / 1e6:F1} MB ({(double)allocated / floatBytes:F3}x); peak RSS growth {peak / 1e6:F1} MB ({(double)peak / floatBytes:F3}x)");
        Assert.True(allocated <= 1.25 * floatBytes, $"Loading one file allocated {allocated} bytes for {floatBytes} bytes of float32 weights.");
        Assert.True(peak <= 1.25 * floatBytes, $"Peak RSS grew by {peak} bytes for {floatBytes} bytes of float32 weights.");
        GC.KeepAlive(one);
    }

    /// <summary>A random GPT-2 (d = 512, 8 layers, vocab 1024: 25.9 M parameters, 104 MB of float32) in shards with an index; returns the float32 bytes.</summary>
    private static long WriteBigShardedGpt2(string folder, int shards)
    {
        const int D = 512, Layers = 8, Vocab = 1024, Positions = 256;
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["model_type"] = "gpt2",
            ["n_layer"] = Layers,
            ["n_head"] = 8,
            ["n_embd"] = D,
            ["n_positions"] = Positions,
            ["vocab_size"] = Vocab,
            ["activation_function"] = "gelu_new",
            ["layer_norm_epsilon"] = 1e-5,
        };
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());

        var tensors = new List<(string Name, long[] Shape)> { ("wte.weight", [Vocab, D]), ("wpe.weight", [Positions, D]) };
        for (int l = 0; l < Layers; l++)
        {
            string p = $"h.{l}.";
            tensors.AddRange(
            [
                (p + "ln_1.weight", [D]), (p + "ln_1.bias", [D]), (p + "attn.c_attn.weight", [D, 3 * D]), (p + "attn.c_attn.bias", [3 * D]),
                (p + "attn.c_proj.weight", [D, D]), (p + "attn.c_proj.bias", [D]), (p + "ln_2.weight", [D]), (p + "ln_2.bias", [D]),
                (p + "mlp.c_fc.weight", [D, 4 * D]), (p + "mlp.c_fc.bias", [4 * D]), (p + "mlp.c_proj.weight", [4 * D, D]), (p + "mlp.c_proj.bias", [D]),
            ]);
        }

        tensors.Add(("ln_f.weight", [D]));
        tensors.Add(("ln_f.bias", [D]));
        long totalBytes = tensors.Sum(t => 4 * t.Shape.Aggregate(1L, (a, b) => a * b));

        var random = new Random(5);
        var chunk = new float[1 << 16];
        var map = new JsonObject();
        int next = 0;
        for (int s = 0; s < shards; s++)
        {
            string file = $"model-{s + 1:D5}-of-{shards:D5}.safetensors";
            var part = new List<(string Name, long[] Shape)>();
            long bytes = 0;
            while (next < tensors.Count && (bytes < totalBytes / shards || s == shards - 1))
            {
                part.Add(tensors[next]);
                bytes += 4 * tensors[next].Shape.Aggregate(1L, (a, b) => a * b);
                next++;
            }

            var header = new StringBuilder("{");
            long offset = 0;
            foreach (var (name, shape) in part)
            {
                long size = 4 * shape.Aggregate(1L, (a, b) => a * b);
                header.Append($"\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{offset},{offset + size}]}},");
                offset += size;
                map[name] = file;
            }

            header.Length--;
            header.Append('}');
            byte[] headerBytes = Encoding.UTF8.GetBytes(header.ToString());
            using var stream = File.Create(Path.Combine(folder, file));
            var length = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)headerBytes.Length);
            stream.Write(length);
            stream.Write(headerBytes);
            foreach (var (_, shape) in part)
            {
                for (long left = shape.Aggregate(1L, (a, b) => a * b); left > 0; left -= chunk.Length)
                {
                    int n = (int)Math.Min(left, chunk.Length);
                    for (int i = 0; i < n; i++)
                    {
                        chunk[i] = 0.02f * ((2 * random.NextSingle()) - 1);
                    }

                    stream.Write(MemoryMarshal.AsBytes(chunk.AsSpan(0, n)));
                }
            }
        }

        var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = totalBytes }, ["weight_map"] = map };
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), index.ToJsonString());
        return totalBytes;
    }

    // Linux: "5" resets VmHWM (peak RSS) to the current RSS.
    private static void ResetPeakRss()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Not Linux, or not permitted: the peak then covers the whole process.
        }
    }

    // A /proc/self/status field in bytes (0 where unavailable).
    private static long Status(string field)
    {
        if (!File.Exists("/proc/self/status"))
        {
            return 0;
        }

        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
            {
                return 1024 * long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }
}
