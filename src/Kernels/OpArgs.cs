using System.Text;

namespace Headlight.Kernels;

/// <summary>What every tensor exposes for validation, whatever its element type.</summary>
internal interface ITensorInfo
{
    Device Device { get; }

    TensorShape Shape { get; }

    long Length { get; }

    bool IsDisposed { get; }
}

/// <summary>
/// Validates an op's operands before anything is launched: present, not freed, all on one device,
/// small enough for 32-bit indexing, and shaped as the op needs. Every failure is an
/// <see cref="ArgumentException"/> whose message names the op and the shapes of all its operands.
/// </summary>
internal sealed class OpArgs
{
    private readonly string op;
    private readonly List<(string Name, ITensorInfo Tensor)> operands = new(8);
    private Device? device;

    public OpArgs(string op) => this.op = op;

    /// <summary>The device every operand lives on.</summary>
    public Device Device => device ?? throw new InvalidOperationException($"{op}: no operands were given.");

    /// <summary>Adds a required operand.</summary>
    public OpArgs Add<T>(string name, Tensor<T>? tensor)
        where T : unmanaged
    {
        if (tensor is null)
        {
            throw new ArgumentNullException(name, $"{op}: operand '{name}' is null.");
        }

        return AddChecked(name, tensor);
    }

    /// <summary>Adds an operand that may be absent.</summary>
    public OpArgs AddOptional<T>(string name, Tensor<T>? tensor)
        where T : unmanaged
    {
        return tensor is null ? this : AddChecked(name, tensor);
    }

    private OpArgs AddChecked<T>(string name, Tensor<T> tensor)
        where T : unmanaged
    {
        if (tensor.IsDisposed)
        {
            throw new ArgumentException($"{op}: operand '{name}' {tensor.Shape} has been disposed.", name);
        }

        if (tensor.Device.IsDisposed)
        {
            throw new ArgumentException($"{op}: operand '{name}' lives on device '{tensor.Device.Name}', which has been disposed.", name);
        }

        if (device is null)
        {
            device = tensor.Device;
        }
        else if (!ReferenceEquals(device, tensor.Device))
        {
            throw new ArgumentException(
                $"{op}: operand '{name}' is on device '{tensor.Device}', but '{operands[0].Name}' is on '{device}'. All operands must be on one device.",
                name);
        }

        // Kernels index with 32-bit integers; the backing buffer must be addressable too.
        if (tensor.Offset + tensor.Length > int.MaxValue)
        {
            throw new ArgumentException(
                $"{op}: operand '{name}' {tensor.Shape} spans {tensor.Offset + tensor.Length} elements, more than 32-bit indexing allows ({int.MaxValue}).",
                name);
        }

        operands.Add((name, tensor));
        return this;
    }

    /// <summary>Throws an <see cref="ArgumentException"/> naming the op and all shapes unless <paramref name="condition"/> holds.</summary>
    public OpArgs Require(bool condition, string expectation)
    {
        if (!condition)
        {
            Fail(expectation);
        }

        return this;
    }

    /// <summary>Requires <paramref name="tensor"/> to have exactly <paramref name="rank"/> dimensions.</summary>
    public OpArgs RequireRank<T>(string name, Tensor<T>? tensor, int rank)
        where T : unmanaged
    {
        return tensor is null ? this : Require(tensor.Shape.Rank == rank, $"'{name}' must have rank {rank}");
    }

    /// <summary>Requires <paramref name="tensor"/> to have exactly the given shape.</summary>
    public OpArgs RequireShape<T>(string name, Tensor<T>? tensor, params ReadOnlySpan<int> shape)
        where T : unmanaged
    {
        return tensor is null
            ? this
            : Require(tensor.Shape.Dims.SequenceEqual(shape), $"'{name}' must have shape {TensorShape.Format(shape)}");
    }

    /// <summary>Requires a value computed from shapes to fit 32-bit indexing and returns it.</summary>
    public int ToInt32(long value, string what)
    {
        if (value is < 0 or > int.MaxValue)
        {
            Fail($"{what} = {value} does not fit 32-bit indexing");
        }

        return (int)value;
    }

    /// <summary>Throws the op's <see cref="ArgumentException"/>.</summary>
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public void Fail(string expectation)
    {
        var message = new StringBuilder();
        message.Append(op).Append(": ").Append(expectation).Append(". Operands:");
        foreach (var (name, tensor) in operands)
        {
            message.Append(' ').Append(name).Append(' ').Append(tensor.Shape.ToString()).Append(',');
        }

        if (operands.Count > 0)
        {
            message.Length--;
        }
        else
        {
            message.Append(" none");
        }

        message.Append('.');
        throw new ArgumentException(message.ToString());
    }
}
