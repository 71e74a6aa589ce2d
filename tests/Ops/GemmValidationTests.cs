using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Bad input to <see cref="Gemm"/> throws an <see cref="ArgumentException"/> naming the op and the shapes
/// before anything runs: the output keeps its old contents.
/// </summary>
public sealed class GemmValidationTests : IDisposable
{
    private readonly CpuDevice device = new();

    /// <inheritdoc />
    public void Dispose() => device.Dispose();

    [Fact]
    public void Forward_rejects_null_operands()
    {
        using var a = device.Allocate(2, 3);
        using var b = device.Allocate(3, 4);
        using var c = device.Allocate(2, 4);
        Assert.Contains("Gemm.Forward", Assert.Throws<ArgumentNullException>(() => Gemm.Forward(null!, b, c)).Message);
        Assert.Contains("'b'", Assert.Throws<ArgumentNullException>(() => Gemm.Forward(a, null!, c)).Message);
        Assert.Contains("'c'", Assert.Throws<ArgumentNullException>(() => Gemm.Forward(a, b, null!)).Message);
    }

    [Fact]
    public void Forward_rejects_mismatched_inner_dimensions()
    {
        using var a = device.Allocate(2, 3);
        using var b = device.Allocate(4, 5);
        using var c = Sentinel(2, 5);
        ExpectForward(() => Gemm.Forward(a, b, c), c, "[2, 3]", "[4, 5]", "[2, 5]");

        // With transposeB the weight is [n, k]: [5, 4] has k = 4, not 3.
        using var bt = device.Allocate(5, 4);
        ExpectForward(() => Gemm.Forward(a, bt, c, transposeB: true), c, "[5, 4]");
    }

    [Fact]
    public void Forward_rejects_a_wrong_output_shape()
    {
        using var a = device.Allocate(2, 7, 3);
        using var b = device.Allocate(3, 5);
        using var flat = Sentinel(14, 5);
        ExpectForward(() => Gemm.Forward(a, b, flat), flat, "[2, 7, 3]", "[14, 5]", "[2, 7, 5]");
        using var wide = Sentinel(2, 7, 6);
        ExpectForward(() => Gemm.Forward(a, b, wide), wide, "[2, 7, 6]");
    }

    [Fact]
    public void Forward_rejects_wrong_bias_and_preactivation_shapes()
    {
        using var a = device.Allocate(2, 3);
        using var b = device.Allocate(3, 4);
        using var c = Sentinel(2, 4);
        using var bias = device.Allocate(3);
        ExpectForward(() => Gemm.Forward(a, b, c, bias: bias), c, "bias [3]", "[4]");
        using var bias2 = device.Allocate(1, 4);
        ExpectForward(() => Gemm.Forward(a, b, c, bias: bias2), c, "bias [1, 4]");
        using var pre = device.Allocate(4, 2);
        ExpectForward(() => Gemm.Forward(a, b, c, epilogue: Epilogue.GeluErf, preActivation: pre), c, "preActivation [4, 2]");
    }

    [Fact]
    public void Forward_rejects_bad_batched_shapes()
    {
        using var c = Sentinel(2, 3, 5);

        // Batch dimensions differ.
        using var a = device.Allocate(2, 3, 4);
        using var b3 = device.Allocate(3, 4, 5);
        ExpectForward(() => Gemm.Forward(a, b3, c), c, "[2, 3, 4]", "[3, 4, 5]");

        // A transposed a must be a matrix (rank ≥ 2).
        using var a1 = device.Allocate(4);
        using var b2 = device.Allocate(4, 5);
        ExpectForward(() => Gemm.Forward(a1, b2, c, transposeA: true), c, "rank 2", "[4]");

        // A rank-1 b is no matrix either.
        using var b1 = device.Allocate(4);
        ExpectForward(() => Gemm.Forward(a, b1, c), c, "b [4]");

        // Transposed batched a [2, 4, 3] is op(a) [2, 3, 4]; c must be [2, 3, 5].
        using var at = device.Allocate(2, 4, 3);
        using var cWrong = Sentinel(2, 4, 5);
        ExpectForward(() => Gemm.Forward(at, b2, cWrong, transposeA: true), cWrong, "[2, 3, 5]");

        // A scalar a has no k.
        using var scalar = device.Allocate<float>();
        ExpectForward(() => Gemm.Forward(scalar, b2, c), c, "at least one dimension");
    }

    [Fact]
    public void Forward_rejects_aliasing_and_unknown_epilogues()
    {
        using var a = device.Allocate(4, 4);
        using var b = device.Allocate(4, 4);
        using var c = Sentinel(4, 4);
        ExpectForward(() => Gemm.Forward(a, b, a), c, "c must not be a or b");
        ExpectForward(() => Gemm.Forward(a, b, b), c, "c must not be a or b");
        ExpectForward(() => Gemm.Forward(a, b, c, epilogue: Epilogue.GeluErf, preActivation: c), c, "preActivation must not be");
        ExpectForward(() => Gemm.Forward(a, b, c, epilogue: (Epilogue)7), c, "epilogue");
    }

    [Fact]
    public void Forward_rejects_disposed_operands()
    {
        using var b = device.Allocate(3, 4);
        using var c = Sentinel(2, 4);
        var a = device.Allocate(2, 3);
        a.Dispose();
        var e = Assert.Throws<ArgumentException>(() => Gemm.Forward(a, b, c));
        Assert.Contains("Gemm.Forward", e.Message);
        Assert.Contains("disposed", e.Message);
        AssertUntouched(c);
    }

