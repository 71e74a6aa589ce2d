using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Bad input to <see cref="Attention"/> throws an <see cref="ArgumentException"/> that names the op and
/// the operands' shapes, before anything is written.
/// </summary>
public sealed class AttentionValidationTests : IDisposable
{
    private const int B = 2;
    private const int H = 2;
    private const int Tq = 5;
    private const int Tk = 7;
    private const int D = 8;
    private const int Hd = H * D;
    private static readonly AttentionShape Shape = new(B, H, Tq, Tk, D);

    private readonly Device device = new CpuDevice(1);
    private readonly List<IDisposable> owned = [];

    /// <summary>Frees the tensors and the device.</summary>
    public void Dispose()
    {
        foreach (var tensor in owned)
        {
            tensor.Dispose();
        }

        device.Dispose();
    }

    [Fact]
    public void ValidCallsRun()
    {
        var f = NewForward();
        f.Run();
        Assert.DoesNotContain(f.Output.Tensor.ToArray(), float.IsNaN);
        var g = NewBackward(f);
        g.Run();
        Assert.DoesNotContain(g.Dq.Tensor.ToArray(), float.IsNaN);
    }

    [Fact]
    public void MissingTensor()
    {
        var f = NewForward();
        f.K = default;
        Throws(f.Run, "Attention.Forward", "'k' is null");
    }

    [Fact]
    public void DisposedTensor()
    {
        var f = NewForward();
        f.V.Tensor.Dispose();
        Throws(f.Run, "Attention.Forward", "disposed");
    }

    [Fact]
    public void OperandOnAnotherDevice()
    {
        using var other = new CpuDevice(1);
        using var k = other.Allocate(B, Tk, Hd);
        var f = NewForward();
        f.K = new AttentionOperand(k);
        Throws(f.Run, "Attention.Forward", "one device");
    }

    [Fact]
    public void OperandShapes()
    {
        var f = NewForward();
        f.Q = new AttentionOperand(Own(device.Allocate(B * Tq, Hd)));
        Throws(f.Run, "Attention.Forward", "'q' must be [2, 5, width]", "[10, 16]");

        f = NewForward();
        f.K = new AttentionOperand(Own(device.Allocate(B, Tq, Hd)));
        Throws(f.Run, "Attention.Forward", "'k' must be [2, 7, width]", "k [2, 5, 16]");

        f = NewForward();
        f.Output = new AttentionOperand(Own(device.Allocate(B + 1, Tq, Hd)));
        Throws(f.Run, "Attention.Forward", "'output' must be [2, 5, width]");
    }

    [Fact]
    public void FirstColumnOutsideWidth()
    {
        var f = NewForward();
        f.V = f.V with { FirstColumn = 1 };
        Throws(f.Run, "Attention.Forward", "FirstColumn + kvHeads·headDim = 17 ≤ width", "v [2, 7, 16]");

        f = NewForward();
        f.Q = f.Q with { FirstColumn = -1 };
        Throws(f.Run, "Attention.Forward", "FirstColumn -1 ≥ 0");
    }

    [Theory]
    [InlineData(2, 0, 5, 7, 8, "heads ≥ 1")]
    [InlineData(2, 2, -1, 7, 8, "lengths ≥ 0")]
    [InlineData(-1, 2, 5, 7, 8, "batch ≥ 0")]
    [InlineData(2, 2, 5, 7, 0, "head dimension must be 1 to 128")]
    [InlineData(2, 2, 5, 7, 129, "head dimension must be 1 to 128")]
    public void BadSizes(int batch, int heads, int tq, int tk, int dim, string expected)
    {
        var f = NewForward();
        f.Shape = new AttentionShape(batch, heads, tq, tk, dim);
        Throws(f.Run, "Attention.Forward", expected);
    }

