using System.Buffers.Binary;
using System.Text;
using Google.Protobuf;
using Headlight.Models;

namespace Headlight.Tests.Loading;

/// <summary>A temporary folder removed when disposed.</summary>
public sealed class TempFolder : IDisposable
{
    /// <summary>Creates an empty folder under the system's temp path.</summary>
    public TempFolder()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "headlight-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    /// <summary>The folder.</summary>
    public string Path { get; }

    /// <summary>A path inside the folder.</summary>
    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <inheritdoc />
    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A file still mapped on another platform; the OS cleans temp eventually.
        }
    }
}

/// <summary>Test files: safetensors written byte by byte, protobuf messages, the shared fixtures.</summary>
public static class LoadingFiles
{
    /// <summary>A safetensors file from a header JSON text and data bytes (the header is padded with spaces to 8 bytes as writers do).</summary>
    public static byte[] SafeTensors(string headerJson, byte[] data, ulong? declaredHeaderLength = null)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        int padded = (header.Length + 7) / 8 * 8;
        var bytes = new byte[8 + padded + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredHeaderLength ?? (ulong)padded);
        header.CopyTo(bytes, 8);
        bytes.AsSpan(8 + header.Length, padded - header.Length).Fill((byte)' ');
        data.CopyTo(bytes, 8 + padded);
        return bytes;
    }

    /// <summary>A valid safetensors file holding the given tensors back to back, in order.</summary>
    public static byte[] SafeTensors(IEnumerable<(string Name, string DType, long[] Shape, byte[] Data)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new StringBuilder("{");
        var data = new MemoryStream();
        if (metadata is not null)
        {
            header.Append("\"__metadata__\":{");
            header.Append(string.Join(",", metadata.Select(m => $"\"{m.Key}\":\"{m.Value}\"")));
            header.Append("},");
        }

        foreach (var (name, dtype, shape, bytes) in tensors)
        {
            long begin = data.Length;
            data.Write(bytes);
            header.Append($"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{begin},{data.Length}]}},");
        }

        if (header[^1] == ',')
        {
            header.Length--;
        }

        header.Append('}');
        return SafeTensors(header.ToString(), data.ToArray());
    }

    /// <summary>Float32 values as little-endian bytes.</summary>
    public static byte[] F32(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        }

        return bytes;
    }

    /// <summary>The repository root (the folder holding Kernels.sln), found from the test assembly's location.</summary>
    public static string RepositoryRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !System.IO.File.Exists(Path.Combine(dir.FullName, "Kernels.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException($"No Kernels.sln above {AppContext.BaseDirectory}.");
    }

    /// <summary>A shared fixture folder (<c>../shared/fixtures/NAME</c> beside the repository); fails clearly when missing.</summary>
    public static string SharedFixture(string name)
    {
        // shared/ sits beside the checkout; a git worktree may sit one level further down.
        var tried = new List<string>();
        for (var dir = Directory.GetParent(RepositoryRoot()); dir is not null && tried.Count < 3; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "shared", "fixtures", name);
            tried.Add(candidate);
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        Assert.Fail($"The shared fixture '{name}' is missing: looked in {string.Join(", ", tried)} (shared/ must sit beside the checkout, as in CI).");
        return string.Empty;
    }

    /// <summary>Asserts <paramref name="action"/> throws a <see cref="ModelFormatException"/> naming <paramref name="file"/> and containing <paramref name="field"/> in its field.</summary>
    public static ModelFormatException ThrowsFormat(Action action, string file, string field)
    {
        var e = Assert.Throws<ModelFormatException>(action);
        Assert.Equal(file, e.FilePath);
        Assert.Contains(field, e.Field, StringComparison.Ordinal);
        Assert.Contains(file, e.Message, StringComparison.Ordinal);
        Assert.Contains(e.Field, e.Message, StringComparison.Ordinal);
        return e;
    }
}

/// <summary>Builds protobuf messages field by field, for synthetic ONNX models.</summary>
public sealed class Proto
{
    private readonly MemoryStream stream = new();
    private readonly CodedOutputStream output;

    /// <summary>An empty message.</summary>
    public Proto()
    {
        output = new CodedOutputStream(stream, leaveOpen: true);
    }

