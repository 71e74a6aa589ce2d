using Headlight.Kernels;

namespace Headlight.Tests.Kernels;

/// <summary>Bad operands are rejected before any launch with an ArgumentException naming the op and the shapes.</summary>
public sealed class OpValidationTests
{
    [Theory]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void Shape_mismatch_names_op_and_shapes(string backend)
    {
        var device = Backends.Require(backend);
        using var a = device.Allocate<float>(2, 3);
        using var b = device.Allocate<float>(3, 2);
        using var y = device.Allocate<float>(2, 3);
        var e = Assert.Throws<ArgumentException>(() => Elementwise.Add(a, b, y));
        Assert.Contains("Elementwise.Add", e.Message, StringComparison.Ordinal);
        Assert.Contains("a [2, 3]", e.Message, StringComparison.Ordinal);
        Assert.Contains("b [3, 2]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Null_operand_is_an_argument_error()
    {
        var device = Backends.Require("cpu");
        using var a = device.Allocate<float>(4);
        var e = Assert.ThrowsAny<ArgumentException>(() => Elementwise.Scale(a, 2f, null!));
        Assert.Contains("Elementwise.Scale", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Disposed_operand_is_an_argument_error()
    {
        var device = Backends.Require("cpu");
        var a = device.Allocate<float>(4);
        using var y = device.Allocate<float>(4);
        a.Dispose();
        var e = Assert.Throws<ArgumentException>(() => Elementwise.Scale(a, 2f, y));
        Assert.Contains("disposed", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Operands_on_two_devices_are_an_argument_error()
    {
        var cpu = Backends.Require("cpu");
        var sim = Backends.Require("ilgpu-cpu");
        using var a = cpu.Allocate<float>(4);
        using var y = sim.Allocate<float>(4);
        var e = Assert.Throws<ArgumentException>(() => Elementwise.Scale(a, 2f, y));
        Assert.Contains("one device", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Views_beyond_32_bit_indexing_are_rejected()
    {
        var e = Assert.Throws<ArgumentException>(() => TensorShape.Create([int.MaxValue, int.MaxValue, int.MaxValue], "test"));
        Assert.Contains("64-bit", e.Message, StringComparison.Ordinal);

        // 2^31 floats: ILGPU's CPU accelerator reserves the memory without touching it.
        var sim = Backends.Require("ilgpu-cpu");
        using var huge = sim.Allocate<float>(1 << 16, 1 << 15);
        var tooBig = Assert.Throws<ArgumentException>(() => Elementwise.Scale(huge, 2f, huge));
        Assert.Contains("32-bit", tooBig.Message, StringComparison.Ordinal);
    }
}
