using System.Buffers.Binary;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Headlight.Models.Loading;

/// <summary>
/// An ONNX tensor (an initializer or a Constant node's value). Validated when the graph is read:
/// dimensions are non-negative and the payload holds exactly element count × element size bytes.
/// Raw payloads stay slices of the file's bytes until read.
/// </summary>
internal sealed class OnnxTensor
{
    private readonly ReadOnlyMemory<byte> raw;
    private readonly double[]? reals;
    private readonly long[]? integers;

    internal OnnxTensor(string filePath, string name, OnnxDataType dataType, long[] dims, long elementCount, ReadOnlyMemory<byte> raw, double[]? reals, long[]? integers)
    {
        FilePath = filePath;
        Name = name;
        DataType = dataType;
        Dims = dims;
        ElementCount = elementCount;
        this.raw = raw;
        this.reals = reals;
        this.integers = integers;
    }

    /// <summary>The file the tensor was read from.</summary>
    public string FilePath { get; }

    /// <summary>The tensor's name (empty for a Constant node's value).</summary>
    public string Name { get; }

    /// <summary>The element type.</summary>
    public OnnxDataType DataType { get; }

    /// <summary>The dimensions, outermost first.</summary>
    public IReadOnlyList<long> Dims { get; }

    /// <summary>The product of <see cref="Dims"/>.</summary>
    public long ElementCount { get; }

    /// <summary>Formats the shape as <c>[2, 3]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Dims) + "]";

    /// <summary>Whether the elements are floating point (float, double, float16, bfloat16).</summary>
    public bool IsFloatingPoint => DataType is OnnxDataType.Float or OnnxDataType.Double or OnnxDataType.Float16 or OnnxDataType.BFloat16;

    /// <summary>The dimensions as 32-bit values, as Headlight tensors take them.</summary>
    /// <exception cref="ModelFormatException">A dimension does not fit 32 bits.</exception>
    public int[] ShapeInt32()
    {
        var result = new int[Dims.Count];
        for (int i = 0; i < result.Length; i++)
        {
            if (Dims[i] > int.MaxValue)
            {
                throw new ModelFormatException(FilePath, $"tensor '{Name}'.dims", "dimensions below 2^31", ShapeText);
            }

            result[i] = (int)Dims[i];
        }

        return result;
    }

    /// <summary>Reads a floating-point tensor as float32.</summary>
    /// <exception cref="ModelFormatException">The tensor is not floating point.</exception>
    public float[] ToFloat32()
    {
        var result = new float[ElementCount];
        ReadFloat32(result);
        return result;
    }

    /// <summary>Reads a floating-point tensor as float32 into <paramref name="destination"/>, which must hold exactly its elements.</summary>
    /// <exception cref="ArgumentException"><paramref name="destination"/> has the wrong length.</exception>
    /// <exception cref="ModelFormatException">The tensor is not floating point.</exception>
    public void ReadFloat32(Span<float> destination)
    {
        if (destination.Length != ElementCount)
        {
            throw new ArgumentException($"{FilePath}: tensor '{Name}' {ShapeText} has {ElementCount} elements, but the destination holds {destination.Length}.", nameof(destination));
        }

        if (!IsFloatingPoint)
        {
            throw new ModelFormatException(FilePath, $"tensor '{Name}'.data_type", "a floating-point type to read as float32", DataType.ToString());
        }

        if (reals is not null)
        {
            for (int i = 0; i < reals.Length; i++)
            {
                destination[i] = (float)reals[i];
            }

            return;
        }

        if (integers is not null)
        {
            // float16 and bfloat16 in int32_data: each value holds the 16 bits of one element.
            for (int i = 0; i < integers.Length; i++)
            {
                ushort bits = (ushort)integers[i];
                destination[i] = DataType == OnnxDataType.Float16 ? (float)BitConverter.UInt16BitsToHalf(bits) : BitConverter.Int32BitsToSingle(bits << 16);
            }

            return;
        }

        var bytes = raw.Span;
        switch (DataType)
        {
            case OnnxDataType.Float:
                MemoryMarshal.Cast<byte, float>(bytes).CopyTo(destination);
                break;
            case OnnxDataType.Float16:
                TensorPrimitives.ConvertToSingle(MemoryMarshal.Cast<byte, Half>(bytes), destination);
                break;
            case OnnxDataType.BFloat16:
                var halves = MemoryMarshal.Cast<byte, ushort>(bytes);
                for (int i = 0; i < halves.Length; i++)
                {
                    destination[i] = BitConverter.Int32BitsToSingle(halves[i] << 16);
                }

                break;
            default:
                var doubles = MemoryMarshal.Cast<byte, double>(bytes);
                for (int i = 0; i < doubles.Length; i++)
                {
                    destination[i] = (float)doubles[i];
                }

                break;
        }
    }

    /// <summary>Reads an integer or boolean tensor as int64.</summary>
    /// <exception cref="ModelFormatException">The tensor is floating point, or a uint64 value exceeds int64.</exception>
    public long[] ToInt64()
    {
        if (IsFloatingPoint)
        {
            throw new ModelFormatException(FilePath, $"tensor '{Name}'.data_type", "an integer type to read as int64", DataType.ToString());
        }

        if (integers is not null)
        {
            if (DataType == OnnxDataType.UInt64 && integers.Any(v => v < 0))
            {
                throw new ModelFormatException(FilePath, $"tensor '{Name}'", "uint64 values below 2^63 to read as int64", "a larger value");
            }

            return (long[])integers.Clone();
        }

        var bytes = raw.Span;
        var result = new long[ElementCount];
        int size = OnnxModel.ElementSize(DataType);
        for (int i = 0; i < result.Length; i++)
        {
            var e = bytes.Slice(i * size, size);
            result[i] = DataType switch
            {
                OnnxDataType.UInt8 or OnnxDataType.Bool => e[0],
                OnnxDataType.Int8 => (sbyte)e[0],
                OnnxDataType.UInt16 => BinaryPrimitives.ReadUInt16LittleEndian(e),
                OnnxDataType.Int16 => BinaryPrimitives.ReadInt16LittleEndian(e),
                OnnxDataType.Int32 => BinaryPrimitives.ReadInt32LittleEndian(e),
                OnnxDataType.UInt32 => BinaryPrimitives.ReadUInt32LittleEndian(e),
                _ => BinaryPrimitives.ReadInt64LittleEndian(e),
            };

            if (DataType == OnnxDataType.UInt64 && result[i] < 0)
            {
                throw new ModelFormatException(FilePath, $"tensor '{Name}'", "uint64 values below 2^63 to read as int64", "a larger value");
            }
        }

        return result;
    }

    /// <summary>The single value of a one-element tensor as a double, whatever its type (for constants such as epsilons and scales).</summary>
    /// <returns>The value, or null when the tensor does not hold exactly one element.</returns>
    public double? ScalarValue()
    {
        if (ElementCount != 1)
        {
            return null;
        }

        return IsFloatingPoint ? ToFloat32()[0] : ToInt64()[0];
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name} {DataType} {ShapeText}";
}
