using System.Globalization;
using System.Text.RegularExpressions;

namespace Headlight.Models.Loading;

/// <summary>
/// A BERT encoder recovered from an ONNX graph: its weights under Hugging Face names, its
/// configuration inferred from the graph, and the graph values worth capturing. Works from the graph
/// alone, with no per-model table: an unnamed matrix is named after the bias added to its product.
/// </summary>
internal sealed partial class BertOnnxImport
{
    private BertOnnxImport(OnnxModel graph, WeightSet weights, BertConfig config, string headsSource, string[] softmax, string hiddenState, string? pooler, string[] unidentified)
    {
        Graph = graph;
        Weights = weights;
        Config = config;
        HeadsSource = headsSource;
        AttentionProbabilities = softmax;
        HiddenStateOutput = hiddenState;
        PoolerOutput = pooler;
        Unidentified = unidentified;
    }

    /// <summary>The parsed graph.</summary>
    public OnnxModel Graph { get; }

    /// <summary>Every floating-point initializer as a weight; matrices named and marked <see cref="TensorLayout.InOut"/> (MatMul) or by Gemm's transB.</summary>
    public WeightSet Weights { get; }

    /// <summary>The configuration inferred from weight shapes and graph constants.</summary>
    public BertConfig Config { get; }

    /// <summary>How the number of heads was found (a graph Reshape constant, the score scale, or the caller's hint).</summary>
    public string HeadsSource { get; }

    /// <summary>Per layer, the Softmax output holding attention probabilities [batch, heads, query, key] (add it to the graph's outputs to capture it).</summary>
    public IReadOnlyList<string> AttentionProbabilities { get; }

    /// <summary>The graph's declared outputs.</summary>
    public IReadOnlyList<string> Outputs => Graph.Outputs;

    /// <summary>The declared output holding the final hidden states [batch, seq, hidden].</summary>
    public string HiddenStateOutput { get; }

    /// <summary>The declared output holding BERT's pooler tanh(W·h[CLS] + b) [batch, hidden], if the graph has one.</summary>
    public string? PoolerOutput { get; }

    /// <summary>Initializers multiplied by a MatMul/Gemm whose name could not be recovered (kept under their initializer names).</summary>
    public IReadOnlyList<string> Unidentified { get; }

    /// <summary>Loads an ONNX file and imports it.</summary>
    /// <param name="path">The ONNX file.</param>
    /// <param name="headsHint">The head count to use when the graph does not state it; checked against the graph when it does.</param>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The file is malformed or not a complete BERT encoder.</exception>
    public static BertOnnxImport Load(string path, int? headsHint = null) => Import(OnnxModel.Load(path), headsHint);

    /// <summary>Identifies weights, infers the configuration and finds the capture points of a BERT graph.</summary>
    /// <param name="graph">The parsed graph.</param>
    /// <param name="headsHint">The head count to use when the graph does not state it (e.g. from a model catalogue); checked against the graph when it does.</param>
    /// <exception cref="ModelFormatException">The graph is not a complete BERT encoder, or its facts disagree.</exception>
    public static BertOnnxImport Import(OnnxModel graph, int? headsHint = null)
    {
        ArgumentNullException.ThrowIfNull(graph);
        var (weights, unidentified) = IdentifyWeights(graph);
        string path = graph.FilePath;

        var words = weights.TryGet("embeddings.word_embeddings.weight") ?? throw new ModelFormatException(path, "embeddings.word_embeddings.weight", "a [vocab, hidden] initializer", "none");
        if (words.Shape.Length != 2)
        {
            throw new ModelFormatException(path, words.Source, "a [vocab, hidden] matrix", words.ShapeText);
        }

        int hidden = words.Shape[1];
        if (hidden <= 0 || words.Shape[0] <= 0)
        {
            throw new ModelFormatException(path, words.Source, "a non-empty [vocab, hidden] matrix", words.ShapeText);
        }

        int layers = CountLayers(weights, path);
        var up = weights.TryGet(BertWeights.Layer(0) + "intermediate.dense.weight") ?? throw new ModelFormatException(path, BertWeights.Layer(0) + "intermediate.dense.weight", "the first feed-forward matrix (a MatMul whose product gets intermediate.dense.bias added)", "none");
        if (up.Layout == TensorLayout.None)
        {
            throw new ModelFormatException(path, up.Source, "a matrix multiplied by a MatMul or Gemm", $"an initializer no MatMul uses, {up.ShapeText}");
        }

        var (heads, headsSource) = InferHeads(graph, weights, hidden, headsHint);
        var config = new BertConfig(
            hidden,
            layers,
            heads,
            up.OutFeatures,
            InferActivation(graph),
            FirstDim(weights, "embeddings.position_embeddings.weight", path),
            InferEpsilon(graph),
            words.Shape[0],
            FirstDim(weights, "embeddings.token_type_embeddings.weight", path));
        config.Validate(path);
        CheckScoreScales(graph, hidden / heads);

        string? pooler = graph.Outputs.FirstOrDefault(o => graph.Producer(o)?.OpType == "Tanh");
        BertWeights.Validate(weights, config, requirePooler: pooler is not null);
        string hiddenState = graph.Outputs.Contains("last_hidden_state") ? "last_hidden_state"
            : graph.Outputs.FirstOrDefault(o => o != pooler) ?? throw new ModelFormatException(path, "graph.output", "a hidden-state output", "none");
        string[] softmax = FindSoftmax(graph, weights, layers);
        return new BertOnnxImport(graph, weights, config, headsSource, softmax, hiddenState, pooler, unidentified);
    }