    [Theory]
    [InlineData(2, 3, "got 3")]
    [InlineData(4, 3, "got 3")]
    [InlineData(2, -1, "got -1")]
    public void KvHeadsMustDivideHeads(int heads, int kvHeads, string expected)
    {
        var f = NewForward();
        f.Shape = new AttentionShape(B, heads, Tq, Tk, D, kvHeads);
        Throws(f.Run, "Attention.Forward", "KvHeads must be 0 (= heads) or a positive divisor of heads", expected);
    }

    [Fact]
    public void GroupedKeysAndValuesHoldKvHeadsColumns()
    {
        // One key/value head for both query heads: K, V, dK and dV are D wide, and dK, dV side by side in one buffer do not meet.
        var f = NewForward();
        f.Shape = new AttentionShape(B, H, Tq, Tk, D, KvHeads: 1);
        f.K = new AttentionOperand(Own(device.FromHost<float>(TestData.Normal(8, B * Tk * D), B, Tk, D)));
        f.V = new AttentionOperand(Own(device.FromHost<float>(TestData.Normal(9, B * Tk * D), B, Tk, D)));
        f.Run();
        Assert.DoesNotContain(f.Output.Tensor.ToArray(), float.IsNaN);
        var g = NewBackward(f);
        var dkv = Own(TestData.Poisoned(device, B, Tk, 2 * D));
        (g.Dk, g.Dv) = (new AttentionOperand(dkv, 0), new AttentionOperand(dkv, D));
        g.Run();
        Assert.DoesNotContain(dkv.ToArray(), float.IsNaN);

        g = NewBackward(f);
        (g.Dk, g.Dv) = (new AttentionOperand(dkv, 0), new AttentionOperand(dkv, D - 1));
        Throws(g.Run, "Attention.Backward", "'dk' overlaps 'dv'");

        var narrow = f.K;
        f.K = new AttentionOperand(Own(device.Allocate(B, Tk, D - 1)));
        Throws(f.Run, "Attention.Forward", "'k' must be [2, 7, width]", "FirstColumn + kvHeads·headDim = 8 ≤ width");

        f.K = narrow with { FirstColumn = 1 };
        Throws(f.Run, "Attention.Forward", "FirstColumn + kvHeads·headDim = 9 ≤ width");

        f.K = narrow;
        f.Q = new AttentionOperand(Own(device.Allocate(B, Tq, D)));
        Throws(f.Run, "Attention.Forward", "'q' must be [2, 5, width]", "FirstColumn + heads·headDim = 16 ≤ width");

        g = NewBackward(f);
        g.F.Q = new AttentionOperand(Own(device.FromHost<float>(TestData.Normal(4, B * Tq * Hd), B, Tq, Hd)));
        g.Dv = new AttentionOperand(Own(device.Allocate(B, Tk, D - 1)));
        Throws(g.Run, "Attention.Backward", "'dv' must be [2, 7, width]", "kvHeads·headDim");

        using var dp = device.Allocate(B, H, Tq, Tk);
        Throws(() => Attention.ProbabilityGradient(new AttentionOperand(Own(device.Allocate(B, Tk, D - 1))), g.DOutput, f.Shape, null, false, dp), "Attention.ProbabilityGradient", "'v' must be");
    }

    [Fact]
    public void HeadsTimesDimOverflowsInt32()
    {
        var f = NewForward();
        f.Shape = new AttentionShape(B, 1 << 24, Tq, Tk, 128);
        Throws(f.Run, "Attention.Forward", "does not fit 32-bit indexing");
    }

