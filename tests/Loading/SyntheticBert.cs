namespace Headlight.Tests.Loading;

/// <summary>
/// A tiny BERT graph written in the test (not executable, only structurally faithful), exporting its
/// matrices unnamed the way PyTorch does, but differing from the packaged models where a loader
/// could overfit: LayerNormalization nodes instead of decomposed LayerNorm, scores scaled by Mul
/// instead of Div, a constant Reshape shape, bias as the Add's second input, and the feed-forward
/// up-projection as a Gemm with transB = 1 ([out, in] storage).
/// </summary>
public sealed class SyntheticBert
{
    public const int Hidden = 8;
    public const int Heads = 2;
    public const int HeadDim = 4;
    public const int Intermediate = 16;
    public const int Vocab = 10;
    public const int Positions = 6;
    public const int Types = 2;
    public const float Epsilon = 1e-5f;

    private readonly Dictionary<string, float[]> values = [];
    private int seed = 100;

    /// <summary>Builds the graph.</summary>
    /// <param name="layers">The number of layers.</param>
    /// <param name="stateHeads">Whether the graph states the head count (Reshape constant and score scale).</param>
    /// <param name="scoreScale">The constant the scores are multiplied by (default 1/sqrt(headDim)).</param>
    public SyntheticBert(int layers = 2, bool stateHeads = true, float? scoreScale = null)
    {
        Layers = layers;
        var g = new Proto().String(2, "synthetic-bert");
        var initializers = new List<Proto>();

        Proto Init(string name, long[] dims, bool packedFloatData = false)
        {
            long count = dims.Aggregate(1L, (a, b) => a * b);
            float[] data = TestData.Uniform(seed++, count);
            values[name] = data;
            var t = packedFloatData ? Onnx.FloatData(name, dims, data) : Onnx.RawFloat(name, dims, data);
            initializers.Add(t);
            return t;
        }

        Init("embeddings.word_embeddings.weight", [Vocab, Hidden]);
        Init("embeddings.position_embeddings.weight", [Positions, Hidden]);
        Init("embeddings.token_type_embeddings.weight", [Types, Hidden]);
        Init("embeddings.LayerNorm.weight", [Hidden], packedFloatData: true);
        Init("embeddings.LayerNorm.bias", [Hidden]);
        initializers.Add(Onnx.Int64Data("position_ids", [1, Positions], Enumerable.Range(0, Positions).Select(i => (long)i).ToArray()));

        g.Message(1, Onnx.Node("Gather", ["embeddings.word_embeddings.weight", "input_ids"], ["we"]));
        g.Message(1, Onnx.Node("Gather", ["embeddings.token_type_embeddings.weight", "token_type_ids"], ["te"]));
        g.Message(1, Onnx.Node("Gather", ["embeddings.position_embeddings.weight", "position_ids"], ["pe"]));
        g.Message(1, Onnx.Node("Add", ["we", "te"], ["wte"]));
        g.Message(1, Onnx.Node("Add", ["wte", "pe"], ["emb"]));
        g.Message(1, Onnx.Node("LayerNormalization", ["emb", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"], ["x0"], Onnx.FloatAttribute("epsilon", Epsilon), Onnx.IntAttribute("axis", -1)));
        g.Message(1, Onnx.Node("Constant", [], ["mask_fill"], Onnx.TensorAttribute("value", Onnx.RawFloat(string.Empty, [], [-10000f]))));
        g.Message(1, Onnx.Node("Mul", ["attention_mask_f", "mask_fill"], ["mask"]));
        if (stateHeads)
        {
            g.Message(1, Onnx.Node("Constant", [], ["split_shape"], Onnx.TensorAttribute("value", Onnx.Int64Data(string.Empty, [4], [0, 0, Heads, HeadDim]))));
            g.Message(1, Onnx.Node("Constant", [], ["scale"], Onnx.TensorAttribute("value", Onnx.RawFloat(string.Empty, [], [scoreScale ?? (1f / MathF.Sqrt(HeadDim))]))));
        }

        int matrix = 500;
        string x = "x0";
        for (int i = 0; i < layers; i++)
        {
            string p = $"encoder.layer.{i}.";
            string L(string s) => $"l{i}_{s}";

            string Linear(string input, string role, int inF, int outF)
            {
                string w = $"onnx::MatMul_{matrix++}";
                Init(w, [inF, outF]);
                Init($"{p}{role}.bias", [outF]);
                g.Message(1, Onnx.Node("MatMul", [input, w], [L(role + "_mm")]));
                g.Message(1, Onnx.Node("Add", [L(role + "_mm"), $"{p}{role}.bias"], [L(role)]));
                return L(role);
            }

            string q = Linear(x, "attention.self.query", Hidden, Hidden);
            string k = Linear(x, "attention.self.key", Hidden, Hidden);
            string v = Linear(x, "attention.self.value", Hidden, Hidden);
            if (stateHeads)
            {
                g.Message(1, Onnx.Node("Reshape", [q, "split_shape"], [L("q4")]));
                g.Message(1, Onnx.Node("Reshape", [k, "split_shape"], [L("k4")]));
                g.Message(1, Onnx.Node("Reshape", [v, "split_shape"], [L("v4")]));
            }
            else
            {
                g.Message(1, Onnx.Node("Reshape", [q, "dynamic_shape"], [L("q4")]));
                g.Message(1, Onnx.Node("Reshape", [k, "dynamic_shape"], [L("k4")]));
                g.Message(1, Onnx.Node("Reshape", [v, "dynamic_shape"], [L("v4")]));
            }

            g.Message(1, Onnx.Node("Transpose", [L("q4")], [L("qt")], new Proto().String(1, "perm").PackedVarints(8, 0, 2, 1, 3).Varint(20, 7)));
            g.Message(1, Onnx.Node("Transpose", [L("k4")], [L("kt")]));
            g.Message(1, Onnx.Node("Transpose", [L("v4")], [L("vt")]));
            g.Message(1, Onnx.Node("MatMul", [L("qt"), L("kt")], [L("scores")]));
            g.Message(1, Onnx.Node("Mul", [L("scores"), stateHeads ? "scale" : "dynamic_scale"], [L("scaled")]));
            g.Message(1, Onnx.Node("Add", ["mask", L("scaled")], [L("masked")]));
            g.Message(1, Onnx.Node("Softmax", [L("masked")], [L("probs")], Onnx.IntAttribute("axis", -1)));
            g.Message(1, Onnx.Node("MatMul", [L("probs"), L("vt")], [L("ctx4")]));
            g.Message(1, Onnx.Node("Reshape", [L("ctx4"), "merge_shape"], [L("ctx")]));
            string attn = Linear(L("ctx"), "attention.output.dense", Hidden, Hidden);
            g.Message(1, Onnx.Node("Add", [attn, x], [L("res1")]));
            Init($"{p}attention.output.LayerNorm.weight", [Hidden]);
            Init($"{p}attention.output.LayerNorm.bias", [Hidden]);
            g.Message(1, Onnx.Node("LayerNormalization", [L("res1"), $"{p}attention.output.LayerNorm.weight", $"{p}attention.output.LayerNorm.bias"], [L("h1")], Onnx.FloatAttribute("epsilon", Epsilon)));

            // Feed-forward up-projection as Gemm(h, W [out, in], b, transB = 1).
            string up = $"onnx::Gemm_{matrix++}";
            Init(up, [Intermediate, Hidden]);
            Init($"{p}intermediate.dense.bias", [Intermediate]);
            g.Message(1, Onnx.Node("Gemm", [L("h1"), up, $"{p}intermediate.dense.bias"], [L("up")], Onnx.IntAttribute("transB", 1)));
            g.Message(1, Onnx.Node("Erf", [L("up")], [L("erf")]));
            g.Message(1, Onnx.Node("Mul", [L("up"), L("erf")], [L("gelu")]));
            string down = Linear(L("gelu"), "output.dense", Intermediate, Hidden);
            g.Message(1, Onnx.Node("Add", [down, L("h1")], [L("res2")]));
            Init($"{p}output.LayerNorm.weight", [Hidden]);
            Init($"{p}output.LayerNorm.bias", [Hidden]);
            x = i == layers - 1 ? "last_hidden_state" : L("out");
            g.Message(1, Onnx.Node("LayerNormalization", [L("res2"), $"{p}output.LayerNorm.weight", $"{p}output.LayerNorm.bias"], [x], Onnx.FloatAttribute("epsilon", Epsilon)));
        }

        foreach (var t in initializers)
        {
            g.Message(5, t);
        }

        g.Message(11, Onnx.Value("input_ids")).Message(11, Onnx.Value("attention_mask_f")).Message(11, Onnx.Value("token_type_ids"));
        g.Message(12, Onnx.Value("last_hidden_state"));
        Bytes = Onnx.Model(g);
    }

    /// <summary>The number of layers.</summary>
    public int Layers { get; }

    /// <summary>The encoded model.</summary>
    public byte[] Bytes { get; }

    /// <summary>The values written for each initializer, by initializer name.</summary>
    public IReadOnlyDictionary<string, float[]> Values => values;
}