    /// <summary>
    /// Names every MatMul/Gemm matrix after the bias added to its product, and keeps every other
    /// floating-point initializer under its own (canonical) name.
    /// </summary>
    private static (WeightSet, string[]) IdentifyWeights(OnnxModel graph)
    {
        var names = new Dictionary<string, (string Name, TensorLayout Layout)>(StringComparer.Ordinal);
        var unidentified = new List<string>();
        foreach (var node in graph.Nodes)
        {
            bool gemm = node.OpType == "Gemm";
            if (!(gemm || node.OpType == "MatMul") || node.Inputs.Count < 2 || node.Outputs.Count < 1)
            {
                continue;
            }

            string matrix = node.Inputs[1];
            if (!graph.Initializers.TryGetValue(matrix, out var tensor) || !tensor.IsFloatingPoint || tensor.Dims.Count != 2)
            {
                continue;
            }

            if (gemm && node.Attribute("transA")?.Int is 1)
            {
                continue;
            }

            var layout = gemm && node.Attribute("transB")?.Int is 1 ? TensorLayout.OutIn : TensorLayout.InOut;
            string? bias = gemm && node.Inputs.Count > 2 ? node.Inputs[2] : BiasAddedTo(graph, node.Outputs[0]);
            string name;
            if (bias is not null && bias.EndsWith(".bias", StringComparison.Ordinal) && graph.Initializers.ContainsKey(bias))
            {
                name = BertWeights.Canonical(bias[..^".bias".Length] + ".weight");
            }
            else
            {
                name = BertWeights.Canonical(matrix);
                unidentified.Add(matrix);
            }

            if (names.TryGetValue(matrix, out var previous) && previous != (name, layout))
            {
                throw new ModelFormatException(graph.FilePath, matrix, "one role per weight matrix", $"'{previous.Name}' and '{name}'");
            }

            names[matrix] = (name, layout);
        }

        var weights = new WeightSet(graph.FilePath);
        foreach (var (initializerName, tensor) in graph.Initializers)
        {
            if (!tensor.IsFloatingPoint)
            {
                continue;
            }

            var (name, layout) = names.TryGetValue(initializerName, out var found) ? found : (BertWeights.Canonical(initializerName), TensorLayout.None);
            weights.Add(new Weight(name, tensor.ShapeInt32(), tensor.ToFloat32(), layout, initializerName));
        }

        return (weights, unidentified.Distinct().ToArray());
    }

    /// <summary>The initializer added to <paramref name="product"/> by its only consumer, an Add; null otherwise.</summary>
    private static string? BiasAddedTo(OnnxModel graph, string product)
    {
        var consumers = graph.Consumers(product);
        if (consumers.Count != 1 || consumers[0] is not { OpType: "Add" } add || add.Inputs.Count != 2)
        {
            return null;
        }

        string other = add.Inputs[0] == product ? add.Inputs[1] : add.Inputs[0];
        return graph.Initializers.ContainsKey(other) ? other : null;
    }

    private static int CountLayers(WeightSet weights, string path)
    {
        var indices = new SortedSet<int>();
        foreach (string name in weights.Names)
        {
            var match = LayerIndex().Match(name);
            if (match.Success)
            {
                if (!int.TryParse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int index))
                {
                    throw new ModelFormatException(path, name, "a layer index below 2^31", match.Groups[1].Value);
                }

                indices.Add(index);
            }
        }

        if (indices.Count == 0 || indices.Min != 0 || indices.Max != indices.Count - 1)
        {
            throw new ModelFormatException(path, "encoder.layer.{i}", "layers numbered 0..n-1", indices.Count == 0 ? "no layers" : "[" + string.Join(", ", indices) + "]");
        }

