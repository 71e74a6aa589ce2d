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