    /// <summary>A varint field.</summary>
    public Proto Varint(int field, long value)
    {
        output.WriteTag(field, WireFormat.WireType.Varint);
        output.WriteInt64(value);
        return this;
    }

    /// <summary>A fixed32 float field.</summary>
    public Proto Float(int field, float value)
    {
        output.WriteTag(field, WireFormat.WireType.Fixed32);
        output.WriteFloat(value);
        return this;
    }

    /// <summary>A fixed64 field.</summary>
    public Proto Fixed64(int field, ulong value)
    {
        output.WriteTag(field, WireFormat.WireType.Fixed64);
        output.WriteFixed64(value);
        return this;
    }

    /// <summary>A (deprecated) group: start tag, the content's fields, end tag.</summary>
    public Proto Group(int field, Proto content)
    {
        output.WriteTag(field, WireFormat.WireType.StartGroup);
        output.Flush();
        stream.Write(content.ToArray());
        output.WriteTag(field, WireFormat.WireType.EndGroup);
        return this;
    }

    /// <summary>A length-delimited field holding bytes.</summary>
    public Proto Bytes(int field, byte[] value)
    {
        output.WriteTag(field, WireFormat.WireType.LengthDelimited);
        output.WriteBytes(ByteString.CopyFrom(value));
        return this;
    }

    /// <summary>A string field.</summary>
    public Proto String(int field, string value) => Bytes(field, Encoding.UTF8.GetBytes(value));

    /// <summary>A nested message.</summary>
    public Proto Message(int field, Proto message) => Bytes(field, message.ToArray());

    /// <summary>A packed repeated varint field.</summary>
    public Proto PackedVarints(int field, params long[] values)
    {
        var inner = new Proto();
        foreach (long v in values)
        {
            inner.output.WriteInt64(v);
        }

        return Bytes(field, inner.ToArray());
    }

    /// <summary>The encoded message.</summary>
    public byte[] ToArray()
    {
        output.Flush();
        return stream.ToArray();
    }
}

/// <summary>ONNX messages (field numbers from onnx.proto) for synthetic graphs.</summary>
public static class Onnx
{
    /// <summary>A float32 tensor stored as raw_data.</summary>
    public static Proto RawFloat(string name, long[] dims, float[] values) =>
        new Proto().PackedVarints(1, dims).Varint(2, 1).String(8, name).Bytes(9, LoadingFiles.F32(values));

    /// <summary>A float32 tensor stored as packed float_data.</summary>
    public static Proto FloatData(string name, long[] dims, float[] values) =>
        new Proto().PackedVarints(1, dims).Varint(2, 1).Bytes(4, LoadingFiles.F32(values)).String(8, name);

    /// <summary>An int64 tensor stored as packed int64_data.</summary>
    public static Proto Int64Data(string name, long[] dims, long[] values) =>
        new Proto().PackedVarints(1, dims).Varint(2, 7).PackedVarints(7, values).String(8, name);

    /// <summary>A node.</summary>
    public static Proto Node(string op, string[] inputs, string[] outputs, params Proto[] attributes)
    {
        var node = new Proto();
        foreach (string i in inputs)
        {
            node.String(1, i);
        }

        foreach (string o in outputs)
        {
            node.String(2, o);
        }

        node.String(3, op + "_" + outputs[0]).String(4, op);
        foreach (var a in attributes)
        {
            node.Message(5, a);
        }

        return node;
    }

    /// <summary>A tensor-valued attribute (Constant's <c>value</c>).</summary>
    public static Proto TensorAttribute(string name, Proto tensor) => new Proto().String(1, name).Message(5, tensor).Varint(20, 4);

    /// <summary>An int attribute.</summary>
    public static Proto IntAttribute(string name, long value) => new Proto().String(1, name).Varint(3, value).Varint(20, 2);

    /// <summary>A float attribute.</summary>
    public static Proto FloatAttribute(string name, float value) => new Proto().String(1, name).Float(2, value).Varint(20, 1);

    /// <summary>A ValueInfoProto with only a name.</summary>
    public static Proto Value(string name) => new Proto().String(1, name);

    /// <summary>A ModelProto around a graph.</summary>
    public static byte[] Model(Proto graph) =>
        new Proto().Varint(1, 8).String(2, "headlight-tests").Message(7, graph).Message(8, new Proto().String(1, string.Empty).Varint(2, 17)).ToArray();
}
