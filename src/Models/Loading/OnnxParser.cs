using System.Text;
using Google.Protobuf;

namespace Headlight.Models.Loading;

/// <summary>
/// Reads the parts of ONNX's protobuf messages Headlight needs, field by field with
/// <see cref="CodedInputStream"/>. Unknown fields of every wire type are skipped; known fields with
/// the wrong wire type, truncated or malformed data, and tensors whose payload does not match their
/// shape become <see cref="ModelFormatException"/>s naming the field path.
/// </summary>
internal sealed class OnnxParser
{
    private const int StringType = 8;

    private readonly byte[] bytes;
    private readonly string path;
    private readonly List<string> where = [];

    public OnnxParser(byte[] bytes, string path)
    {
        this.bytes = bytes;
        this.path = path;
    }

    /// <summary>One field of a message: its number and wire type, and its value (scalars) or payload range (length-delimited).</summary>
    private readonly record struct Field(int Number, WireFormat.WireType Wire, ulong Value, int Start, int Length);

    public OnnxModel ParseModel()
    {
        try
        {
            return ParseModelCore();
        }
        catch (InvalidProtocolBufferException e)
        {
            throw Error("well-formed protobuf", e.Message, e);
        }
    }

    private OnnxModel ParseModelCore()
    {
        where.Add("ModelProto");
        string producer = string.Empty;
        var opsets = new Dictionary<string, long>(StringComparer.Ordinal);
        OnnxModel? model = null;
        foreach (var f in Fields(0, bytes.Length))
        {
            switch (f.Number)
            {
                case 1:
                    _ = Int(f, "ir_version"); // not used, but a malformed one is still an error
                    break;
                case 2:
                    producer = Str(f, "producer_name");
                    break;
                case 7:
                    if (model is not null)
                    {
                        throw Error("one graph (field 7)", "a second graph");
                    }

                    model = Within("graph", () => ParseGraph(f, producer, opsets));
                    break;
                case 8:
                    Within("opset_import", () => ParseOpset(f, opsets));
                    break;
            }
        }

        return model ?? throw Error("a graph (ModelProto field 7)", "none; is this an ONNX model?");
    }

    private void ParseOpset(Field message, Dictionary<string, long> opsets)
    {
        Expect(message, WireFormat.WireType.LengthDelimited, "OperatorSetIdProto");
        string domain = string.Empty;
        long version = 0;
        foreach (var f in Fields(message.Start, message.Length))
        {
            switch (f.Number)
            {
                case 1:
                    domain = Str(f, "domain");
                    break;
                case 2:
                    version = Int(f, "version");
                    break;
            }
        }

        opsets[domain] = version;
    }

    private OnnxModel ParseGraph(Field message, string producer, Dictionary<string, long> opsets)
    {
        Expect(message, WireFormat.WireType.LengthDelimited, "GraphProto");
        var nodes = new List<OnnxNode>();
        var initializers = new Dictionary<string, OnnxTensor>(StringComparer.Ordinal);
        var inputs = new List<string>();
        var outputs = new List<string>();
        foreach (var f in Fields(message.Start, message.Length))
        {
            switch (f.Number)
            {
                case 1:
                    nodes.Add(Within($"node[{nodes.Count}]", () => ParseNode(f, nodes.Count)));
                    break;
                case 2:
                    _ = Str(f, "name"); // not used, but a malformed one is still an error
                    break;
                case 5:
                    var tensor = Within($"initializer[{initializers.Count}]", () => ParseTensor(f));
                    if (!initializers.TryAdd(tensor.Name, tensor))
                    {
                        throw Error("unique initializer names", $"'{tensor.Name}' twice");
                    }

                    break;
                case 11:
                    inputs.Add(Within($"input[{inputs.Count}]", () => ParseValueInfoName(f)));
                    break;
                case 12:
                    outputs.Add(Within($"output[{outputs.Count}]", () => ParseValueInfoName(f)));
                    break;
                case 15:
                    throw Error("dense initializers", "a sparse initializer (not supported)");
            }
        }

        // Older exporters also list every initializer as a graph input.
        inputs.RemoveAll(initializers.ContainsKey);
        return new OnnxModel(path, producer, opsets, nodes, initializers, inputs, outputs);
    }

    private string ParseValueInfoName(Field message)
    {
        Expect(message, WireFormat.WireType.LengthDelimited, "ValueInfoProto");
        string name = string.Empty;
        foreach (var f in Fields(message.Start, message.Length))
        {
            if (f.Number == 1)
            {
                name = Str(f, "name");
            }
        }

        return name;
    }