    [Fact]
    public void Forward_rejects_operands_on_two_devices()
    {
        using var other = new CpuDevice();
        using var a = device.Allocate(2, 3);
        using var b = other.Allocate(3, 4);
        using var c = Sentinel(2, 4);
        var e = Assert.Throws<ArgumentException>(() => Gemm.Forward(a, b, c));
        Assert.Contains("Gemm.Forward", e.Message);
        Assert.Contains("one device", e.Message);
        AssertUntouched(c);
    }

    [SkippableFact]
    public void Forward_rejects_a_cpu_tensor_with_an_ilgpu_tensor()
    {
        var ilgpu = Backends.Require("ilgpu-cpu");
        using var a = device.Allocate(2, 3);
        using var b = ilgpu.Allocate(3, 4);
        using var c = Sentinel(2, 4);
        var e = Assert.Throws<ArgumentException>(() => Gemm.Forward(a, b, c));
        Assert.Contains("one device", e.Message);
        AssertUntouched(c);
    }

    [Fact]
    public void Forward_rejects_problems_beyond_32_bit_indexing()
    {
        // Empty tensors whose per-batch matrices would still need more than 2³¹ elements of indexing.
        using var a = device.Allocate(0, 50_000, 50_000);
        using var b = device.Allocate(0, 50_000, 4);
        using var c = device.Allocate(0, 50_000, 4);
        var e = Assert.Throws<ArgumentException>(() => Gemm.Forward(a, b, c));
        Assert.Contains("32-bit", e.Message);
        Assert.Contains("[0, 50000, 50000]", e.Message);

        // Linear form: 50,000 × 50,000 rows of nothing is still more rows than an int counts.
        using var rows = device.Allocate(50_000, 50_000, 0);
        using var w = device.Allocate(0, 0);
        using var out0 = device.Allocate(50_000, 50_000, 0);
        e = Assert.Throws<ArgumentException>(() => Gemm.Forward(rows, w, out0));
        Assert.Contains("32-bit", e.Message);
        Assert.Contains("Gemm.Forward", e.Message);
    }

    [Fact]
    public void Backward_rejects_bad_gradient_shapes()
    {
        using var a = device.Allocate(5, 3);
        using var b = device.Allocate(3, 4);
        using var dc = device.Allocate(5, 4);
        using var da = Sentinel(5, 3);
        using var db = Sentinel(3, 4);
        using var dbias = Sentinel(4);

        using var dcWrong = device.Allocate(4, 5);
        ExpectBackward(() => Gemm.Backward(a, b, dcWrong, da, db, dbias), da, "dc [4, 5]", "[5, 4]");
        using var daWrong = Sentinel(3, 5);
        ExpectBackward(() => Gemm.Backward(a, b, dc, daWrong, db, dbias), db, "da [3, 5]");
        using var dbWrong = Sentinel(4, 3);
        ExpectBackward(() => Gemm.Backward(a, b, dc, da, dbWrong, dbias), da, "db [4, 3]");
        using var dbiasWrong = Sentinel(3);
        ExpectBackward(() => Gemm.Backward(a, b, dc, da, db, dbiasWrong), da, "dbias [3]");
        using var bWrong = device.Allocate(4, 4);
        ExpectBackward(() => Gemm.Backward(a, bWrong, dc, da, db, dbias), da, "b [4, 4]");
        AssertUntouched(dbias);
    }

    [Fact]
    public void Backward_rejects_null_inputs_aliasing_and_other_devices()
    {
        using var a = device.Allocate(5, 3);
        using var b = device.Allocate(3, 3);
        using var dc = device.Allocate(5, 3);
        using var db = Sentinel(3, 3);
        Assert.Contains("Gemm.Backward", Assert.Throws<ArgumentNullException>(() => Gemm.Backward(null!, b, dc, null, db, null)).Message);
        Assert.Contains("'dc'", Assert.Throws<ArgumentNullException>(() => Gemm.Backward(a, b, null!, null, db, null)).Message);
        ExpectBackward(() => Gemm.Backward(a, b, dc, null, b, null), db, "'db' must not be a, b or dc");
        ExpectBackward(() => Gemm.Backward(a, b, dc, dc, null, null), db, "'da' must not be a, b or dc");

        using var other = new CpuDevice();
        using var dbElsewhere = other.Allocate(3, 3);
        var e = Assert.Throws<ArgumentException>(() => Gemm.Backward(a, b, dc, null, dbElsewhere, null));
        Assert.Contains("one device", e.Message);
    }

    private Tensor<float> Sentinel(params int[] shape)
    {
        var t = device.Allocate<float>(shape);
        t.Fill(42f);
        return t;
    }

    private static void AssertUntouched(Tensor<float> t) => Assert.All(t.ToArray(), v => Assert.Equal(42f, v));

    private static void ExpectForward(Action call, Tensor<float> output, params string[] fragments) => Expect("Gemm.Forward", call, output, fragments);

    private static void ExpectBackward(Action call, Tensor<float> output, params string[] fragments) => Expect("Gemm.Backward", call, output, fragments);

    private static void Expect(string op, Action call, Tensor<float> output, string[] fragments)
    {
        var e = Assert.Throws<ArgumentException>(call);
        Assert.StartsWith(op + ":", e.Message, StringComparison.Ordinal);
        foreach (string fragment in fragments)
        {
            Assert.Contains(fragment, e.Message, StringComparison.Ordinal);
        }

        AssertUntouched(output);
    }
}
