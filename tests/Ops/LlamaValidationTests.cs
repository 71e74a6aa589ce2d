using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Bad input to <see cref="Rope"/>, <see cref="RmsNorm"/> and <see cref="SwiGlu"/> throws an <see cref="ArgumentException"/>
/// naming the op and the operand, before anything is written.
/// </summary>
public sealed class LlamaValidationTests : IDisposable
{
    private readonly CpuDevice cpu = new(1);

    /// <inheritdoc />
    public void Dispose() => cpu.Dispose();

    private static void Rejects(Action op, params string[] fragments)
    {
        var e = Assert.ThrowsAny<ArgumentException>(op);
        foreach (string fragment in fragments)
        {
            Assert.Contains(fragment, e.Message, StringComparison.Ordinal);
        }
    }

    private Tensor<float> Poison(params int[] shape) => TestData.Poisoned(cpu, shape);

    private static void StillPoisoned(Tensor<float> t) => Assert.True(t.ToArray().All(float.IsNaN), $"{t} was written before the op failed.");

    [Fact]
    public void Rope_RejectsBadSizesPositionsAndOverlap()
    {
        // [batch 2, seq 3, width 24]: 2 heads of 10 at column 2.
        using var x = cpu.FromHost<float>(TestData.Normal(1, 2 * 3 * 24), 2, 3, 24);
        using var y = Poison(2, 3, 22);
        using var positions = cpu.FromHost<int>([0, 1, 2, 3, 4, 5], 2, 3);
        using var bad = cpu.FromHost<int>([0, 1, 2, 3, 8, 5], 2, 3);
        using var negative = cpu.FromHost<int>([0, -1, 2, 3, 4, 5], 2, 3);
        using var wrongPositions = cpu.FromHost<int>([0, 1, 2], 3);
        using var table = cpu.FromHost<float>(Rope.Table([1.0, 0.1], 8), 8, 4);
        using var table6 = cpu.FromHost<float>(Rope.Table([1.0, 0.1, 0.01], 8), 8, 6);

        Rejects(() => Rope.Forward(new(x, 2), new(y, 0), 2, 10, 3, positions, table), "Rope.Forward", "rotaryDims (3) must be even");
        Rejects(() => Rope.Forward(new(x, 2), new(y, 0), 2, 10, 12, positions, table), "Rope.Forward", "rotaryDims (12)", "headDim = 10");
        Rejects(() => Rope.Forward(new(x, 2), new(y, 0), 2, 10, 4, positions, table6), "Rope.Forward", "'table' must be [P, rotaryDims] = [P, 4]", "table [8, 6]");
        Rejects(() => Rope.Forward(new(x, 2), new(y, 0), 2, 10, 4, bad, table), "Rope.Forward", "positions[1, 1] = 8", "[0, 8)");
        Rejects(() => Rope.Forward(new(x, 2), new(y, 0), 2, 10, 4, negative, table), "Rope.Forward", "positions[0, 1] = -1");
        Rejects(() => Rope.Forward(new(x, 2), new(y, 0), 2, 10, 4, wrongPositions, table), "Rope.Forward", "'positions' must be [batch, seq] = [2, 3]");
        Rejects(() => Rope.Forward(new(x, 5), new(y, 0), 2, 10, 4, positions, table), "Rope.Forward", "'input'", "FirstColumn + heads·headDim = 25 ≤ width");
        Rejects(() => Rope.Forward(new(x, 2), new(y, 3), 2, 10, 4, positions, table), "Rope.Forward", "'output'", "= 23 ≤ width");
        Rejects(() => Rope.Forward(new(x, 2), new(x, 3), 2, 10, 4, positions, table), "Rope.Forward", "'output' overlaps 'input'");
        Rejects(() => Rope.Forward(new(x, 2), new(y, 0), 2, 10, 4, positions, null!), "Rope.Forward", "'table' is null");
        StillPoisoned(y);

        using var dy = cpu.FromHost<float>(TestData.Normal(2, 2 * 3 * 22), 2, 3, 22);
        using var dx = Poison(2, 3, 24);
        using var dxShort = Poison(2, 2, 24);
        Rejects(() => Rope.Backward(new(dy, 0), new(dxShort, 0), 2, 10, 4, positions, table), "Rope.Backward", "'dInput' must be [batch, seq, width] = [2, 3, width]");
        Rejects(() => Rope.Backward(new(dy, 0), new(dx, 0), 2, 10, 4, bad, table, accumulate: true), "Rope.Backward", "positions[1, 1] = 8");
        Rejects(() => Rope.Relevance(new(y, 0), new(dy, 0), new(dx, 0), 2, 10, 4, positions, table, -1f), "Rope.Relevance", "epsilon");
        Rejects(() => Rope.Relevance(new(dy, 0), new(dy, 0), new(dy, 0), 2, 10, 4, positions, table, 0.1f), "Rope.Relevance", "'dInput' overlaps 'output'");
        StillPoisoned(dx);
    }

