using System.Text;
using System.Text.Json.Nodes;
using Headlight.Tests.Loading;

namespace Headlight.Tests.Explain;

/// <summary>What a tiny test model has on top of the encoder.</summary>
public enum TinyHead
{
    /// <summary>Encoder only.</summary>
    None,

    /// <summary>BertForSequenceClassification: pooler and a 3-class classifier.</summary>
    Classifier,

    /// <summary>A sentence-transformers folder: mean pooling and L2 normalisation.</summary>
    MeanPooling,

    /// <summary>A sentence-transformers folder: [CLS] pooling and L2 normalisation.</summary>
    ClsPooling,
}

/// <summary>
/// Tiny random transformers written as Hugging Face folders (config.json, model.safetensors, and for BERT a
/// vocab.txt), with their weights kept in Hugging Face names and layouts for the float64 reference.
/// </summary>
public sealed class TinyModel : IDisposable
{
    public const int BertVocab = 30;
    public const int Gpt2Vocab = 40;
    public const int Hidden = 16;
    public const int Heads = 2;
    public const int Positions = 16;
    public const int Labels = 3;

    private readonly TempFolder temp = new();

    private TinyModel(bool bert, int layers, int intermediate, int vocab, double epsilon, Dictionary<string, float[]> weights, TinyHead head)
    {
        IsBert = bert;
        Layers = layers;
        Intermediate = intermediate;
        Vocab = vocab;
        Epsilon = epsilon;
        Weights = weights;
        Head = head;
        Folder = temp.Path;
    }

    public bool IsBert { get; }

    public int Layers { get; }

    public int Intermediate { get; }

    public int Vocab { get; }

    public double Epsilon { get; }

    public TinyHead Head { get; }

    /// <summary>Weights by Hugging Face name: BERT linear layers [out, in], GPT-2 Conv1D [in, out].</summary>
    public IReadOnlyDictionary<string, float[]> Weights { get; }

    /// <summary>The folder to load.</summary>
    public string Folder { get; }

    /// <summary>A 2-layer BERT, d = 16, 2 heads, intermediate 32, vocabulary 30 ([PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4).</summary>
    /// <param name="seed">Seeds the weights.</param>
    /// <param name="head">What comes after the encoder.</param>
    /// <param name="nanToken">A token whose word embedding is NaN, to test non-finite results.</param>
    public static TinyModel Bert(int seed, TinyHead head, int? nanToken = null)
    {
        const int d = Hidden;
        const int inter = 32;
        var weights = new RandomWeights(seed);
        var w = weights.Values;
        var Add = weights.Add;

        Add("embeddings.word_embeddings.weight", [BertVocab, d], 1f);
        Add("embeddings.position_embeddings.weight", [Positions, d], 0.5f);
        Add("embeddings.token_type_embeddings.weight", [2, d], 0.5f);
        Add("embeddings.LayerNorm.weight", [d], 0.2f, 1f);
        Add("embeddings.LayerNorm.bias", [d], 0.1f);
        for (int l = 0; l < 2; l++)
        {
            string p = $"encoder.layer.{l}.";
            foreach (string linear in new[] { "attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense", "intermediate.dense", "output.dense" })
            {
                int outF = linear == "intermediate.dense" ? inter : d;
                int inF = linear == "output.dense" ? inter : d;
                Add($"{p}{linear}.weight", [outF, inF], 0.5f);
                Add($"{p}{linear}.bias", [outF], 0.1f);
            }

            foreach (string norm in new[] { "attention.output.LayerNorm", "output.LayerNorm" })
            {
                Add($"{p}{norm}.weight", [d], 0.2f, 1f);
                Add($"{p}{norm}.bias", [d], 0.1f);
            }
        }

        if (head == TinyHead.Classifier)
        {
            Add("pooler.dense.weight", [d, d], 0.5f);
            Add("pooler.dense.bias", [d], 0.1f);
            Add("classifier.weight", [Labels, d], 0.5f);
            Add("classifier.bias", [Labels], 0.1f);
        }

        if (nanToken is { } nan)
        {
            w["embeddings.word_embeddings.weight"].AsSpan(nan * d, d).Fill(float.NaN);
        }

        var model = new TinyModel(true, 2, inter, BertVocab, 1e-12, w, head);
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray(head == TinyHead.Classifier ? "BertForSequenceClassification" : "BertModel"),
            ["model_type"] = "bert",
            ["hidden_size"] = d,
            ["num_hidden_layers"] = 2,
            ["num_attention_heads"] = Heads,
            ["intermediate_size"] = inter,
            ["hidden_act"] = "gelu",
            ["max_position_embeddings"] = Positions,
            ["type_vocab_size"] = 2,
            ["layer_norm_eps"] = 1e-12,
            ["vocab_size"] = BertVocab,
        };
        if (head == TinyHead.Classifier)
        {
            config["id2label"] = new JsonObject { ["0"] = "negative", ["1"] = "neutral", ["2"] = "positive" };
        }

