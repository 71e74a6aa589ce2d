using Google.Protobuf;

namespace Headlight.Models.Loading;

/// <summary>Small edits of ONNX model bytes, made at the wire-format level so everything else is copied unchanged.</summary>
internal static class OnnxEdit
{
    /// <summary>
    /// Declares extra graph outputs (name only; the runtime infers their types), e.g. the Softmax
    /// outputs of <see cref="BertOnnxImport.AttentionProbabilities"/>, so ONNX Runtime returns them.
    /// </summary>
    /// <param name="model">The model's bytes.</param>
    /// <param name="outputs">The value names to add to <c>graph.output</c>.</param>
    /// <param name="filePath">Names the source in errors.</param>
    /// <returns>New model bytes.</returns>
    /// <exception cref="ModelFormatException">The bytes are not a model with one graph.</exception>
    public static byte[] AddOutputs(byte[] model, IEnumerable<string> outputs, string filePath = "model")
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(outputs);
        byte[] extra = EncodeOutputs(outputs);
        using var result = new MemoryStream(model.Length + extra.Length + 16);
        bool sawGraph = false;
        try
        {
            var input = new CodedInputStream(model);
            while (true)
            {
                int start = checked((int)input.Position);
                uint tag = input.ReadTag();
                if (tag == 0)
                {
                    break;
                }

                int afterTag = checked((int)input.Position);
                input.SkipLastField();
                int end = checked((int)input.Position);
                bool graph = WireFormat.GetTagFieldNumber(tag) == 7 && WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited;
                if (!graph)
                {
                    result.Write(model, start, end - start);
                    continue;
                }

                if (sawGraph)
                {
                    throw new ModelFormatException(filePath, "ModelProto.graph", "one graph", "two");
                }

                sawGraph = true;
                int length = new CodedInputStream(model, afterTag, end - afterTag).ReadLength();
                var header = new MemoryStream();
                var writer = new CodedOutputStream(header, leaveOpen: true);
                writer.WriteTag(7, WireFormat.WireType.LengthDelimited);
                writer.WriteLength(checked(length + extra.Length));
                writer.Flush();
                header.WriteTo(result);
                result.Write(model, end - length, length);
                result.Write(extra);
            }
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new ModelFormatException(filePath, "ModelProto", "well-formed protobuf", e.Message, e);
        }

        return sawGraph ? result.ToArray() : throw new ModelFormatException(filePath, "ModelProto.graph", "a graph", "none");
    }

    /// <summary>Encodes GraphProto.output (field 12) entries holding ValueInfoProto { name (1) }.</summary>
    private static byte[] EncodeOutputs(IEnumerable<string> outputs)
    {
        using var stream = new MemoryStream();
        var writer = new CodedOutputStream(stream, leaveOpen: true);
        foreach (string name in outputs)
        {
            ArgumentException.ThrowIfNullOrEmpty(name, nameof(outputs));
            int nameBytes = System.Text.Encoding.UTF8.GetByteCount(name);
            writer.WriteTag(12, WireFormat.WireType.LengthDelimited);
            writer.WriteLength(CodedOutputStream.ComputeTagSize(1) + CodedOutputStream.ComputeLengthSize(nameBytes) + nameBytes);
            writer.WriteTag(1, WireFormat.WireType.LengthDelimited);
            writer.WriteString(name);
        }

        writer.Flush();
        return stream.ToArray();
    }
}
