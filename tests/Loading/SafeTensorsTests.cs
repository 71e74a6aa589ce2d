using System.Buffers.Binary;
using Headlight.Models;
using Headlight.Models.Loading;

namespace Headlight.Tests.Loading;

/// <summary>The safetensors reader: valid files, dtype conversion, and every corruption the format's reference rejects.</summary>
public sealed class SafeTensorsTests : IDisposable
{
    private readonly TempFolder temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Reads_tensors_metadata_and_shapes()
    {
        float[] a = TestData.Normal(1, 6);
        float[] b = TestData.Normal(2, 4);
        string path = Write("valid.safetensors", LoadingFiles.SafeTensors(
            [("a", "F32", [2, 3], LoadingFiles.F32(a)), ("empty", "F32", [0, 5], []), ("b", "F32", [4], LoadingFiles.F32(b)), ("ids", "I64", [2], new byte[16])],
            new Dictionary<string, string> { ["format"] = "pt" }));

        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(4, file.Tensors.Count);
        Assert.Equal(["a", "empty", "b", "ids"], file.Names);
        Assert.Equal("pt", file.Metadata["format"]);
        Assert.Equal([2L, 3L], file.Tensors["a"].Shape);
        Assert.Equal(SafeTensorsDType.I64, file.Tensors["ids"].DType);
        Assert.Equal(a, file.ReadFloat32("a"));
        Assert.Equal(b, file.ReadFloat32("b"));
        Assert.Empty(file.ReadFloat32("empty"));

        var into = new float[4];
        file.ReadFloat32("b", into);
        Assert.Equal(b, into);
    }

    [Fact]
    public void Converts_f16_bf16_and_f64()
    {
        // Bit patterns written by hand: 1, -2.5, 65504 (largest half), 2^-24 (smallest subnormal half), -0.
        ushort[] f16 = [0x3C00, 0xC100, 0x7BFF, 0x0001, 0x8000];
        double[] f16Expected = [1, -2.5, 65504, Math.Pow(2, -24), -0.0];

        // bfloat16 keeps float32's exponent: 1, -2.5, 3.0e38 (0x7F61 -> 2^127 * 1.7578125), 2^-133.
        ushort[] bf16 = [0x3F80, 0xC020, 0x7F61, 0x0001];
        double[] bf16Expected = [1, -2.5, Math.Pow(2, 127) * 1.7578125, Math.Pow(2, -133)];

        double[] f64 = [Math.PI, -1e-30, 1e30];

        string path = Write("dtypes.safetensors", LoadingFiles.SafeTensors(
            [("h", "F16", [5], U16(f16)), ("bf", "BF16", [2, 2], U16(bf16)), ("d", "F64", [3], F64(f64))]));
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal(f16Expected.Select(v => (float)v), file.ReadFloat32("h"));
        Assert.True(float.IsNegative(file.ReadFloat32("h")[4]), "F16 -0 keeps its sign.");
        Assert.Equal(bf16Expected.Select(v => (float)v), file.ReadFloat32("bf"));
        Assert.Equal(f64.Select(v => (float)v), file.ReadFloat32("d"));
    }

    [Fact]
    public void Integer_tensors_are_not_read_as_float()
    {
        string path = Write("ints.safetensors", LoadingFiles.SafeTensors([("mask", "U8", [4], new byte[4])]));
        using var file = SafeTensorsFile.Open(path);
        LoadingFiles.ThrowsFormat(() => file.ReadFloat32("mask"), path, "mask.dtype");
    }