        model.Write(config, weights.Shapes);
        string[] special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
        File.WriteAllText(Path.Combine(model.Folder, "vocab.txt"), string.Join('\n', special.Concat(Enumerable.Range(special.Length, BertVocab - special.Length).Select(i => $"w{i}"))) + "\n", Encoding.UTF8);
        if (head is TinyHead.MeanPooling or TinyHead.ClsPooling)
        {
            File.WriteAllText(Path.Combine(model.Folder, "modules.json"), "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},{\"idx\":1,\"name\":\"1\",\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"},{\"idx\":2,\"name\":\"2\",\"path\":\"2_Normalize\",\"type\":\"sentence_transformers.models.Normalize\"}]");
            Directory.CreateDirectory(Path.Combine(model.Folder, "1_Pooling"));
            string mode = head == TinyHead.MeanPooling ? "pooling_mode_mean_tokens" : "pooling_mode_cls_token";
            File.WriteAllText(Path.Combine(model.Folder, "1_Pooling", "config.json"), $"{{\"word_embedding_dimension\": {d}, \"{mode}\": true}}");
        }

        return model;
    }

    /// <summary>A 2-layer GPT-2, d = 16, 2 heads, inner 64 (n_inner null), vocabulary 40, tanh GELU, ε = 1e-5.</summary>
    public static TinyModel Gpt2(int seed)
    {
        const int d = Hidden;
        const int inner = 4 * d;
        var weights = new RandomWeights(seed);
        var w = weights.Values;
        var Add = weights.Add;

        Add("wte.weight", [Gpt2Vocab, d], 1f);
        Add("wpe.weight", [Positions, d], 0.5f);
        for (int l = 0; l < 2; l++)
        {
            string p = $"h.{l}.";
            Add(p + "ln_1.weight", [d], 0.2f, 1f);
            Add(p + "ln_1.bias", [d], 0.1f);
            Add(p + "attn.c_attn.weight", [d, 3 * d], 0.5f);
            Add(p + "attn.c_attn.bias", [3 * d], 0.1f);
            Add(p + "attn.c_proj.weight", [d, d], 0.5f);
            Add(p + "attn.c_proj.bias", [d], 0.1f);
            Add(p + "ln_2.weight", [d], 0.2f, 1f);
            Add(p + "ln_2.bias", [d], 0.1f);
            Add(p + "mlp.c_fc.weight", [d, inner], 0.5f);
            Add(p + "mlp.c_fc.bias", [inner], 0.1f);
            Add(p + "mlp.c_proj.weight", [inner, d], 0.3f);
            Add(p + "mlp.c_proj.bias", [d], 0.1f);
        }

        Add("ln_f.weight", [d], 0.2f, 1f);
        Add("ln_f.bias", [d], 0.1f);
        var model = new TinyModel(false, 2, inner, Gpt2Vocab, 1e-5, w, TinyHead.None);
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["model_type"] = "gpt2",
            ["n_layer"] = 2,
            ["n_head"] = Heads,
            ["n_embd"] = d,
            ["n_positions"] = Positions,
            ["n_ctx"] = Positions,
            ["n_inner"] = null,
            ["vocab_size"] = Gpt2Vocab,
            ["activation_function"] = "gelu_new",
            ["layer_norm_epsilon"] = 1e-5,
        };
        model.Write(config, weights.Shapes);
        return model;
    }

    public void Dispose() => temp.Dispose();

    private void Write(JsonObject config, IReadOnlyList<(string Name, long[] Shape)> shapes)
    {
        File.WriteAllText(Path.Combine(Folder, "config.json"), config.ToJsonString());
        var entries = shapes.Select(e => (e.Name, "F32", e.Shape, LoadingFiles.F32(Weights[e.Name]))).ToList();
        File.WriteAllBytes(Path.Combine(Folder, "model.safetensors"), LoadingFiles.SafeTensors(entries));
    }
}

/// <summary>Uniform random weights by name, in the order they are made, each from the next seed.</summary>
internal sealed class RandomWeights(int seed)
{
    private readonly List<(string Name, long[] Shape)> shapes = [];
    private int next = seed;

    public Dictionary<string, float[]> Values { get; } = new(StringComparer.Ordinal);

    public IReadOnlyList<(string Name, long[] Shape)> Shapes => shapes;

    /// <summary>Values uniform in [offset − scale, offset + scale).</summary>
    public void Add(string name, long[] shape, float scale, float offset = 0)
    {
        int count = (int)shape.Aggregate(1L, (a, b) => a * b);
        Values[name] = TestData.Uniform(next++, count, scale).Select(v => v + offset).ToArray();
        shapes.Add((name, shape));
    }
}
