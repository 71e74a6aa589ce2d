using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>The dimensions of a tensor, outermost first; row-major, densely packed.</summary>
public readonly struct TensorShape : IEquatable<TensorShape>
{
    private readonly int[]? dims;

    private TensorShape(int[] dims, long elementCount)
    {
        this.dims = dims;
        ElementCount = elementCount;
    }

    /// <summary>The number of dimensions.</summary>
    public int Rank => dims?.Length ?? 0;

    /// <summary>The product of the dimensions.</summary>
    public long ElementCount { get; }

    /// <summary>A dimension; negative indices count from the end (<c>-1</c> is the innermost).</summary>
    public int this[int axis] => Dims[axis < 0 ? Rank + axis : axis];

    /// <summary>The dimensions.</summary>
    public ReadOnlySpan<int> Dims => dims ?? [];

    /// <summary>The product of all dimensions but the last (the number of rows when viewed as a matrix).</summary>
    public long Rows => Rank == 0 ? 1 : ElementCount == 0 ? ProductExceptLast() : ElementCount / this[-1];

    /// <summary>Validates and creates a shape.</summary>
    /// <exception cref="ArgumentException">A dimension is negative or the element count overflows 64 bits.</exception>
    public static TensorShape Create(ReadOnlySpan<int> dims, string context)
    {
        long count = 1;
        foreach (int d in dims)
        {
            if (d < 0)
            {
                throw new ArgumentException($"{context}: shape {Format(dims)} has a negative dimension.");
            }

            try
            {
                count = checked(count * d);
            }
            catch (OverflowException)
            {
                throw new ArgumentException($"{context}: shape {Format(dims)} has more elements than a 64-bit count can hold.");
            }
        }

        return new TensorShape(dims.ToArray(), count);
    }

    /// <summary>Formats dimensions as <c>[2, 3, 4]</c>.</summary>
    public static string Format(ReadOnlySpan<int> dims)
    {
        return "[" + string.Join(", ", dims.ToArray()) + "]";
    }

    private long ProductExceptLast()
    {
        long p = 1;
        for (int i = 0; i < Rank - 1; i++)
        {
            p *= Dims[i];
        }

        return p;
    }

    /// <inheritdoc />
    public override string ToString() => Format(Dims);

    /// <inheritdoc />
    public bool Equals(TensorShape other) => Dims.SequenceEqual(other.Dims);

    /// <inheritdoc />
    public override bool Equals(object? obj) => obj is TensorShape other && Equals(other);

    /// <inheritdoc />
    public override int GetHashCode()
    {
        var hash = new HashCode();
        foreach (int d in Dims)
        {
            hash.Add(d);
        }

        return hash.ToHashCode();
    }

    /// <summary>Shape equality.</summary>
    public static bool operator ==(TensorShape left, TensorShape right) => left.Equals(right);

    /// <summary>Shape inequality.</summary>
    public static bool operator !=(TensorShape left, TensorShape right) => !left.Equals(right);
}

/// <summary>Memory on one device, owned by exactly one tensor.</summary>
internal abstract class DeviceStorage<T> : IDisposable
    where T : unmanaged
{
    protected DeviceStorage(long length) => Length = length;

    public long Length { get; }

    public bool IsDisposed { get; private set; }

    /// <summary>Called once after the memory is freed; the device's accounting of live bytes.</summary>
    public Action? Released { get; set; }

    public void Dispose()
    {
        if (!IsDisposed)
        {
            IsDisposed = true;
            Release();
            Released?.Invoke();
        }
    }

    protected abstract void Release();
}

/// <summary>Host memory for the managed CPU backend.</summary>
internal sealed class HostStorage<T>(long length) : DeviceStorage<T>(length)
    where T : unmanaged
{
    // Arrays are limited to int.MaxValue elements; larger tensors need an ILGPU device.
    public T[] Array { get; private set; } = GC.AllocateUninitializedArray<T>(checked((int)length));

    protected override void Release() => Array = [];
}

/// <summary>A buffer on an ILGPU accelerator.</summary>
internal sealed class AcceleratorStorage<T>(MemoryBuffer1D<T, Stride1D.Dense> buffer) : DeviceStorage<T>(buffer.Length)
    where T : unmanaged
{
    public MemoryBuffer1D<T, Stride1D.Dense> Buffer { get; } = buffer;

    protected override void Release() => Buffer.Dispose();
}

