using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Headlight.Models.Loading;

/// <summary>
/// Writes float32 tensors as a safetensors file: an 8-byte little-endian header length, a JSON header of
/// <c>{name: {dtype, shape, data_offsets}}</c> (plus <c>__metadata__</c>) padded with spaces to a multiple of 8, then the data.
/// The file is written beside its destination and moved into place, so a reader never sees half a file.
/// </summary>
internal static class SafeTensorsWriter
{
    public static void Write(string path, IReadOnlyList<(string Name, int[] Shape, float[] Data)> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var header = new Dictionary<string, object>(StringComparer.Ordinal);
        if (metadata is not null && metadata.Count > 0)
        {
            header["__metadata__"] = metadata;
        }

        long offset = 0;
        foreach (var (name, shape, data) in tensors)
        {
            long count = shape.Aggregate(1L, (a, b) => a * b);
            if (count != data.Length)
            {
                throw new ArgumentException($"Tensor '{name}' has {data.Length} values for shape [{string.Join(", ", shape)}].", nameof(tensors));
            }

            long bytes = count * sizeof(float);
            header[name] = new Dictionary<string, object> { ["dtype"] = "F32", ["shape"] = shape, ["data_offsets"] = new[] { offset, offset + bytes } };
            offset += bytes;
        }

        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        int padded = (json.Length + 7) / 8 * 8;
        string temporary = path + ".partial";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            Span<byte> length = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)padded);
            stream.Write(length);
            stream.Write(json);
            for (int i = json.Length; i < padded; i++)
            {
                stream.WriteByte((byte)' ');
            }

            foreach (var (_, _, data) in tensors)
            {
                // safetensors is little-endian, as is every platform .NET runs on here.
                stream.Write(MemoryMarshal.AsBytes(data.AsSpan()));
            }
        }

        File.Move(temporary, path, overwrite: true);
    }
}