    [Fact]
    public void RmsNorm_RejectsMisshapedOperands()
    {
        using var x = cpu.FromHost<float>(TestData.Normal(1, 15), 3, 5);
        using var gamma = cpu.FromHost<float>(TestData.Normal(2, 5), 5);
        using var gammaWrong = cpu.FromHost<float>(TestData.Normal(2, 4), 4);
        using var rstd = cpu.FromHost<float>([1f, 1f, 1f], 3);
        using var rstdWrong = Poison(2);
        using var y = Poison(3, 5);
        using var yWrong = Poison(5, 3);
        Rejects(() => RmsNorm.Forward(x, gamma, yWrong, 1e-5f), "RmsNorm.Forward", "y must have x's shape", "y [5, 3]");
        Rejects(() => RmsNorm.Forward(x, gammaWrong, y, 1e-5f), "RmsNorm.Forward", "gamma must be [d] = [5]", "gamma [4]");
        Rejects(() => RmsNorm.Forward(x, gamma, y, 1e-5f, rstdWrong), "RmsNorm.Forward", "rstd must have one element per row (3)");
        Rejects(() => RmsNorm.Forward(x, gamma, y, 0f), "RmsNorm.Forward", "epsilon must be positive");
        StillPoisoned(y);
        StillPoisoned(rstdWrong);

        using var dGammaWrong = Poison(6);
        Rejects(() => RmsNorm.Backward(x, x, gamma, rstd, yWrong), "RmsNorm.Backward", "same shape", "dInput [5, 3]");
        Rejects(() => RmsNorm.Backward(x, x, gamma, rstdWrong, y), "RmsNorm.Backward", "rstd must have one element per row (3)");
        Rejects(() => RmsNorm.Backward(x, x, gamma, rstd, y, dGammaWrong), "RmsNorm.Backward", "dGamma must be [d] = [5]");
        Rejects(() => RmsNorm.Backward(x, y, gamma, rstd, y, accumulateInput: true), "RmsNorm.Backward", "dInput may be input");
        Rejects(() => RmsNorm.Relevance(x, gammaWrong, rstd, y), "RmsNorm.Relevance", "gamma must be [d] = [5]");
        Rejects(() => RmsNorm.Relevance(y, gamma, rstd, y, accumulate: true), "RmsNorm.Relevance", "dInput may be dOutput");
        StillPoisoned(y);
        StillPoisoned(dGammaWrong);
    }

    [Fact]
    public void SwiGlu_RejectsMisshapedOperands()
    {
        using var gateUp = cpu.FromHost<float>(TestData.Normal(1, 24), 3, 8);
        using var odd = cpu.FromHost<float>(TestData.Normal(1, 21), 3, 7);
        using var y = Poison(3, 4);
        using var yWrong = Poison(3, 8);
        using var dGateUp = Poison(3, 8);
        Rejects(() => SwiGlu.Forward(odd, y), "SwiGlu.Forward", "(2n) must be even", "gateUp [3, 7]");
        Rejects(() => SwiGlu.Forward(gateUp, yWrong), "SwiGlu.Forward", "'y' must be gateUp's shape with the last dimension halved (n = 4)", "y [3, 8]");
        Rejects(() => SwiGlu.Forward(gateUp, gateUp.Slice(0, 3, 4)), "SwiGlu.Forward", "y must not overlap gateUp");
        Rejects(() => SwiGlu.Backward(gateUp, yWrong, dGateUp), "SwiGlu.Backward", "'dy'", "(n = 4)");
        Rejects(() => SwiGlu.Relevance(gateUp, y, y.Reshape(12)), "SwiGlu.Relevance", "dGateUp must have gateUp's shape");
        StillPoisoned(y);
        StillPoisoned(dGateUp);
    }
}
