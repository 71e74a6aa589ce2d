namespace Headlight.Models.Loading;

/// <summary>One attribute of an ONNX node (the scalar, list and tensor kinds; graphs are not kept).</summary>
internal sealed class OnnxAttribute
{
    internal OnnxAttribute(string name, long type, float? floatValue, long? intValue, ReadOnlyMemory<byte> bytes, OnnxTensor? tensor, float[] floats, long[] ints)
    {
        Name = name;
        Type = type;
        Float = floatValue;
        Int = intValue;
        Bytes = bytes;
        Tensor = tensor;
        Floats = floats;
        Ints = ints;
    }

    /// <summary>The attribute's name.</summary>
    public string Name { get; }

    /// <summary>ONNX's <c>AttributeType</c> code (1 float, 2 int, 3 string, 4 tensor, 6 floats, 7 ints, …).</summary>
    public long Type { get; }

    /// <summary>The float value (<c>f</c>), if set.</summary>
    public float? Float { get; }

    /// <summary>The integer value (<c>i</c>), if set.</summary>
    public long? Int { get; }

    /// <summary>The string value's bytes (<c>s</c>), empty if unset.</summary>
    public ReadOnlyMemory<byte> Bytes { get; }

    /// <summary>The tensor value (<c>t</c>), if set.</summary>
    public OnnxTensor? Tensor { get; }

    /// <summary>The float list (<c>floats</c>).</summary>
    public IReadOnlyList<float> Floats { get; }

    /// <summary>The integer list (<c>ints</c>).</summary>
    public IReadOnlyList<long> Ints { get; }
}

/// <summary>One node of an ONNX graph.</summary>
internal sealed class OnnxNode
{
    internal OnnxNode(int index, string name, string opType, string[] inputs, string[] outputs, Dictionary<string, OnnxAttribute> attributes)
    {
        Index = index;
        Name = name;
        OpType = opType;
        Inputs = inputs;
        Outputs = outputs;
        Attributes = attributes;
    }

    /// <summary>The node's position in the graph's node list.</summary>
    public int Index { get; }

    /// <summary>The node's name (may be empty).</summary>
    public string Name { get; }

    /// <summary>The operator, e.g. <c>MatMul</c>.</summary>
    public string OpType { get; }

    /// <summary>Input value names (an empty name is an omitted optional input).</summary>
    public IReadOnlyList<string> Inputs { get; }

    /// <summary>Output value names.</summary>
    public IReadOnlyList<string> Outputs { get; }

    /// <summary>Attributes by name.</summary>
    public IReadOnlyDictionary<string, OnnxAttribute> Attributes { get; }

    /// <summary>An attribute, or null when the node has none of that name.</summary>
    public OnnxAttribute? Attribute(string name) => Attributes.TryGetValue(name, out var a) ? a : null;

    /// <inheritdoc />
    public override string ToString() => $"{OpType} '{Name}' ({string.Join(", ", Inputs)}) -> ({string.Join(", ", Outputs)})";
}

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