    [Fact]
    public void Bad_arguments_are_argument_exceptions()
    {
        string path = Write("args.safetensors", LoadingFiles.SafeTensors([("a", "F32", [2], LoadingFiles.F32(1, 2))]));
        var file = SafeTensorsFile.Open(path);
        var e = Assert.Throws<ArgumentException>(() => file.ReadFloat32("a", new float[3]));
        Assert.Contains("[2]", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => file.ReadFloat32("missing"));
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.ReadFloat32("a"));
        Assert.Throws<FileNotFoundException>(() => SafeTensorsFile.Open(temp.File("nope.safetensors")));
    }

    public static TheoryData<string, string, string> HeaderCorruptions => new()
    {
        // case, header JSON (data is 8 bytes), the field the error must name
        { "bad JSON", "{\"a\": {\"dtype\": \"F32\",", "header" },
        { "root not an object", "[1, 2]", "header" },
        { "unknown dtype", "{\"a\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}", "a.dtype" },
        { "dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", "a.dtype" },
        { "missing shape", "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", "a.shape" },
        { "negative dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", "a.shape" },
        { "fractional dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", "a.shape" },
        { "overflowing dimensions", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", "a.shape" },
        { "overflowing bytes", "{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}", "a.shape" },
        { "size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", "a.data_offsets" },
        { "offsets reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", "a.data_offsets" },
        { "one offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8]}}", "a.data_offsets" },
        { "negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-4,-4]}}", "a.data_offsets" },
        { "overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "b.data_offsets" },
        { "gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}", "b.data_offsets" },
        { "gap at start", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "a.data_offsets" },
        { "out of range", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", "data_offsets" },
        { "far out of range", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", "data_offsets" },
        { "data not covered", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", "data_offsets" },
        { "metadata not strings", "{\"__metadata__\":{\"n\":3},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "__metadata__.n" },
        { "metadata not an object", "{\"__metadata__\":[1],\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", "__metadata__" },
        { "duplicate name", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", "a" },
        { "entry not an object", "{\"a\":[0,8]}", "a" },
    };

    [Theory]
    [MemberData(nameof(HeaderCorruptions))]
    public void Corrupt_headers_name_file_and_field(string name, string header, string field)
    {
        string path = Write(name.Replace(' ', '_') + ".safetensors", LoadingFiles.SafeTensors(header, new byte[8]));
        LoadingFiles.ThrowsFormat(() => SafeTensorsFile.Open(path).Dispose(), path, field);
    }

    [Fact]
    public void Truncated_header_length_is_rejected()
    {
        string path = Write("short.safetensors", [1, 2, 3]);
        LoadingFiles.ThrowsFormat(() => SafeTensorsFile.Open(path).Dispose(), path, "header length");
        string empty = Write("empty.safetensors", []);
        LoadingFiles.ThrowsFormat(() => SafeTensorsFile.Open(empty).Dispose(), empty, "header length");
    }

    [Fact]
    public void Header_length_past_the_file_or_over_the_limit_is_rejected()
    {
        string header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        string longer = Write("longer.safetensors", LoadingFiles.SafeTensors(header, new byte[8], declaredHeaderLength: 10_000));
        LoadingFiles.ThrowsFormat(() => SafeTensorsFile.Open(longer).Dispose(), longer, "header length");
        string huge = Write("huge.safetensors", LoadingFiles.SafeTensors(header, new byte[8], declaredHeaderLength: 100_000_001));
        var e = LoadingFiles.ThrowsFormat(() => SafeTensorsFile.Open(huge).Dispose(), huge, "header length");
        Assert.Contains("100000000", e.Message, StringComparison.Ordinal);
        string max = Write("max.safetensors", LoadingFiles.SafeTensors(header, new byte[8], declaredHeaderLength: ulong.MaxValue));
        LoadingFiles.ThrowsFormat(() => SafeTensorsFile.Open(max).Dispose(), max, "header length");
    }

    [Fact]
    public void Invalid_utf8_header_is_rejected()
    {
        var bytes = LoadingFiles.SafeTensors("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", new byte[8]);
        bytes[10] = 0xFF;
        string path = Write("utf8.safetensors", bytes);
        LoadingFiles.ThrowsFormat(() => SafeTensorsFile.Open(path).Dispose(), path, "header");
    }

    [Fact]
    public void Truncating_a_valid_file_anywhere_is_a_format_error()
    {
        var bytes = LoadingFiles.SafeTensors([("a", "F32", [3, 2], LoadingFiles.F32(TestData.Normal(3, 6))), ("b", "F16", [5], new byte[10])]);
        for (int length = 0; length < bytes.Length; length++)
        {
            string path = Write($"cut{length}.safetensors", bytes[..length]);
            var e = Assert.Throws<ModelFormatException>(() => SafeTensorsFile.Open(path).Dispose());
            Assert.Equal(path, e.FilePath);
        }
    }

    private string Write(string name, byte[] bytes)
    {
        string path = temp.File(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] U16(ushort[] values)
    {
        var bytes = new byte[values.Length * 2];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(i * 2), values[i]);
        }

        return bytes;
    }

    private static byte[] F64(double[] values)
    {
        var bytes = new byte[values.Length * 8];
        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(i * 8), values[i]);
        }

        return bytes;
    }
}
