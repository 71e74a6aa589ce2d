using System.Buffers.Binary;
using System.IO.MemoryMappedFiles;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Unicode;

namespace Headlight.Models.Loading;

/// <summary>
/// A memory-mapped safetensors file: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
/// describing each tensor, then the tensors' bytes. The whole header is validated when the file is
/// opened (every offset against the file's length), so reading a tensor never reads out of bounds.
/// </summary>
internal sealed unsafe class SafeTensorsFile : IDisposable
{
    /// <summary>The largest header the reference implementation accepts.</summary>
    public const long MaxHeaderLength = 100_000_000;

    private const string MetadataKey = "__metadata__";

    private readonly MemoryMappedFile map;
    private readonly MemoryMappedViewAccessor view;
    private readonly Dictionary<string, SafeTensorInfo> tensors;
    private readonly long dataStart;
    private byte* basePointer;

    private SafeTensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* basePointer, long dataStart, Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        FilePath = path;
        this.map = map;
        this.view = view;
        this.basePointer = basePointer;
        this.dataStart = dataStart;
        this.tensors = tensors;
        Metadata = metadata;
        Names = tensors.Values.OrderBy(t => t.DataOffset).ThenBy(t => t.ByteLength).ThenBy(t => t.Name, StringComparer.Ordinal).Select(t => t.Name).ToArray();
    }

    /// <summary>The file this was opened from.</summary>
    public string FilePath { get; }

    /// <summary>Every tensor by name.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors => tensors;

    /// <summary>Tensor names in the order their bytes appear in the file.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>The optional <c>__metadata__</c> string map (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens and validates a safetensors file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The header is malformed or does not describe the data exactly.</exception>
    public static SafeTensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("safetensors data is little-endian; this reader supports little-endian hosts only.");
        }

        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"safetensors file not found: {path}", path);
        }

        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        long fileLength = stream.Length;
        if (fileLength < 8)
        {
            stream.Dispose();
            throw new ModelFormatException(path, "header length", "an 8-byte little-endian length", $"a file of {fileLength} bytes");
        }

        MemoryMappedFile? map = null;
        MemoryMappedViewAccessor? view = null;
        byte* pointer = null;
        try
        {
            map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            pointer += view.PointerOffset;

            var bytes = new ReadOnlySpan<byte>(pointer, 8);
            ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
            if (headerLength > MaxHeaderLength)
            {
                throw new ModelFormatException(path, "header length", $"at most {MaxHeaderLength} bytes", $"{headerLength}");
            }

            if ((long)headerLength > fileLength - 8)
            {
                throw new ModelFormatException(path, "header length", $"at most the {fileLength - 8} bytes after the length field", $"{headerLength}");
            }

            long dataStart = 8 + (long)headerLength;
            var header = new ReadOnlySpan<byte>(pointer + 8, (int)headerLength);
            var (tensors, metadata) = ParseHeader(path, header, fileLength - dataStart);
            var file = new SafeTensorsFile(path, map, view, pointer - view.PointerOffset, dataStart, tensors, metadata);
            pointer = null;
            return file;
        }
        catch
        {
            if (pointer != null)
            {
                view!.SafeMemoryMappedViewHandle.ReleasePointer();
            }

            view?.Dispose();
            map?.Dispose();
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Looks a tensor up by name.</summary>
    /// <exception cref="ArgumentException">No tensor has that name.</exception>
    public SafeTensorInfo Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!tensors.TryGetValue(name, out var info))
        {
            throw new ArgumentException($"{FilePath}: no tensor named '{name}'.", nameof(name));
        }

        return info;
    }

    /// <summary>Reads a floating-point tensor as float32 (F32 as is; F16, BF16 and F64 converted).</summary>
    /// <exception cref="ModelFormatException">The tensor is not floating point, or too large for one array.</exception>
    public float[] ReadFloat32(string name)
    {
        var info = Get(name);
        if (info.ElementCount > Array.MaxLength)
        {
            throw new ModelFormatException(FilePath, name, $"at most {Array.MaxLength} elements to read into one array", $"{info.ElementCount}");
        }

        var result = new float[info.ElementCount];
        ReadFloat32(name, result);
        return result;
    }

    /// <summary>Reads a floating-point tensor as float32 into <paramref name="destination"/>, which must hold exactly its elements.</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> has the wrong length.</exception>
    /// <exception cref="ModelFormatException">The tensor is not floating point.</exception>
    public void ReadFloat32(string name, Span<float> destination)
    {
        var info = Get(name);
        if (destination.Length != info.ElementCount)
        {
            throw new ArgumentException($"{FilePath}: tensor '{name}' {info.ShapeText} has {info.ElementCount} elements, but the destination holds {destination.Length}.", nameof(destination));
        }

        int size = info.DType switch
        {
            SafeTensorsDType.F32 => 4,
            SafeTensorsDType.F16 or SafeTensorsDType.BF16 => 2,
            SafeTensorsDType.F64 => 8,
            _ => throw new ModelFormatException(FilePath, $"{name}.dtype", "F32, F16, BF16 or F64 to read as float32", info.DType.ToString()),
        };

        byte* source = Pointer() + dataStart + info.DataOffset;

        // Spans hold at most 2^31 elements: convert in chunks so a tensor of any size works.
        const int Chunk = 1 << 24;
        for (int done = 0; done < destination.Length; done += Chunk)
        {
            int count = Math.Min(Chunk, destination.Length - done);
            var bytes = new ReadOnlySpan<byte>(source + ((long)done * size), count * size);
            var target = destination.Slice(done, count);
            switch (info.DType)
            {
                case SafeTensorsDType.F32:
                    MemoryMarshal.Cast<byte, float>(bytes).CopyTo(target);
                    break;
                case SafeTensorsDType.F16:
                    TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(bytes), target);
                    break;
                case SafeTensorsDType.BF16:
                    ConvertBFloat16(MemoryMarshal.Cast<byte, ushort>(bytes), target);
                    break;
                default:
                    var doubles = MemoryMarshal.Cast<byte, double>(bytes);
                    for (int i = 0; i < doubles.Length; i++)
                    {
                        target[i] = (float)doubles[i];
                    }

                    break;
            }
        }
    }

    /// <summary>The raw little-endian bytes of a tensor smaller than 2 GiB, valid until the file is disposed.</summary>
    internal ReadOnlySpan<byte> RawBytes(string name)
    {
        var info = Get(name);
        if (info.ByteLength > int.MaxValue)
        {
            throw new ModelFormatException(FilePath, name, "fewer than 2^31 bytes for a raw view", $"{info.ByteLength}");
        }

        return new ReadOnlySpan<byte>(Pointer() + dataStart + info.DataOffset, (int)info.ByteLength);
    }

    /// <summary>
    /// A file never disposed still gives its mapping back when collected: the acquired pointer keeps the
    /// view's handle alive, so without this release the mapping would outlive the object (500 opens left
    /// 500 mappings). The view's own handle, a critical finaliser, runs after this one and unmaps.
    /// </summary>
    ~SafeTensorsFile()
    {
        Dispose(disposing: false);
    }

    /// <summary>Unmaps the file.</summary>
    public void Dispose()
    {
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    private void Dispose(bool disposing)
    {
        if (basePointer != null)
        {
            basePointer = null;
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            if (disposing)
            {
                view.Dispose();
                map.Dispose();
            }
        }
    }

    /// <summary>The size in bytes of one element of <paramref name="dtype"/>.</summary>
    public static int ElementSize(SafeTensorsDType dtype) => dtype switch
    {
        SafeTensorsDType.Bool or SafeTensorsDType.U8 or SafeTensorsDType.I8 or SafeTensorsDType.F8E5M2 or SafeTensorsDType.F8E4M3 => 1,
        SafeTensorsDType.I16 or SafeTensorsDType.U16 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 => 2,
        SafeTensorsDType.I32 or SafeTensorsDType.U32 or SafeTensorsDType.F32 => 4,
        SafeTensorsDType.I64 or SafeTensorsDType.U64 or SafeTensorsDType.F64 => 8,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "Unknown safetensors dtype."),
    };

    /// <summary>The dtype for a header's dtype string, or null when unknown.</summary>
    internal static SafeTensorsDType? ParseDType(string text) => text switch
    {
        "BOOL" => SafeTensorsDType.Bool,
        "U8" => SafeTensorsDType.U8,
        "I8" => SafeTensorsDType.I8,
        "F8_E5M2" => SafeTensorsDType.F8E5M2,
        "F8_E4M3" => SafeTensorsDType.F8E4M3,
        "I16" => SafeTensorsDType.I16,
        "U16" => SafeTensorsDType.U16,
        "F16" => SafeTensorsDType.F16,
        "BF16" => SafeTensorsDType.BF16,
        "I32" => SafeTensorsDType.I32,
        "U32" => SafeTensorsDType.U32,
        "F32" => SafeTensorsDType.F32,
        "F64" => SafeTensorsDType.F64,
        "I64" => SafeTensorsDType.I64,
        "U64" => SafeTensorsDType.U64,
        _ => null,
    };

    private byte* Pointer()
    {
        byte* p = basePointer;
        ObjectDisposedException.ThrowIf(p == null, this);
        return p + view.PointerOffset;
    }

    private static void ConvertBFloat16(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        // bfloat16 is the high half of a float32's bits.
        for (int i = 0; i < source.Length; i++)
        {
            destination[i] = BitConverter.Int32BitsToSingle(source[i] << 16);
        }
    }

    private static (Dictionary<string, SafeTensorInfo>, Dictionary<string, string>) ParseHeader(string path, ReadOnlySpan<byte> header, long dataLength)
    {
        if (!Utf8.IsValid(header))
        {
            throw new ModelFormatException(path, "header", "UTF-8 JSON", "bytes that are not valid UTF-8");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header.ToArray(), new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, "header", "UTF-8 JSON", $"invalid JSON ({e.Message})", e);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new ModelFormatException(path, "header", "a JSON object", root.ValueKind.ToString());
            }

            var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            bool sawMetadata = false;
            foreach (var property in root.EnumerateObject())
            {
                if (property.Name == MetadataKey)
                {
                    if (sawMetadata)
                    {
                        throw new ModelFormatException(path, MetadataKey, "one metadata map", "the key twice");
                    }

                    sawMetadata = true;
                    ParseMetadata(path, property.Value, metadata);
                    continue;
                }

                var info = ParseEntry(path, property.Name, property.Value);
                if (!tensors.TryAdd(info.Name, info))
                {
                    throw new ModelFormatException(path, property.Name, "unique tensor names", "the name twice");
                }
            }

            CheckCoverage(path, tensors.Values, dataLength);
            return (tensors, metadata);
        }
    }

    private static void ParseMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            return;
        }

        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, MetadataKey, "an object of strings", value.ValueKind.ToString());
        }

        foreach (var entry in value.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.String)
            {
                throw new ModelFormatException(path, $"{MetadataKey}.{entry.Name}", "a string", entry.Value.ValueKind.ToString());
            }

            metadata[entry.Name] = entry.Value.GetString()!;
        }
    }

    private static SafeTensorInfo ParseEntry(string path, string name, JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, name, "an object with dtype, shape and data_offsets", value.ValueKind.ToString());
        }

        if (!value.TryGetProperty("dtype", out var dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
        {
            throw new ModelFormatException(path, $"{name}.dtype", "a dtype string", dtypeElement.ValueKind == JsonValueKind.Undefined ? "nothing" : dtypeElement.ValueKind.ToString());
        }

        string dtypeText = dtypeElement.GetString()!;
        var dtype = ParseDType(dtypeText)
            ?? throw new ModelFormatException(path, $"{name}.dtype", "one of BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64", $"'{dtypeText}'");

        if (!value.TryGetProperty("shape", out var shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
        {
            throw new ModelFormatException(path, $"{name}.shape", "an array of dimensions", shapeElement.ValueKind == JsonValueKind.Undefined ? "nothing" : shapeElement.ValueKind.ToString());
        }

        var shape = new List<long>();
        foreach (var d in shapeElement.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long dim))
            {
                throw new ModelFormatException(path, $"{name}.shape", "integer dimensions", shapeElement.GetRawText());
            }

            if (dim < 0)
            {
                throw new ModelFormatException(path, $"{name}.shape", "non-negative dimensions", shapeElement.GetRawText());
            }

            shape.Add(dim);
        }

        if (!value.TryGetProperty("data_offsets", out var offsetsElement) || offsetsElement.ValueKind != JsonValueKind.Array || offsetsElement.GetArrayLength() != 2)
        {
            throw new ModelFormatException(path, $"{name}.data_offsets", "[begin, end]", offsetsElement.ValueKind == JsonValueKind.Undefined ? "nothing" : offsetsElement.GetRawText());
        }

        long begin = Offset(path, name, offsetsElement, 0);
        long end = Offset(path, name, offsetsElement, 1);
        if (end < begin)
        {
            throw new ModelFormatException(path, $"{name}.data_offsets", "begin <= end", offsetsElement.GetRawText());
        }

        long count = 1;
        long bytes;
        try
        {
            foreach (long d in shape)
            {
                count = checked(count * d);
            }

            bytes = checked(count * ElementSize(dtype));
        }
        catch (OverflowException)
        {
            throw new ModelFormatException(path, $"{name}.shape", "a size that fits 64 bits", $"{shapeElement.GetRawText()} of {dtypeText}, which overflows");
        }

        if (bytes != end - begin)
        {
            throw new ModelFormatException(path, $"{name}.data_offsets", $"{bytes} bytes for {dtypeText} {shapeElement.GetRawText()}", $"{end - begin} bytes {offsetsElement.GetRawText()}");
        }

        return new SafeTensorInfo(name, dtype, shape.ToArray(), count, begin, bytes);
    }

    private static long Offset(string path, string name, JsonElement offsets, int index)
    {
        var element = offsets[index];
        if (element.ValueKind != JsonValueKind.Number || !element.TryGetInt64(out long value) || value < 0)
        {
            throw new ModelFormatException(path, $"{name}.data_offsets", "two non-negative integers below 2^63", offsets.GetRawText());
        }

        return value;
    }

    private static void CheckCoverage(string path, IEnumerable<SafeTensorInfo> tensors, long dataLength)
    {
        // Sorted by begin (empty tensors first at a shared offset), each tensor must start where the
        // previous one ended: no overlap, no gap, and together they cover the data section exactly.
        long expected = 0;
        string previous = "the start of the data section";
        foreach (var t in tensors.OrderBy(t => t.DataOffset).ThenBy(t => t.ByteLength))
        {
            if (t.DataOffset != expected)
            {
                string what = t.DataOffset < expected ? "overlaps" : "leaves a gap after";
                throw new ModelFormatException(path, $"{t.Name}.data_offsets", $"to begin at {expected}, where {previous} ends", $"[{t.DataOffset}, {t.DataOffset + t.ByteLength}], which {what} it");
            }

            expected = t.DataOffset + t.ByteLength;
            previous = $"'{t.Name}'";
        }

        if (expected != dataLength)
        {
            string found = expected > dataLength ? $"offsets up to {expected}, past the end of the file" : $"tensors covering only {expected} bytes";
            throw new ModelFormatException(path, "data_offsets", $"tensors covering the {dataLength} data bytes exactly", found);
        }
    }
}