/// <summary>
/// A dense, row-major tensor on a <see cref="Device"/>. A tensor made by <see cref="Device.Allocate{T}(int[])"/>
/// owns its memory and frees it on <see cref="Dispose"/>; views made by <see cref="Reshape"/> and
/// <see cref="Slice"/> share the owner's memory, do not own it, and must not outlive it.
/// </summary>
/// <typeparam name="T">The element type: <see cref="float"/> for activations and weights, <see cref="int"/> for ids and masks.</typeparam>
public sealed class Tensor<T> : IDisposable, ITensorInfo
    where T : unmanaged
{
    private readonly DeviceStorage<T> storage;
    private readonly bool owner;

    internal Tensor(Device device, DeviceStorage<T> storage, long offset, TensorShape shape, bool owner)
    {
        Device = device;
        this.storage = storage;
        Offset = offset;
        Shape = shape;
        this.owner = owner;
    }

    /// <summary>The device holding the data.</summary>
    public Device Device { get; }

    /// <summary>The dimensions.</summary>
    public TensorShape Shape { get; }

    /// <summary>The number of elements.</summary>
    public long Length => Shape.ElementCount;

    /// <summary>Where this tensor starts inside its owner's memory, in elements.</summary>
    public long Offset { get; }

    /// <summary>True when this tensor frees its memory on <see cref="Dispose"/>.</summary>
    public bool IsOwner => owner;

    /// <summary>True once the memory behind this tensor has been freed.</summary>
    public bool IsDisposed => storage.IsDisposed;

    /// <summary>The managed array behind a <see cref="DeviceKind.Cpu"/> tensor, sliced to this tensor.</summary>
    internal Span<T> HostSpan
    {
        get
        {
            var host = (HostStorage<T>)storage;
            return host.Array.AsSpan((int)Offset, (int)Length);
        }
    }

    /// <summary>The ILGPU view behind an accelerator tensor, sliced to this tensor.</summary>
    internal ArrayView<T> View => ((AcceleratorStorage<T>)storage).Buffer.View.SubView(Offset, Length);

    /// <summary>A view of the same elements with another shape of the same element count.</summary>
    /// <exception cref="ArgumentException">The element counts differ.</exception>
    public Tensor<T> Reshape(params int[] shape)
    {
        ThrowIfDisposed();
        var newShape = TensorShape.Create(shape, "Tensor.Reshape");
        if (newShape.ElementCount != Length)
        {
            throw new ArgumentException($"Tensor.Reshape: cannot view {Shape} ({Length} elements) as {newShape} ({newShape.ElementCount} elements).");
        }

        return new Tensor<T>(Device, storage, Offset, newShape, owner: false);
    }

    /// <summary>A view of <paramref name="shape"/>'s element count starting <paramref name="offset"/> elements into this tensor.</summary>
    /// <exception cref="ArgumentException">The view does not fit inside this tensor.</exception>
    public Tensor<T> Slice(long offset, params int[] shape)
    {
        ThrowIfDisposed();
        var newShape = TensorShape.Create(shape, "Tensor.Slice");
        if (offset < 0 || offset > Length || newShape.ElementCount > Length - offset)
        {
            throw new ArgumentException(
                $"Tensor.Slice: {newShape} at offset {offset} does not fit inside {Shape} ({Length} elements).");
        }

        return new Tensor<T>(Device, storage, Offset + offset, newShape, owner: false);
    }

    /// <summary>Copies host data into the tensor; <paramref name="source"/> must have exactly <see cref="Length"/> elements.</summary>
    public void CopyFrom(ReadOnlySpan<T> source)
    {
        ThrowIfDisposed();
        if (source.Length != Length)
        {
            throw new ArgumentException($"Tensor.CopyFrom: source has {source.Length} elements, tensor {Shape} has {Length}.", nameof(source));
        }

        if (Length == 0)
        {
            return;
        }

        Device.Backend.Upload(this, source);
    }

    /// <summary>Copies the tensor into host memory; <paramref name="destination"/> must have exactly <see cref="Length"/> elements.</summary>
    public void CopyTo(Span<T> destination)
    {
        ThrowIfDisposed();
        if (destination.Length != Length)
        {
            throw new ArgumentException($"Tensor.CopyTo: destination has {destination.Length} elements, tensor {Shape} has {Length}.", nameof(destination));
        }

        if (Length == 0)
        {
            return;
        }

        Device.Backend.Download(this, destination);
    }

    /// <summary>Copies this tensor into another tensor of the same element count on the same device.</summary>
    public void CopyTo(Tensor<T> destination)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ThrowIfDisposed();
        destination.ThrowIfDisposed();
        if (!ReferenceEquals(destination.Device, Device) || destination.Length != Length)
        {
            throw new ArgumentException(
                $"Tensor.CopyTo: destination {destination.Shape} on {destination.Device.Name} must hold {Length} elements on {Device.Name}.", nameof(destination));
        }

        if (Length == 0)
        {
            return;
        }

        Device.Backend.Copy(this, destination);
    }

    /// <summary>Copies the tensor into a new host array.</summary>
    public T[] ToArray()
    {
        var result = new T[Length];
        CopyTo(result);
        return result;
    }

    /// <summary>Sets every element to <paramref name="value"/>.</summary>
    public void Fill(T value)
    {
        ThrowIfDisposed();
        if (Length == 0)
        {
            return;
        }

        Device.Backend.Fill(this, value);
    }

    /// <summary>Frees the memory if this tensor owns it; views do nothing.</summary>
    public void Dispose()
    {
        if (owner)
        {
            storage.Dispose();
        }
    }

    internal void ThrowIfDisposed()
    {
        if (storage.IsDisposed)
        {
            throw new ObjectDisposedException(nameof(Tensor<T>), $"A tensor {Shape} on {Device.Name} was used after its memory was freed.");
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"Tensor<{typeof(T).Name}>{Shape} on {Device.Name}";

    internal static int SizeOfElement => Marshal.SizeOf<T>();
}
