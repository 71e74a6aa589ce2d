namespace Headlight.Models.Loading;

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
