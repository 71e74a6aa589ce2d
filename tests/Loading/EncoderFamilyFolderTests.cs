using System.Text.Json;
using System.Text.Json.Nodes;
using Headlight.Cli;
using Headlight.Explain;
using Headlight.Models;
using Headlight.Models.Loading;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Loading;

/// <summary>
/// RoBERTa and DistilBERT folders laid out as the Hub has them, written from the shared tiny fixtures: classification
/// heads with and without the base-model prefix, labels, refused heads and options, and sentence-transformers folders
/// (max_seq_length, pooling modes, Normalize present or not), through the library and the CLI.
/// </summary>
public sealed class EncoderFamilyFolderTests : IDisposable
{
    private static readonly string[] Labels = ["negative", "Neutral", "POSITIVE"];

    private readonly TempFolder temp = new();

    public void Dispose() => temp.Dispose();

    [Theory]
    [InlineData("roberta-tiny", "roberta.")]
    [InlineData("roberta-tiny", "")]
    [InlineData("distilbert-tiny", "distilbert.")]
    [InlineData("distilbert-tiny", "")]
    public void Sequence_classifier_heads_match_a_float64_head(string fixture, string prefix)
    {
        bool roberta = fixture.StartsWith("roberta", StringComparison.Ordinal);
        var (folder, dense, denseBias, output, outputBias) = Classifier(fixture, prefix);
        using var model = HeadlightModel.Load(folder, Backends.Require("cpu"));
        Assert.Equal(Labels, model.Config.Labels);
        Assert.Equal(roberta ? PoolerActivation.Tanh : PoolerActivation.Relu, model.Config.PoolerActivation);
        int d = model.Config.Hidden;
        int[] ids = FixtureIds(fixture);
        var result = model.Forward(model.FromIds([ids]));

        // RoBERTa: out_proj(tanh(dense(h<s>))); DistilBERT: classifier(ReLU(pre_classifier(h[CLS]))); weights [out, in].
        var h = result.LastHiddenState.AsSpan(0, d).ToArray();
        var pre = new double[d];
        var act = new double[d];
        for (int o = 0; o < d; o++)
        {
            pre[o] = denseBias[o] + Enumerable.Range(0, d).Sum(i => (double)dense[(o * d) + i] * h[i]);
            act[o] = roberta ? Math.Tanh(pre[o]) : Math.Max(pre[o], 0);
        }

        Assert.Contains(pre, z => z < 0);
        var logits = Enumerable.Range(0, Labels.Length).Select(c => outputBias[c] + Enumerable.Range(0, d).Sum(i => (double)output[(c * d) + i] * act[i])).ToArray();
        for (int c = 0; c < Labels.Length; c++)
        {
            Assert.True(Math.Abs(result.ClassLogits![c] - logits[c]) <= 1e-5 * Math.Max(1, Math.Abs(logits[c])), $"{fixture} {prefix}: logit {c} {result.ClassLogits![c]} vs {logits[c]}.");
        }

        // The class logit's gradient is the head's float64 gradient at h[0] through the encoder's Jacobian at position 0.
        var batch = model.FromIds([ids]);
        var ours = Explainer.Explain(model, batch, new ClassLogitTarget(2), new SaliencyOptions()).Rows[0];
        Assert.Equal(logits[2], ours.TargetValue, 5);
        var expected = new double[ids.Length * d];
        for (int j = 0; j < d; j++)
        {
            double g = Enumerable.Range(0, d).Sum(o => output[(2 * d) + o] * (roberta ? 1 - (act[o] * act[o]) : pre[o] > 0 ? 1 : 0) * (double)dense[(o * d) + j]);
            var unit = Explainer.Explain(model, batch, new OutputUnitTarget(0, j), new SaliencyOptions()).Rows[0].EmbeddingScores.ToArray();
            for (int i = 0; i < expected.Length; i++)
            {
                expected[i] += g * unit[i];
            }
        }

        double error = Explain.GradientCheckTests.RelativeL2(ours.EmbeddingScores.ToArray(), expected);
        Assert.True(error <= Explain.GradientCheckTests.GradientRelative, $"{fixture} {prefix}: class-logit gradient relative L2 error {error:E2}.");
    }

