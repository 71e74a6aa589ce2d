namespace Headlight.Models.Loading;

/// <summary>
/// An ONNX model's main graph read with protobuf's wire format (no generated code): nodes,
/// initializers, inputs and outputs. The file is read once into memory; initializer payloads are
/// slices of those bytes. Every malformed input is a <see cref="ModelFormatException"/>.
/// </summary>
internal sealed class OnnxModel
{
    private readonly Dictionary<string, OnnxNode> producers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<OnnxNode>> consumers = new(StringComparer.Ordinal);

    internal OnnxModel(string filePath, string producerName, IReadOnlyDictionary<string, long> opsets, List<OnnxNode> nodes, Dictionary<string, OnnxTensor> initializers, List<string> inputs, List<string> outputs)
    {
        FilePath = filePath;
        ProducerName = producerName;
        Opsets = opsets;
        Nodes = nodes;
        Initializers = initializers;
        Inputs = inputs;
        Outputs = outputs;
        foreach (var node in nodes)
        {
            foreach (string output in node.Outputs)
            {
                if (output.Length > 0)
                {
                    producers.TryAdd(output, node);
                }
            }

            foreach (string input in node.Inputs)
            {
                if (input.Length == 0)
                {
                    continue;
                }

                if (!consumers.TryGetValue(input, out var list))
                {
                    consumers[input] = list = [];
                }

                // A node that reads one value twice (x * x) is one consumer.
                if (list.Count == 0 || list[^1] != node)
                {
                    list.Add(node);
                }
            }
        }
    }

    /// <summary>The file the model was read from.</summary>
    public string FilePath { get; }

    /// <summary>The exporter that wrote the model.</summary>
    public string ProducerName { get; }

    /// <summary>Operator set versions by domain (empty string = default ONNX domain).</summary>
    public IReadOnlyDictionary<string, long> Opsets { get; }

    /// <summary>The graph's nodes in file order (ONNX requires topological order).</summary>
    public IReadOnlyList<OnnxNode> Nodes { get; }

    /// <summary>Initializers by name.</summary>
    public IReadOnlyDictionary<string, OnnxTensor> Initializers { get; }

    /// <summary>The graph's declared inputs (initializers listed as inputs excluded).</summary>
    public IReadOnlyList<string> Inputs { get; }

    /// <summary>The graph's declared outputs.</summary>
    public IReadOnlyList<string> Outputs { get; }

    /// <summary>Reads and validates an ONNX model file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The file is not a well-formed ONNX model this reader supports.</exception>
    public static OnnxModel Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"ONNX file not found: {path}", path);
        }

        long length = new FileInfo(path).Length;
        if (length > Array.MaxLength)
        {
            throw new ModelFormatException(path, "file", "an ONNX file under 2 GiB (protobuf's limit; larger models keep weights as external data, which is not supported)", $"{length} bytes");
        }

        return Parse(File.ReadAllBytes(path), path);
    }

    /// <summary>Parses model bytes; <paramref name="filePath"/> names the source in errors.</summary>
    internal static OnnxModel Parse(byte[] bytes, string filePath) => new OnnxParser(bytes, filePath).ParseModel();

    /// <summary>The node that produces a value, or null for graph inputs, initializers and unknown names.</summary>
    public OnnxNode? Producer(string value) => producers.TryGetValue(value, out var node) ? node : null;

    /// <summary>The nodes that read a value, in graph order.</summary>
    public IReadOnlyList<OnnxNode> Consumers(string value) => consumers.TryGetValue(value, out var list) ? list : [];

    /// <summary>A constant's tensor: an initializer of that name, or the value of the Constant node producing it; null otherwise.</summary>
    public OnnxTensor? ConstantValue(string value)
    {
        if (Initializers.TryGetValue(value, out var tensor))
        {
            return tensor;
        }

        var node = Producer(value);
        return node is { OpType: "Constant" } ? node.Attribute("value")?.Tensor : null;
    }

    /// <summary>The size in bytes of one element of <paramref name="dataType"/>.</summary>
    public static int ElementSize(OnnxDataType dataType) => dataType switch
    {
        OnnxDataType.UInt8 or OnnxDataType.Int8 or OnnxDataType.Bool => 1,
        OnnxDataType.UInt16 or OnnxDataType.Int16 or OnnxDataType.Float16 or OnnxDataType.BFloat16 => 2,
        OnnxDataType.Float or OnnxDataType.Int32 or OnnxDataType.UInt32 => 4,
        OnnxDataType.Int64 or OnnxDataType.Double or OnnxDataType.UInt64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dataType), dataType, "Unknown ONNX data type."),
    };
}
