namespace Headlight.Models.Loading;

/// <summary>One tensor entry of a safetensors header.</summary>
/// <param name="Name">The tensor's name (a JSON key of the header).</param>
/// <param name="DType">The element type.</param>
/// <param name="Shape">The dimensions, outermost first.</param>
/// <param name="ElementCount">The product of <paramref name="Shape"/>.</param>
/// <param name="DataOffset">Where the bytes start, relative to the start of the data section.</param>
/// <param name="ByteLength">How many bytes the tensor occupies.</param>
internal sealed record SafeTensorInfo(string Name, SafeTensorsDType DType, IReadOnlyList<long> Shape, long ElementCount, long DataOffset, long ByteLength)
{
    /// <summary>The shape as 32-bit dimensions, as Headlight tensors take them.</summary>
    /// <exception cref="OverflowException">A dimension does not fit 32 bits.</exception>
    public int[] ShapeInt32() => Shape.Select(d => checked((int)d)).ToArray();

    /// <summary>Formats the shape as <c>[2, 3]</c>.</summary>
    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}