    [Fact]
    public void SideTensorShapes()
    {
        var f = NewForward();
        f.Lse = Own(device.Allocate(B, Tq, H));
        Throws(f.Run, "Attention.Forward", "'logSumExp' must have shape [2, 2, 5]", "logSumExp [2, 5, 2]");

        f = NewForward();
        f.Probabilities = Own(device.Allocate(B, H, Tq, Tq));
        Throws(f.Run, "Attention.Forward", "'probabilities' must have shape [2, 2, 5, 7]");

        f = NewForward();
        f.Mask = Own(device.Allocate<int>(B, Tq));
        Throws(f.Run, "Attention.Forward", "'keyMask' must have shape [2, 7]");
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void ScaleMustBeFinite(float scale)
    {
        var f = NewForward();
        f.Scale = scale;
        Throws(f.Run, "Attention.Forward", "scale must be finite");
    }

    [Fact]
    public void OutputMayNotAliasInputs()
    {
        // Self-attention with Q = K = V and the output written over them.
        using var x = device.FromHost<float>(TestData.Normal(1, B * Tq * Hd), B, Tq, Hd);
        var f = NewForward();
        f.Shape = new AttentionShape(B, H, Tq, Tq, D);
        f.Lse = Own(device.Allocate(B, H, Tq));
        (f.Q, f.K, f.V, f.Output) = (new(x), new(x), new(x), new(x));
        Throws(f.Run, "Attention.Forward", "'output' overlaps 'q'");

        // Probabilities written over the logsumexp buffer (a view of the same memory).
        f = NewForward();
        using var both = device.Allocate(B * H * Tq * Tk);
        f.Probabilities = both.Reshape(B, H, Tq, Tk);
        f.Lse = both.Slice(0, B, H, Tq);
        Throws(f.Run, "Attention.Forward", "'logSumExp' overlaps 'probabilities'");
    }

    [Fact]
    public void OutputBesideInputsInOnePackedBufferIsAllowed()
    {
        // [q | k | v | output] in one buffer: the output columns meet no input columns.
        using var packed = device.FromHost<float>(TestData.Normal(2, B * Tq * 4 * Hd), B, Tq, 4 * Hd);
        using var lse = device.Allocate(B, H, Tq);
        Attention.Forward(new(packed, 0), new(packed, Hd), new(packed, 2 * Hd), new(packed, 3 * Hd), lse, new AttentionShape(B, H, Tq, Tq, D), 0.3f);
        Assert.DoesNotContain(lse.ToArray(), float.IsNaN);
    }

    [Fact]
    public void GradientsMayNotOverlap()
    {
        var f = NewForward();
        f.Run();
        var g = NewBackward(f);
        using var packed = TestData.Poisoned(device, B, Tk, 2 * Hd);
        g.Dk = new AttentionOperand(packed, 0);
        g.Dv = new AttentionOperand(packed, D); // columns [8, 24) meet dk's [0, 16)
        Throws(g.Run, "Attention.Backward", "'dk' overlaps 'dv'");

        g = NewBackward(f);
        g.Dq = g.DOutput;
        Throws(g.Run, "Attention.Backward", "'dq' overlaps 'dOutput'");

        g = NewBackward(f);
        g.Delta = f.Lse;
        Throws(g.Run, "Attention.Backward", "'delta' overlaps 'logSumExp'");
    }

    [Fact]
    public void BackwardShapes()
    {
        var f = NewForward();
        f.Run();
        var g = NewBackward(f);
        g.Delta = Own(device.Allocate(B, H, Tk));
        Throws(g.Run, "Attention.Backward", "'delta' must have shape [2, 2, 5]");

        g = NewBackward(f);
        g.DOutput = new AttentionOperand(Own(device.Allocate(B, Tk, Hd)));
        Throws(g.Run, "Attention.Backward", "'dOutput' must be [2, 5, width]");

        g = NewBackward(f);
        g.Dv = new AttentionOperand(Own(device.Allocate(B, Tk, Hd - 1)));
        Throws(g.Run, "Attention.Backward", "'dv' must be [2, 7, width]");
    }

    [Fact]
    public void NothingIsWrittenWhenValidationFails()
    {
        var f = NewForward();
        f.Probabilities = Own(device.Allocate(B, H, Tq, Tq));
        Assert.Throws<ArgumentException>(f.Run);
        Assert.All(f.Output.Tensor.ToArray(), x => Assert.True(float.IsNaN(x)));
        Assert.All(f.Lse.ToArray(), x => Assert.True(float.IsNaN(x)));
    }

    [SkippableFact]
    public void AliasingIsDetectedOnIlgpu()
    {
        var gpu = Backends.Require("ilgpu-cpu");
        using var x = gpu.FromHost<float>(TestData.Normal(3, B * Tq * Hd), B, Tq, Hd);
        using var lse = gpu.Allocate(B, H, Tq);
        var e = Assert.Throws<ArgumentException>(() =>
            Attention.Forward(new(x), new(x), new(x), new(x.Reshape(B, Tq, Hd)), lse, new AttentionShape(B, H, Tq, Tq, D), 0.3f));
        Assert.Contains("'output' overlaps 'q'", e.Message, StringComparison.Ordinal);
    }

    private static void Throws(Action action, params string[] fragments)
    {
        var e = Assert.ThrowsAny<ArgumentException>(action);
        foreach (string fragment in fragments)
        {
            Assert.Contains(fragment, e.Message, StringComparison.Ordinal);
        }
    }

    private T Own<T>(T tensor)
        where T : IDisposable
    {
        owned.Add(tensor);
        return tensor;
    }

    private ForwardArgs NewForward()
    {
        return new ForwardArgs
        {
            Q = new AttentionOperand(Own(device.FromHost<float>(TestData.Normal(4, B * Tq * Hd), B, Tq, Hd))),
            K = new AttentionOperand(Own(device.FromHost<float>(TestData.Normal(5, B * Tk * Hd), B, Tk, Hd))),
            V = new AttentionOperand(Own(device.FromHost<float>(TestData.Normal(6, B * Tk * Hd), B, Tk, Hd))),
            Output = new AttentionOperand(Own(TestData.Poisoned(device, B, Tq, Hd))),
            Lse = Own(TestData.Poisoned(device, B, H, Tq)),
            Shape = Shape,
            Scale = 0.35f,
        };
    }

    private BackwardArgs NewBackward(ForwardArgs f)
    {
        return new BackwardArgs
        {
            F = f,
            DOutput = new AttentionOperand(Own(device.FromHost<float>(TestData.Normal(7, B * Tq * Hd), B, Tq, Hd))),
            Dq = new AttentionOperand(Own(TestData.Poisoned(device, B, Tq, Hd))),
            Dk = new AttentionOperand(Own(TestData.Poisoned(device, B, Tk, Hd))),
            Dv = new AttentionOperand(Own(TestData.Poisoned(device, B, Tk, Hd))),
            Delta = Own(TestData.Poisoned(device, B, H, Tq)),
        };
    }

    private sealed class ForwardArgs
    {
        public AttentionOperand Q { get; set; }

        public AttentionOperand K { get; set; }

        public AttentionOperand V { get; set; }

        public AttentionOperand Output { get; set; }

        public Tensor<float> Lse { get; set; } = null!;

        public AttentionShape Shape { get; set; }

        public float Scale { get; set; }

        public Tensor<int>? Mask { get; set; }

        public Tensor<float>? Probabilities { get; set; }

        public void Run() => Attention.Forward(Q, K, V, Output, Lse, Shape, Scale, Mask, causal: false, Probabilities);
    }

    private sealed class BackwardArgs
    {
        public ForwardArgs F { get; set; } = null!;

        public AttentionOperand DOutput { get; set; }

        public AttentionOperand Dq { get; set; }

        public AttentionOperand Dk { get; set; }

        public AttentionOperand Dv { get; set; }

        public Tensor<float> Delta { get; set; } = null!;

        public void Run() => Attention.Backward(F.Q, F.K, F.V, F.Output, DOutput, F.Lse, F.Shape, F.Scale, F.Mask, causal: false, Dq, Dk, Dv, Delta);
    }
}