    private OnnxNode ParseNode(Field message, int index)
    {
        Expect(message, WireFormat.WireType.LengthDelimited, "NodeProto");
        var inputs = new List<string>();
        var outputs = new List<string>();
        var attributes = new Dictionary<string, OnnxAttribute>(StringComparer.Ordinal);
        string name = string.Empty;
        string opType = string.Empty;
        foreach (var f in Fields(message.Start, message.Length))
        {
            switch (f.Number)
            {
                case 1:
                    inputs.Add(Str(f, "input"));
                    break;
                case 2:
                    outputs.Add(Str(f, "output"));
                    break;
                case 3:
                    name = Str(f, "name");
                    break;
                case 4:
                    opType = Str(f, "op_type");
                    break;
                case 5:
                    var attribute = Within($"attribute[{attributes.Count}]", () => ParseAttribute(f));
                    if (!attributes.TryAdd(attribute.Name, attribute))
                    {
                        throw Error("unique attribute names", $"'{attribute.Name}' twice");
                    }

                    break;
                case 7:
                    _ = Str(f, "domain"); // not used, but a malformed one is still an error
                    break;
            }
        }

        if (opType.Length == 0)
        {
            throw Error("an op_type", $"none (node '{name}')");
        }

        return new OnnxNode(index, name, opType, inputs.ToArray(), outputs.ToArray(), attributes);
    }

    private OnnxAttribute ParseAttribute(Field message)
    {
        Expect(message, WireFormat.WireType.LengthDelimited, "AttributeProto");
        string name = string.Empty;
        long type = 0;
        float? floatValue = null;
        long? intValue = null;
        ReadOnlyMemory<byte> stringValue = ReadOnlyMemory<byte>.Empty;
        OnnxTensor? tensor = null;
        var floats = new List<double>();
        var ints = new List<long>();
        foreach (var f in Fields(message.Start, message.Length))
        {
            switch (f.Number)
            {
                case 1:
                    name = Str(f, "name");
                    break;
                case 2:
                    Expect(f, WireFormat.WireType.Fixed32, "f");
                    floatValue = BitConverter.Int32BitsToSingle((int)(uint)f.Value);
                    break;
                case 3:
                    intValue = Int(f, "i");
                    break;
                case 4:
                    Expect(f, WireFormat.WireType.LengthDelimited, "s");
                    stringValue = new ReadOnlyMemory<byte>(bytes, f.Start, f.Length);
                    break;
                case 5:
                    tensor = Within("t", () => ParseTensor(f));
                    break;
                case 7:
                    Within("floats", () => ReadReals(f, floats, WireFormat.WireType.Fixed32));
                    break;
                case 8:
                    Within("ints", () => ReadVarints(f, ints));
                    break;
                case 20:
                    type = Int(f, "type");
                    break;
            }
        }

        return new OnnxAttribute(name, type, floatValue, intValue, stringValue, tensor, floats.Select(v => (float)v).ToArray(), ints.ToArray());
    }