        return indices.Count;
    }

    private static int FirstDim(WeightSet weights, string name, string path)
    {
        var w = weights.TryGet(name) ?? throw new ModelFormatException(path, name, "an initializer", "none");
        return w.Shape.Length == 2 ? w.Shape[0] : throw new ModelFormatException(path, name, "a 2-D table", w.ShapeText);
    }

    /// <summary>
    /// Heads from the graph: the Reshape that splits the query projection into [batch, seq, heads,
    /// headDim] (its shape's last two entries are constants), cross-checked against the score scale
    /// 1/sqrt(headDim); the hint is used only when the graph states neither.
    /// </summary>
    private static (int Heads, string Source) InferHeads(OnnxModel graph, WeightSet weights, int hidden, int? hint)
    {
        string path = graph.FilePath;
        var query = weights.TryGet(BertWeights.Layer(0) + "attention.self.query.weight")
            ?? throw new ModelFormatException(path, BertWeights.Layer(0) + "attention.self.query.weight", "the query matrix (a MatMul whose product gets attention.self.query.bias added)", "none");
        var matmul = graph.Nodes.FirstOrDefault(n => (n.OpType is "MatMul" or "Gemm") && n.Inputs.Count > 1 && n.Inputs[1] == query.Source && n.Outputs.Count > 0)
            ?? throw new ModelFormatException(path, query.Source, "the query matrix as a MatMul or Gemm input", "an initializer no MatMul uses");

        int? fromReshape = null;
        int? fromScale = null;
        string projected = matmul.OpType == "Gemm" ? matmul.Outputs[0] : graph.Consumers(matmul.Outputs[0]).FirstOrDefault(n => n.Outputs.Count > 0)?.Outputs[0] ?? matmul.Outputs[0];
        foreach (var reshape in graph.Consumers(projected).Where(n => n.OpType == "Reshape" && n.Inputs.Count > 1 && n.Inputs[0] == projected))
        {
            long?[] shape = ShapeEntries(graph, reshape.Inputs[1]);
            if (shape.Length < 2)
            {
                continue;
            }

            // [batch, seq, heads, headDim]: either constant may be -1 (inferred by Reshape).
            long? h = shape[^2];
            long? headDim = shape[^1];
            if (h > 0 && (headDim is null or -1 || h * headDim == hidden) && hidden % h == 0)
            {
                fromReshape = (int)h;
                break;
            }

            if (headDim > 0 && hidden % headDim == 0)
            {
                fromReshape = (int)(hidden / headDim.Value);
                break;
            }
        }

        // The first Softmax's scores are scaled by 1/sqrt(headDim), as Div(c) or Mul(1/c).
        var softmax = graph.Nodes.FirstOrDefault(n => n.OpType == "Softmax" && n.Inputs.Count > 0);
        if (softmax is not null && ScoreScale(graph, softmax.Inputs[0]) is double scale && scale > 0)
        {
            double headDim = 1 / (scale * scale);
            long rounded = (long)Math.Round(headDim);
            if (rounded > 0 && Math.Abs(headDim - rounded) < 1e-3 * rounded && hidden % rounded == 0)
            {
                fromScale = (int)(hidden / rounded);
            }
        }

        if (fromReshape is int a && fromScale is int b && a != b)
        {
            throw new ModelFormatException(path, "attention heads", $"one head count (the query Reshape says {a})", $"a score scale implying {b}");
        }

        int? fromGraph = fromReshape ?? fromScale;
        if (fromGraph is int heads)
        {
            if (hint is int h && h != heads)
            {
                throw new ModelFormatException(path, "attention heads", $"{h} heads (the caller's hint)", $"{heads} in the graph");
            }

            string source = fromReshape is not null
                ? $"query Reshape constant [.., {heads}, {hidden / heads}]" + (fromScale is not null ? $", matching the score scale 1/sqrt({hidden / heads})" : string.Empty)
                : $"score scale 1/sqrt({hidden / heads})";
            return (heads, source);
        }

        return hint is int given
            ? (given, "caller's hint (the graph states no head count)")
            : throw new ModelFormatException(path, "attention heads", "a Reshape constant or score scale stating the head count, or a hint", "neither");
    }

    /// <summary>The entries of a shape value: a constant, or a Concat of constants and computed parts (null where unknown).</summary>
    private static long?[] ShapeEntries(OnnxModel graph, string value)
    {
        if (graph.ConstantValue(value) is { } constant && !constant.IsFloatingPoint)
        {
            return constant.ToInt64().Select(v => (long?)v).ToArray();
        }

        var producer = graph.Producer(value);
        if (producer is not { OpType: "Concat" })
        {
            return [];
        }

        var entries = new List<long?>();
        foreach (string part in producer.Inputs)
        {
            var c = graph.ConstantValue(part);
            if (c is not null && !c.IsFloatingPoint)
            {
                entries.AddRange(c.ToInt64().Select(v => (long?)v));
            }
            else
            {
                entries.Add(null);
            }
        }

        return entries.ToArray();
    }

    /// <summary>
    /// Every Softmax whose scores are scaled by a constant (Div by c or Mul by c) must use 1/sqrt(headDim), the scale the
    /// kernels apply, within 1e-6 relative: a graph with another scale (3, 0, NaN, ∞) would run as if it had 1/sqrt(headDim).
    /// A graph that scales its scores in a way this does not trace (e.g. the query before the product) is not checked.
    /// </summary>
    private static void CheckScoreScales(OnnxModel graph, int headDim)
    {
        double expected = 1 / Math.Sqrt(headDim);
        foreach (var softmax in graph.Nodes.Where(n => n.OpType == "Softmax" && n.Inputs.Count > 0))
        {
            if (ScoreScaleNode(graph, softmax.Inputs[0]) is not (double scale, OnnxNode node))
            {
                continue;
            }

            if (!(Math.Abs(scale - expected) <= 1e-6 * expected))
            {
                string constant = node.OpType == "Div" ? $"Div by {(1 / scale).ToString("R", CultureInfo.InvariantCulture)}" : $"Mul by {scale.ToString("R", CultureInfo.InvariantCulture)}";
                throw new ModelFormatException(
                    graph.FilePath,
                    $"{node.OpType} node '{node.Name}' (output {node.Outputs.FirstOrDefault()}, scaling the scores of Softmax '{softmax.Name}')",
                    $"the attention score scale 1/sqrt({headDim}) = {expected.ToString("R", CultureInfo.InvariantCulture)} (Div by {Math.Sqrt(headDim).ToString("R", CultureInfo.InvariantCulture)} or Mul by its inverse)",
                    constant);
            }
        }
    }

    /// <summary>The factor scores are multiplied by before the mask and Softmax, following Add (mask) back to Div or Mul by a constant.</summary>
    private static double? ScoreScale(OnnxModel graph, string value) => ScoreScaleNode(graph, value)?.Scale;

    /// <summary>As <see cref="ScoreScale"/>, with the Div or Mul node that applies it; Div by 0 gives an infinite scale.</summary>
    private static (double Scale, OnnxNode Node)? ScoreScaleNode(OnnxModel graph, string value)
    {
        for (int step = 0; step < 4; step++)
        {
            var node = graph.Producer(value);
            if (node is null || node.Inputs.Count < 2)
            {
                return null;
            }

            double? left = graph.ConstantValue(node.Inputs[0])?.ScalarValue();
            double? right = graph.ConstantValue(node.Inputs[1])?.ScalarValue();
            switch (node.OpType)
            {
                case "Div" when right is double c:
                    return (1 / c, node);
                case "Mul" when (right ?? left) is double c:
                    return (c, node);
                case "Add" or "Where":
                    // Masking: follow the branch that is not the mask (the one produced by the scores).
                    value = node.Inputs.FirstOrDefault(i => graph.Producer(i)?.OpType is "Div" or "MatMul")
                        ?? node.Inputs.FirstOrDefault(i => graph.Producer(i)?.OpType is "Mul" && graph.Producer(i)!.Inputs.Any(x => graph.Producer(x)?.OpType == "MatMul"))
                        ?? node.Inputs[0];
                    break;
                default:
                    return null;
            }
        }

        return null;
    }

    /// <summary>LayerNorm's epsilon: a LayerNormalization node's attribute, or the constant added to the variance in a decomposed LayerNorm.</summary>
    private static double InferEpsilon(OnnxModel graph)
    {
        var values = new List<float>();
        foreach (var node in graph.Nodes)
        {
            if (node.OpType == "LayerNormalization")
            {
                values.Add(node.Attribute("epsilon")?.Float ?? 1e-5f);
            }
            else if (node.OpType == "Sqrt" && node.Inputs.Count > 0 && graph.Producer(node.Inputs[0]) is { OpType: "Add" } add && add.Inputs.Count == 2)
            {
                // sqrt(ReduceMean((x - mean)^2) + eps)
                int variance = add.Inputs.ToList().FindIndex(i => graph.Producer(i)?.OpType == "ReduceMean");
                if (variance >= 0 && graph.ConstantValue(add.Inputs[1 - variance])?.ScalarValue() is double eps)
                {
                    values.Add((float)eps);
                }
            }
        }

        if (values.Count == 0)
        {
            throw new ModelFormatException(graph.FilePath, "LayerNorm epsilon", "a LayerNormalization node or a decomposed LayerNorm (Sqrt of variance + constant)", "neither");
        }

        if (values.Distinct().Count() != 1)
        {
            throw new ModelFormatException(graph.FilePath, "LayerNorm epsilon", "one epsilon for every LayerNorm", string.Join(", ", values.Distinct()));
        }

        // The graph holds a float32; report the decimal it was written from (1e-12, not 9.99999996e-13).
        return double.Parse(values[0].ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
    }

    /// <summary>The feed-forward activation: an Erf node means exact GELU; a Gelu node says which; a Tanh of a cubic, the tanh form.</summary>
    private static ActivationFunction InferActivation(OnnxModel graph)
    {
        if (graph.Nodes.Any(n => n.OpType == "Erf"))
        {
            return ActivationFunction.GeluErf;
        }

        var gelu = graph.Nodes.FirstOrDefault(n => n.OpType is "Gelu" or "FastGelu");
        if (gelu is not null)
        {
            string approximate = System.Text.Encoding.UTF8.GetString((gelu.Attribute("approximate")?.Bytes ?? ReadOnlyMemory<byte>.Empty).Span);
            return gelu.OpType == "FastGelu" || approximate == "tanh" ? ActivationFunction.GeluTanh : ActivationFunction.GeluErf;
        }

        if (graph.Nodes.Any(n => n.OpType == "Pow" && n.Inputs.Count > 1 && graph.ConstantValue(n.Inputs[1])?.ScalarValue() == 3) && graph.Nodes.Any(n => n.OpType == "Tanh"))
        {
            return ActivationFunction.GeluTanh;
        }

        if (graph.Nodes.Any(n => n.OpType == "Relu"))
        {
            return ActivationFunction.Relu;
        }

        throw new ModelFormatException(graph.FilePath, "activation", "Erf, Gelu, a tanh-form GELU or Relu nodes", "none of them");
    }

    /// <summary>Each layer's Softmax, matched to its layer by the nearest projection it reads from.</summary>
    private static string[] FindSoftmax(OnnxModel graph, WeightSet weights, int layers)
    {
        var layerOfMatrix = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string name in weights.Names)
        {
            var match = LayerIndex().Match(name);
            if (match.Success && weights[name].Layout != TensorLayout.None)
            {
                // CountLayers has already checked every index parses.
                layerOfMatrix[weights[name].Source] = int.Parse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture);
            }
        }

        var result = new string?[layers];
        foreach (var softmax in graph.Nodes.Where(n => n.OpType == "Softmax"))
        {
            if (softmax.Outputs.Count == 0)
            {
                throw new ModelFormatException(graph.FilePath, $"Softmax '{softmax.Name}'", "an output", "none");
            }

            int layer = NearestLayer(graph, softmax, layerOfMatrix);
            if (layer < 0 || layer >= layers)
            {
                throw new ModelFormatException(graph.FilePath, $"Softmax '{softmax.Name}'", "a Softmax reading one layer's attention scores", "no projection of a known layer before it");
            }

            if (result[layer] is not null)
            {
                throw new ModelFormatException(graph.FilePath, $"Softmax '{softmax.Name}'", $"one Softmax in layer {layer}", "a second one");
            }

            result[layer] = softmax.Outputs[0];
        }

        int missing = Array.IndexOf(result, null);
        if (missing >= 0)
        {
            throw new ModelFormatException(graph.FilePath, $"layer {missing} Softmax", "one Softmax per layer", "none");
        }

        return result!;
    }

    /// <summary>Breadth-first search back from a node to the nearest MatMul/Gemm whose matrix belongs to a layer.</summary>
    private static int NearestLayer(OnnxModel graph, OnnxNode start, Dictionary<string, int> layerOfMatrix)
    {
        var queue = new Queue<OnnxNode>([start]);
        var seen = new HashSet<OnnxNode> { start };
        while (queue.Count > 0 && seen.Count < 256)
        {
            var node = queue.Dequeue();
            foreach (string input in node.Inputs)
            {
                if (layerOfMatrix.TryGetValue(input, out int layer) && node.OpType is "MatMul" or "Gemm")
                {
                    return layer;
                }

                if (graph.Producer(input) is { } producer && seen.Add(producer))
                {
                    queue.Enqueue(producer);
                }
            }
        }

        return -1;
    }

    [GeneratedRegex(@"^encoder\.layer\.(\d+)\.")]
    private static partial Regex LayerIndex();
}