    [Theory]
    [InlineData("roberta-tiny")]
    [InlineData("distilbert-tiny")]
    public void Class_targets_take_labels_in_any_case_and_every_output_names_them(string fixture)
    {
        var (folder, _, _, _, _) = Classifier(fixture, fixture.StartsWith("roberta", StringComparison.Ordinal) ? "roberta." : "distilbert.");
        string ids = string.Join(",", FixtureIds(fixture));
        var (code, output, error) = Run("explain", "--model", folder, "--device", "cpu", "--ids", ids, "--target", "class:positive", "--method", "saliency", "--json");
        Assert.True(code == 0, error);
        using (var doc = JsonDocument.Parse(output))
        {
            Assert.Equal("POSITIVE", doc.RootElement.GetProperty("label").GetString());
            Assert.Equal("logit of POSITIVE (class 2)", doc.RootElement.GetProperty("target").GetString());
        }

        (code, output, error) = Run("explain", "--model", folder, "--device", "cpu", "--ids", ids, "--target", "prob:NEUTRAL", "--method", "saliency");
        Assert.True(code == 0, error);
        Assert.Contains("probability of Neutral (class 1)", output, StringComparison.Ordinal);
        Assert.DoesNotContain("of class 1", output.Replace("(class 1)", string.Empty, StringComparison.Ordinal), StringComparison.Ordinal);

        (code, _, error) = Run("explain", "--model", folder, "--device", "cpu", "--ids", ids, "--target", "class:nope", "--method", "saliency");
        Assert.NotEqual(0, code);
        Assert.Contains("negative, Neutral, POSITIVE", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("BertForTokenClassification", "bert")]
    [InlineData("RobertaForTokenClassification", "roberta")]
    [InlineData("DistilBertForTokenClassification", "distilbert")]
    public void Token_classification_folders_are_refused_as_not_supported_yet(string architecture, string modelType)
    {
        string fixture = modelType == "distilbert" ? "distilbert-tiny" : "roberta-tiny";
        string folder = Copy(fixture, config =>
        {
            config["architectures"] = new JsonArray(architecture);
            config["model_type"] = modelType;
            config["id2label"] = new JsonObject { ["0"] = "O", ["1"] = "B-PER", ["2"] = "I-PER" };
        });
        var e = Assert.Throws<ModelFormatException>(() => HeadlightModel.Load(folder, Backends.Require("cpu")));
        Assert.Contains("token classification is not supported yet", e.Message, StringComparison.Ordinal);
        Assert.Contains("architectures", e.Message, StringComparison.Ordinal);
        Assert.Contains("config.json", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("distilbert-tiny", "dim", null, "dim")]
    [InlineData("distilbert-tiny", "n_heads", 5, "n_heads")]
    [InlineData("distilbert-tiny", "activation", "swish", "activation")]
    [InlineData("roberta-tiny", "pad_token_id", -1, "pad_token_id")]
    [InlineData("roberta-tiny", "pad_token_id", 40, "max_position_embeddings")]
    [InlineData("roberta-tiny", "model_type", "xlm-roberta", "model_type")]
    public void Bad_family_configs_are_refused_naming_the_field(string fixture, string key, object? value, string field)
    {
        // null removes the key.
        string folder = Copy(fixture, config =>
        {
            if (value is null)
            {
                config.Remove(key);
            }
            else
            {
                config[key] = JsonValue.Create(value);
            }
        });

        var e = Assert.Throws<ModelFormatException>(() => HeadlightModel.Load(folder, Backends.Require("cpu")));
        Assert.Contains(field, e.Message, StringComparison.Ordinal);
        Assert.Contains("config.json", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_roberta_vocabulary_without_its_framing_tokens_is_refused_naming_the_file_and_token()
    {
        string folder = Copy("roberta-tiny", _ => { });
        WriteRobertaTokenizer(folder);
        string path = Path.Combine(folder, "vocab.json");
        var vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(path))!;
        int s = vocab["<s>"];
        vocab.Remove("<s>");
        vocab["<S>"] = s;
        File.WriteAllText(path, JsonSerializer.Serialize(vocab));
        var e = Assert.Throws<Models.Tokenization.VocabularyFormatException>(() => HeadlightModel.Load(folder, Backends.Require("cpu")));
        Assert.Contains("<s>", e.Message, StringComparison.Ordinal);
        Assert.Contains("vocab.json", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Distilbert_sinusoidal_positions_are_refused_naming_the_key()
    {
        string folder = Copy("distilbert-tiny", config => config["sinusoidal_pos_embds"] = true);
        var e = Assert.Throws<ModelFormatException>(() => HeadlightModel.Load(folder, Backends.Require("cpu")));
        Assert.Contains("sinusoidal_pos_embds", e.Message, StringComparison.Ordinal);
        Assert.Contains("not supported yet", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Max_seq_length_truncates_texts_as_sentence_transformers_does()
    {
        string folder = Copy("distilbert-tiny", _ => { }, withVocab: true);
        File.WriteAllText(Path.Combine(folder, "sentence_bert_config.json"), """{"max_seq_length": 8, "do_lower_case": false}""");
        using var model = HeadlightModel.Load(folder, Backends.Require("cpu"));
        Assert.Equal(8, model.Config.MaxSequenceLength);

        // 20 words (and 40, beyond the 32 positions): [CLS] + the first 6 words + [SEP], not refused.
        foreach (int words in (int[])[20, 40])
        {
            string text = string.Join(" ", Enumerable.Range(0, words).Select(i => $"word{i}"));
            var batch = model.Tokenize([text]);
            Assert.Equal(8, batch.SequenceLength);
            Assert.Equal([101, 104, 105, 106, 107, 108, 109, 102], batch.InputIds.ToArray());
            var alone = model.Embed(["word0 word1 word2 word3 word4 word5"])[0];
            Assert.Equal(alone, model.Embed([text])[0]);
        }
    }

    [Theory]
    [InlineData("pooling_mode_cls_token", PoolingMode.Cls, true)]
    [InlineData("pooling_mode_max_tokens", PoolingMode.Max, false)]
    [InlineData("pooling_mode_lasttoken", PoolingMode.LastToken, true)]
    [InlineData("pooling_mode_mean_tokens", PoolingMode.Mean, false)]
    public void Pooling_modes_and_normalize_follow_the_folder(string key, PoolingMode mode, bool normalize)
    {
        string folder = Copy("roberta-tiny", _ => { });
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), $$"""{"word_embedding_dimension": 64, "{{key}}": true}""");
        if (!normalize)
        {
            File.WriteAllText(Path.Combine(folder, "modules.json"), """
                [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                 {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
                """);
        }

        using var model = HeadlightModel.Load(folder, Backends.Require("cpu"));
        Assert.Equal(mode, model.Config.Pooling);
        Assert.Equal(normalize, model.Config.NormalizeEmbedding);
        var result = model.Forward(model.FromIds([FixtureIds("roberta-tiny")]));
        var embedding = result.SentenceEmbeddings![0];
        Assert.Equal(result.Pool(mode, normalize)[0], embedding);
        Assert.Equal(normalize, Math.Abs(System.Numerics.Tensors.TensorPrimitives.Norm(embedding) - 1) < 1e-5);
    }

    [Fact]
    public void Weighted_mean_pooling_is_refused_naming_the_file_and_key()
    {
        string folder = Copy("roberta-tiny", _ => { });
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), """{"word_embedding_dimension": 64, "pooling_mode_weightedmean_tokens": true}""");
        var e = Assert.Throws<ModelFormatException>(() => HeadlightModel.Load(folder, Backends.Require("cpu")));
        Assert.Contains("pooling_mode_weightedmean_tokens", e.Message, StringComparison.Ordinal);
        Assert.Contains("not supported yet", e.Message, StringComparison.Ordinal);
        Assert.Contains(Path.Combine("1_Pooling", "config.json"), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Embed_pools_a_plain_encoder_folder_as_the_user_chooses()
    {
        string folder = Copy("distilbert-tiny", _ => { });
        File.Delete(Path.Combine(folder, "modules.json"));
        string ids = string.Join(",", FixtureIds("distilbert-tiny"));
        var (code, _, error) = Run("embed", "--model", folder, "--device", "cpu", "--ids", ids);
        Assert.NotEqual(0, code);
        Assert.Contains("--pooling", error, StringComparison.Ordinal);

        using var model = HeadlightModel.Load(folder, Backends.Require("cpu"));
        var result = model.Forward(model.FromIds([FixtureIds("distilbert-tiny")]));
        foreach (var (name, mode) in new[] { ("mean", PoolingMode.Mean), ("cls", PoolingMode.Cls), ("max", PoolingMode.Max), ("lasttoken", PoolingMode.LastToken) })
        {
            string output;
            (code, output, error) = Run("embed", "--model", folder, "--device", "cpu", "--ids", ids, "--pooling", name, "--json");
            Assert.True(code == 0, error);
            using var doc = JsonDocument.Parse(output);
            var embedding = doc.RootElement.GetProperty("embeddings")[0].Deserialize<float[]>()!;
            Assert.Equal(result.Pool(mode, normalize: false)[0], embedding);
        }

        (code, _, error) = Run("embed", "--model", folder, "--device", "cpu", "--ids", ids, "--pooling", "weightedmean");
        Assert.NotEqual(0, code);
        Assert.Contains("not supported yet", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("roberta-tiny")]
    [InlineData("distilbert-tiny")]
    public void Every_command_runs_on_the_fixture_given_ids(string fixture)
    {
        string model = LoadingFiles.SharedFixture(fixture);
        string ids = string.Join(",", FixtureIds(fixture));
        foreach (string[] args in new[]
        {
            new[] { "embed", "--ids", ids + ";" + ids },
            ["attend", "--ids", ids],
            ["explain", "--ids", ids, "--target", "unit:pooled,3", "--method", "ig,saliency,gradxinput,smoothgrad,shap,lrp,cp-lrp,rollout,gradattn", "--masking", "drop"],
        })
        {
            var (code, output, error) = Run([.. args, "--model", model, "--device", "cpu"]);
            Assert.True(code == 0, $"{string.Join(' ', args.Take(1))}: {error}");
            Assert.NotEmpty(output);
        }
    }

    [Fact]
    public void Roberta_folders_with_vocab_json_and_merges_frame_texts_with_s_and_pairs_with_double_eos()
    {
        string folder = Copy("roberta-tiny", _ => { });
        var vocab = WriteRobertaTokenizer(folder);
        using var model = HeadlightModel.Load(folder, Backends.Require("cpu"));
        Assert.NotNull(model.Tokenizer);
        int hello = vocab["hello"], world = vocab["Ġworld"];
        var batch = model.Tokenize(["hello world", "hello"]);
        Assert.Equal([0, hello, world, 2], batch.Texts[0].Ids);
        Assert.Equal(["<s>", "hello", " world", "</s>"], batch.Texts[0].Tokens);
        Assert.Equal(["hello", "world"], batch.Texts[0].Words.Select(w => w.Text));
        Assert.Equal([0, hello, 2, 1], batch.InputIds.ToArray()[4..]);
        Assert.Equal(model.Embed(["hello world"])[0], model.Forward(model.FromIds([[0, hello, world, 2]])).SentenceEmbeddings![0]);

        // A pair: <s> A </s></s> B </s> ("world" alone has no leading space: w, or, l, d); one token type for all.
        var pair = model.TokenizePair("hello", "world");
        Assert.Equal([0, hello, 2, 2, vocab["w"], vocab["or"], vocab["l"], vocab["d"], 2], pair.Texts[0].Ids);
        Assert.Equal([0, 0, 0, 1, 1, 1, 1, 1, 1], pair.Texts[0].TypeIds);
        var forward = model.Forward(pair);
        Assert.Equal(model.Forward(model.FromIds([pair.Texts[0].Ids.ToArray()])).LastHiddenState, forward.LastHiddenState);

        // The CLI explains text on it (SHAP replaces words by <mask>) and runs the faithfulness benchmark.
        Assert.Equal(vocab["<mask>"], ((Models.Tokenization.RobertaTokenizer)model.Tokenizer).MaskTokenId);
        var (code, output, error) = Run("explain", "--model", folder, "--device", "cpu", "hello world", "--target", "unit:pooled,0", "--method", "ig,shap");
        Assert.True(code == 0, error);
        Assert.Contains("world", output, StringComparison.Ordinal);
        string corpus = Path.Combine(folder, "corpus.txt");
        File.WriteAllLines(corpus, ["hello world hello", "world hello world world"]);
        (code, output, error) = Run("faithfulness", "--model", folder, "--device", "cpu", "--corpus", corpus, "--target", "unit:pooled,1", "--method", "saliency,shap");
        Assert.True(code == 0, error);
        Assert.Contains("AOPC", output, StringComparison.Ordinal);
    }

    // RoBERTa's specials, the 256 byte tokens and a few merges; returns token -> id.
    private static Dictionary<string, int> WriteRobertaTokenizer(string folder)
    {
        var tokens = new List<string> { "<s>", "<pad>", "</s>", "<unk>" };
        tokens.AddRange(Enumerable.Range(0, 256).Select(b => Models.Tokenization.BpeVocabulary.ToAlphabet([(byte)b])));
        string[] merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d"];
        tokens.AddRange(merges.Select(m => m.Replace(" ", string.Empty, StringComparison.Ordinal)));
        tokens.Add("<mask>");
        var vocab = tokens.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i);
        File.WriteAllText(Path.Combine(folder, "vocab.json"), JsonSerializer.Serialize(vocab));
        File.WriteAllLines(Path.Combine(folder, "merges.txt"), ["#version: 0.2", .. merges]);
        return vocab;
    }

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = Program.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    private static int[] FixtureIds(string fixture)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(LoadingFiles.SharedFixture(fixture), "expected.json")));
        return doc.RootElement.GetProperty("cases")[0].GetProperty("ids")[0].Deserialize<int[]>()!;
    }

    // A copy of a fixture folder with its config edited (and a WordPiece vocab.txt matching DistilBERT's special ids).
    private string Copy(string fixture, Action<JsonObject> edit, bool withVocab = false)
    {
        string source = LoadingFiles.SharedFixture(fixture);
        string folder = Path.Combine(temp.Path, fixture + "-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
        foreach (string file in (string[])["model.safetensors", "modules.json", "sentence_bert_config.json", Path.Combine("1_Pooling", "config.json")])
        {
            File.Copy(Path.Combine(source, file), Path.Combine(folder, file));
        }

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject();
        edit(config);
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
        if (withVocab)
        {
            var vocab = Enumerable.Range(0, 384).Select(i => i switch
            {
                0 => "[PAD]",
                100 => "[UNK]",
                101 => "[CLS]",
                102 => "[SEP]",
                103 => "[MASK]",
                < 100 => $"[unused{i}]",
                _ => $"word{i - 104}",
            });
            File.WriteAllLines(Path.Combine(folder, "vocab.txt"), vocab);
        }

        return folder;
    }

    // The fixture's encoder under the family's prefix, pooler dropped, with a random classification head of 3 labels.
    private (string Folder, float[] Dense, float[] DenseBias, float[] Output, float[] OutputBias) Classifier(string fixture, string prefix)
    {
        bool roberta = fixture.StartsWith("roberta", StringComparison.Ordinal);
        string folder = Copy(fixture, config =>
        {
            config["architectures"] = new JsonArray(roberta ? "RobertaForSequenceClassification" : "DistilBertForSequenceClassification");
            var id2label = new JsonObject();
            var label2id = new JsonObject();
            for (int i = 0; i < Labels.Length; i++)
            {
                id2label[i.ToString(System.Globalization.CultureInfo.InvariantCulture)] = Labels[i];
                label2id[Labels[i]] = i;
            }

            config["id2label"] = id2label;
            config["label2id"] = label2id;
        });
        File.Delete(Path.Combine(folder, "modules.json"));
        const int d = 64;
        var dense = TestData.Normal(91, d * d, 0.3f);
        var denseBias = TestData.Normal(92, d, 0.2f);
        var output = TestData.Normal(93, Labels.Length * d, 0.3f);
        var outputBias = TestData.Normal(94, Labels.Length, 0.1f);
        var tensors = new List<(string, string, long[], byte[])>();
        using (var file = SafeTensorsFile.Open(Path.Combine(LoadingFiles.SharedFixture(fixture), "model.safetensors")))
        {
            foreach (string name in file.Names.Where(n => !n.StartsWith("pooler.", StringComparison.Ordinal)))
            {
                var info = file.Tensors[name];
                tensors.Add((prefix + name, "F32", info.Shape.Select(x => (long)x).ToArray(), LoadingFiles.F32(file.ReadFloat32(name).ToArray())));
            }
        }

        string denseName = roberta ? "classifier.dense" : "pre_classifier";
        string outputName = roberta ? "classifier.out_proj" : "classifier";
        tensors.Add((denseName + ".weight", "F32", [d, d], LoadingFiles.F32(dense)));
        tensors.Add((denseName + ".bias", "F32", [d], LoadingFiles.F32(denseBias)));
        tensors.Add((outputName + ".weight", "F32", [Labels.Length, d], LoadingFiles.F32(output)));
        tensors.Add((outputName + ".bias", "F32", [Labels.Length], LoadingFiles.F32(outputBias)));
        File.WriteAllBytes(Path.Combine(folder, "model.safetensors"), LoadingFiles.SafeTensors(tensors));
        return (folder, dense, denseBias, output, outputBias);
    }
}