    private OnnxTensor ParseTensor(Field message)
    {
        Expect(message, WireFormat.WireType.LengthDelimited, "TensorProto");
        var dims = new List<long>();
        long dataType = 0;
        string name = string.Empty;
        ReadOnlyMemory<byte>? raw = null;
        var realFields = new List<Field>();
        var integerValues = new List<long>();
        int integerField = 0;
        int realField = 0;
        bool hasStrings = false;
        foreach (var f in Fields(message.Start, message.Length))
        {
            switch (f.Number)
            {
                case 1:
                    Within("dims", () => ReadVarints(f, dims));
                    break;
                case 2:
                    dataType = Int(f, "data_type");
                    break;
                case 3:
                    throw Error("an unsegmented tensor", "a segment (not supported)");
                case 4 or 10:
                    if (realField != 0 && realField != f.Number)
                    {
                        throw Error("one of float_data or double_data", "both");
                    }

                    realField = f.Number;
                    realFields.Add(f);
                    break;
                case 5 or 7 or 11:
                    if (integerField != 0 && integerField != f.Number)
                    {
                        throw Error("one of int32_data, int64_data or uint64_data", "several");
                    }

                    integerField = f.Number;
                    Within(f.Number switch { 5 => "int32_data", 7 => "int64_data", _ => "uint64_data" }, () => ReadVarints(f, integerValues));
                    break;
                case 6:
                    hasStrings = true;
                    break;
                case 8:
                    name = Str(f, "name");
                    where[^1] += $" '{name}'";
                    break;
                case 9:
                    Expect(f, WireFormat.WireType.LengthDelimited, "raw_data");
                    if (raw is not null)
                    {
                        throw Error("one raw_data field", "two");
                    }

                    raw = new ReadOnlyMemory<byte>(bytes, f.Start, f.Length);
                    break;
                case 13:
                    throw Error("weights stored inside the model", "external_data (weights in a separate file are not supported)");
                case 14:
                    if (Int(f, "data_location") != 0)
                    {
                        throw Error("data_location DEFAULT", "EXTERNAL (weights in a separate file are not supported)");
                    }

                    break;
            }
        }

        if (dataType == StringType || hasStrings)
        {
            throw Error("a numeric data type", "a string tensor (not supported)");
        }

        if (!Enum.IsDefined(typeof(OnnxDataType), (int)Math.Clamp(dataType, int.MinValue, int.MaxValue)))
        {
            throw Error("a supported data_type (float, float16, bfloat16, double, int8-64, uint8-64, bool)", $"{dataType}");
        }

        var type = (OnnxDataType)dataType;
        long count = 1;
        long byteCount;
        try
        {
            foreach (long d in dims)
            {
                if (d < 0)
                {
                    throw Error("non-negative dims", "[" + string.Join(", ", dims) + "]");
                }

                count = checked(count * d);
            }

            byteCount = checked(count * OnnxModel.ElementSize(type));
        }
        catch (OverflowException)
        {
            throw Error("dims whose size fits 64 bits", "[" + string.Join(", ", dims) + "], which overflows");
        }

        string shape = "[" + string.Join(", ", dims) + "]";
        bool hasTyped = realFields.Count > 0 || integerField != 0;
        if (raw is { } rawData)
        {
            if (hasTyped)
            {
                throw Error("raw_data or typed data, not both", "both");
            }

            if (rawData.Length != byteCount)
            {
                throw Error($"raw_data of {byteCount} bytes for {type} {shape}", $"{rawData.Length} bytes");
            }

            return new OnnxTensor(path, name, type, dims.ToArray(), count, rawData, null, null);
        }

        if (!hasTyped)
        {
            if (count != 0)
            {
                throw Error($"data for {count} elements of {type} {shape}", "no data");
            }

            return new OnnxTensor(path, name, type, dims.ToArray(), count, ReadOnlyMemory<byte>.Empty, null, null);
        }

        int expectedField = type switch
        {
            OnnxDataType.Float => 4,
            OnnxDataType.Double => 10,
            OnnxDataType.Int64 => 7,
            OnnxDataType.UInt32 or OnnxDataType.UInt64 => 11,
            _ => 5,
        };

        int presentField = realField != 0 ? realField : integerField;
        if (presentField != expectedField || (realField != 0 && integerField != 0))
        {
            throw Error($"{type} data in field {expectedField}", $"data in field {presentField}{(realField != 0 && integerField != 0 ? $" and {integerField}" : string.Empty)}");
        }

        if (realField != 0)
        {
            var wire = realField == 4 ? WireFormat.WireType.Fixed32 : WireFormat.WireType.Fixed64;
            int size = realField == 4 ? 4 : 8;

            // One packed run is already little-endian element bytes: keep it as a slice.
            if (realFields.Count == 1 && realFields[0].Wire == WireFormat.WireType.LengthDelimited)
            {
                var run = realFields[0];
                if (run.Length % size != 0 || run.Length != byteCount)
                {
                    throw Error($"{count} packed values ({byteCount} bytes) for {type} {shape}", $"{run.Length} bytes");
                }

                return new OnnxTensor(path, name, type, dims.ToArray(), count, new ReadOnlyMemory<byte>(bytes, run.Start, run.Length), null, null);
            }

            var reals = new List<double>();
            foreach (var f in realFields)
            {
                ReadReals(f, reals, wire);
            }

            if (reals.Count != count)
            {
                throw Error($"{count} values for {type} {shape}", $"{reals.Count}");
            }

            return new OnnxTensor(path, name, type, dims.ToArray(), count, ReadOnlyMemory<byte>.Empty, reals.ToArray(), null);
        }

        if (integerValues.Count != count)
        {
            throw Error($"{count} values for {type} {shape}", $"{integerValues.Count}");
        }

        return new OnnxTensor(path, name, type, dims.ToArray(), count, ReadOnlyMemory<byte>.Empty, null, integerValues.ToArray());
    }

