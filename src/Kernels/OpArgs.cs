using System.Globalization;
using System.Runtime.CompilerServices;
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
/// <remarks>
/// A struct with inline room for its operands, and messages formatted only on failure (interpolated
/// <see cref="Require(bool, ref RequireMessage)"/> arguments are not built while the condition holds):
/// validation allocates nothing on success. The fluent methods return the updated value, so use it as
/// <c>var args = new OpArgs(op).Add(...).Add(...)</c> or call them on a local variable; a copy passed to a
/// helper method can check and fail, but operands it adds do not reach the caller's copy.
/// </remarks>
internal struct OpArgs
{
    private const int InlineOperands = 16;

    private readonly string op;
    private Operands operands;
    private List<Operand>? overflow;
    private int count;
    private Device? device;

    public OpArgs(string op) => this.op = op;

    /// <summary>The device every operand lives on.</summary>
    public readonly Device Device => device ?? throw new InvalidOperationException($"{op}: no operands were given.");

    /// <summary>The backend of the device every operand lives on.</summary>
    public readonly Backend Backend => Device.Backend;

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
                $"{op}: operand '{name}' is on device '{tensor.Device}', but '{OperandAt(0).Name}' is on '{device}'. All operands must be on one device.",
                name);
        }

        // Kernels index with 32-bit integers; the backing buffer must be addressable too.
        if (tensor.Offset + tensor.Length > int.MaxValue)
        {
            throw new ArgumentException(
                $"{op}: operand '{name}' {tensor.Shape} spans {tensor.Offset + tensor.Length} elements, more than 32-bit indexing allows ({int.MaxValue}).",
                name);
        }

        if (count < InlineOperands)
        {
            operands[count] = new Operand(name, tensor);
        }
        else
        {
            (overflow ??= []).Add(new Operand(name, tensor));
        }

        count++;
        return this;
    }

    /// <summary>Throws an <see cref="ArgumentException"/> naming the op and all shapes unless <paramref name="condition"/> holds.</summary>
    public readonly OpArgs Require(bool condition, string expectation)
    {
        if (!condition)
        {
            Fail(expectation);
        }

        return this;
    }

    /// <summary>As <see cref="Require(bool, string)"/>; an interpolated message is formatted only when <paramref name="condition"/> fails.</summary>
    public readonly OpArgs Require(bool condition, [InterpolatedStringHandlerArgument("condition")] ref RequireMessage expectation)
    {
        if (!condition)
        {
            Fail(expectation.ToStringAndClear());
        }

        return this;
    }

    /// <summary>Requires <paramref name="tensor"/> to have exactly <paramref name="rank"/> dimensions.</summary>
    public readonly OpArgs RequireRank<T>(string name, Tensor<T>? tensor, int rank)
        where T : unmanaged
    {
        return tensor is null ? this : Require(tensor.Shape.Rank == rank, $"'{name}' must have rank {rank}");
    }

    /// <summary>Requires <paramref name="tensor"/> to have exactly the given shape.</summary>
    public readonly OpArgs RequireShape<T>(string name, Tensor<T>? tensor, params ReadOnlySpan<int> shape)
        where T : unmanaged
    {
        if (tensor is not null && !tensor.Shape.Dims.SequenceEqual(shape))
        {
            Fail($"'{name}' must have shape {TensorShape.Format(shape)}");
        }

        return this;
    }

    /// <summary>Requires a value computed from shapes to fit 32-bit indexing and returns it.</summary>
    public readonly int ToInt32(long value, string what)
    {
        if (value is < 0 or > int.MaxValue)
        {
            Fail($"{what} = {value} does not fit 32-bit indexing");
        }

        return (int)value;
    }

    /// <summary>Throws the op's <see cref="ArgumentException"/>.</summary>
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public readonly void Fail(string expectation)
    {
        var message = new StringBuilder();
        message.Append(op).Append(": ").Append(expectation).Append(". Operands:");
        for (int i = 0; i < count; i++)
        {
            var (name, tensor) = OperandAt(i);
            message.Append(' ').Append(name).Append(' ').Append(tensor.Shape.ToString()).Append(',');
        }

        if (count > 0)
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

    private readonly Operand OperandAt(int i) => i < InlineOperands ? operands[i] : overflow![i - InlineOperands];

    private readonly record struct Operand(string Name, ITensorInfo Tensor);

    [InlineArray(InlineOperands)]
    private struct Operands
    {
        private Operand element;
    }
}

/// <summary>
/// The message of <see cref="OpArgs.Require(bool, ref RequireMessage)"/>: an interpolated string that is
/// formatted (invariant culture) only when the requirement fails, so checks that pass allocate nothing.
/// </summary>
[InterpolatedStringHandler]
internal ref struct RequireMessage
{
    private DefaultInterpolatedStringHandler inner;
    private readonly bool active;

    public RequireMessage(int literalLength, int formattedCount, bool condition, out bool shouldAppend)
    {
        active = !condition;
        shouldAppend = active;
        inner = active ? new DefaultInterpolatedStringHandler(literalLength, formattedCount, CultureInfo.InvariantCulture) : default;
    }

    public void AppendLiteral(string value) => inner.AppendLiteral(value);

    public void AppendFormatted<T>(T value) => inner.AppendFormatted(value);

    public void AppendFormatted<T>(T value, string? format) => inner.AppendFormatted(value, format);

    public string ToStringAndClear() => active ? inner.ToStringAndClear() : string.Empty;
}
