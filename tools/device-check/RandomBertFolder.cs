using System.Text;
using System.Text.Json.Nodes;
using Headlight.Tests.Loading;

namespace Headlight.DeviceCheck;

/// <summary>
/// A sentence-transformers folder with MiniLM-L6's shapes (6 layers, d = 384, 12 heads, FFN 1536,
/// vocabulary 30,522) and random weights: the packaged model is too large to travel to a GPU machine,
/// and timings depend only on the shapes.
/// </summary>
internal static class RandomBertFolder
{
    public const int Layers = 6, Hidden = 384, Heads = 12, Intermediate = 1536, Vocab = 30522, Positions = 512;

    /// <summary>Words the benchmark texts use, so that they tokenize to whole words as with the real vocabulary.</summary>
    private static readonly string[] Words =
        "the quick brown fox jumps over lazy dog while children watch from old wooden bridge near town who is watching animals why do explanations of neural networks matter"
            .Split(' ');

    public static void Write(string folder, int seed)
    {
        Directory.CreateDirectory(folder);
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("BertModel"),
            ["model_type"] = "bert",
            ["hidden_size"] = Hidden,
            ["num_hidden_layers"] = Layers,
            ["num_attention_heads"] = Heads,
            ["intermediate_size"] = Intermediate,
            ["hidden_act"] = "gelu",
            ["max_position_embeddings"] = Positions,
            ["type_vocab_size"] = 2,
            ["layer_norm_eps"] = 1e-12,
            ["vocab_size"] = Vocab,
        };
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());

        // [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103 as in BERT's uncased vocabulary.
        var vocab = Enumerable.Range(0, Vocab).Select(i => $"tok{i}").ToArray();
        (vocab[0], vocab[100], vocab[101], vocab[102], vocab[103]) = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]");
        string[] extra = [.. Words.Distinct(StringComparer.Ordinal), "?", ".", ","];
        for (int i = 0; i < extra.Length; i++)
        {
            vocab[1000 + i] = extra[i];
        }

        File.WriteAllText(Path.Combine(folder, "vocab.txt"), string.Join('\n', vocab) + "\n", Encoding.UTF8);
        File.WriteAllText(Path.Combine(folder, "modules.json"), """
            [{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
             {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
             {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]
            """);
        Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
        File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), $"{{\"word_embedding_dimension\": {Hidden}, \"pooling_mode_mean_tokens\": true}}");

        // (name, shape, scale, offset): uniform in [offset - scale, offset + scale).
        var tensors = new List<(string Name, long[] Shape, float Scale, float Offset)>
        {
            ("embeddings.word_embeddings.weight", [Vocab, Hidden], 0.05f, 0),
            ("embeddings.position_embeddings.weight", [Positions, Hidden], 0.05f, 0),
            ("embeddings.token_type_embeddings.weight", [2, Hidden], 0.05f, 0),
            ("embeddings.LayerNorm.weight", [Hidden], 0.1f, 1),
            ("embeddings.LayerNorm.bias", [Hidden], 0.02f, 0),
        };
        for (int l = 0; l < Layers; l++)
        {
            string p = $"encoder.layer.{l}.";
            foreach (var (linear, outF, inF) in new[]
            {
                ("attention.self.query", Hidden, Hidden), ("attention.self.key", Hidden, Hidden),
                ("attention.self.value", Hidden, Hidden), ("attention.output.dense", Hidden, Hidden),
                ("intermediate.dense", Intermediate, Hidden), ("output.dense", Hidden, Intermediate),
            })
            {
                tensors.Add((p + linear + ".weight", [outF, inF], 1.7f / MathF.Sqrt(inF), 0));
                tensors.Add((p + linear + ".bias", [outF], 0.02f, 0));
            }

            foreach (string norm in new[] { "attention.output.LayerNorm", "output.LayerNorm" })
            {
                tensors.Add((p + norm + ".weight", [Hidden], 0.1f, 1));
                tensors.Add((p + norm + ".bias", [Hidden], 0.02f, 0));
            }
        }

        var random = new Random(seed);
        var entries = tensors.Select(t =>
        {
            var values = new float[t.Shape.Aggregate(1L, (a, b) => a * b)];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = t.Offset + (t.Scale * ((2 * random.NextSingle()) - 1));
            }

            return (t.Name, "F32", t.Shape, LoadingFiles.F32(values));
        });
        File.WriteAllBytes(Path.Combine(folder, "model.safetensors"), LoadingFiles.SafeTensors(entries));
    }
}