    /// <summary>Reads a repeated varint field, packed or not.</summary>
    private void ReadVarints(Field f, List<long> into)
    {
        if (f.Wire == WireFormat.WireType.Varint)
        {
            into.Add((long)f.Value);
            return;
        }

        Expect(f, WireFormat.WireType.LengthDelimited, "a packed varint list");
        var input = new CodedInputStream(bytes, f.Start, f.Length);
        while (!input.IsAtEnd)
        {
            into.Add((long)input.ReadUInt64());
        }
    }

    /// <summary>Reads a repeated fixed-width float or double field, packed or not.</summary>
    private void ReadReals(Field f, List<double> into, WireFormat.WireType element)
    {
        int size = element == WireFormat.WireType.Fixed32 ? 4 : 8;
        if (f.Wire == element)
        {
            into.Add(size == 4 ? BitConverter.Int32BitsToSingle((int)(uint)f.Value) : BitConverter.Int64BitsToDouble((long)f.Value));
            return;
        }

        Expect(f, WireFormat.WireType.LengthDelimited, "a packed list");
        if (f.Length % size != 0)
        {
            throw Error($"a multiple of {size} bytes", $"{f.Length} bytes");
        }

        var span = new ReadOnlySpan<byte>(bytes, f.Start, f.Length);
        for (int i = 0; i < span.Length; i += size)
        {
            into.Add(size == 4 ? BitConverter.ToSingle(span.Slice(i, 4)) : BitConverter.ToDouble(span.Slice(i, 8)));
        }
    }

    /// <summary>The fields of the message stored in bytes [start, start + length).</summary>
    private IEnumerable<Field> Fields(int start, int length)
    {
        var input = new CodedInputStream(bytes, start, length);
        while (true)
        {
            uint tag = input.ReadTag();
            if (tag == 0)
            {
                yield break;
            }

            int number = WireFormat.GetTagFieldNumber(tag);
            var wire = WireFormat.GetTagWireType(tag);
            switch (wire)
            {
                case WireFormat.WireType.Varint:
                    yield return new Field(number, wire, input.ReadUInt64(), 0, 0);
                    break;
                case WireFormat.WireType.Fixed32:
                    yield return new Field(number, wire, input.ReadFixed32(), 0, 0);
                    break;
                case WireFormat.WireType.Fixed64:
                    yield return new Field(number, wire, input.ReadFixed64(), 0, 0);
                    break;
                case WireFormat.WireType.LengthDelimited:
                    // Skipping validates the length against the message's end; the payload is the
                    // last 'length' bytes of what was skipped.
                    int before = checked((int)input.Position);
                    input.SkipLastField();
                    int after = checked((int)input.Position);
                    int payload = new CodedInputStream(bytes, before, after - before).ReadLength();
                    yield return new Field(number, wire, 0, after - payload, payload);
                    break;
                case WireFormat.WireType.StartGroup:
                    // Deprecated groups carry nothing ONNX uses: skip the whole group.
                    input.SkipLastField();
                    break;
                default:
                    throw Error("a field tag", $"wire type {wire} for field {number} outside a group");
            }
        }
    }

    private string Str(Field f, string name)
    {
        Expect(f, WireFormat.WireType.LengthDelimited, name);
        return Encoding.UTF8.GetString(bytes, f.Start, f.Length);
    }

    private long Int(Field f, string name)
    {
        Expect(f, WireFormat.WireType.Varint, name);
        return (long)f.Value;
    }

    private void Expect(Field f, WireFormat.WireType wire, string name)
    {
        if (f.Wire != wire)
        {
            throw Error($"{name} (field {f.Number}) as wire type {wire}", $"wire type {f.Wire}");
        }
    }

    private T Within<T>(string step, Func<T> read)
    {
        where.Add(step);
        T result = read();
        where.RemoveAt(where.Count - 1);
        return result;
    }

    private void Within(string step, Action read)
    {
        where.Add(step);
        read();
        where.RemoveAt(where.Count - 1);
    }

    private ModelFormatException Error(string expected, string found, Exception? inner = null)
    {
        return new ModelFormatException(path, string.Join(".", where), expected, found, inner);
    }
}
