using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Bad input to <see cref="CrossEntropy"/>, <see cref="AdamW"/> and <see cref="GradientNorm"/> throws an
/// <see cref="ArgumentException"/> naming the op and the operand, before anything is written.
/// </summary>
public sealed class TrainingValidationTests : IDisposable
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

    private Tensor<float> Values(int seed, params int[] shape) => cpu.FromHost<float>(TestData.Normal(seed, shape.Aggregate(1, (a, b) => a * b)), shape);

    private static void StillPoisoned(Tensor<float> t) => Assert.True(t.ToArray().All(float.IsNaN), $"{t} was written before the op failed.");

    [Fact]
    public void CrossEntropy_RejectsMisshapedOperands()
    {
        using var hidden = Values(1, 4, 5);
        using var head = Values(2, 7, 5);
        using var targets = cpu.FromHost<int>([0, 1, -1, 6], 4);
        using var loss = Poison(4);
        using var scratch = Poison(2, 7);
        using var headWrong = Values(3, 7, 4);
        using var targetsWrong = cpu.FromHost<int>([0, 1, 2], 3);
        using var lossWrong = Poison(3);
        using var dHiddenWrong = Poison(4, 4);
        using var dHeadWrong = Poison(6, 5);
        using var scratchWrong = Poison(2, 6);
        using var scratchEmpty = Poison(0, 7);
        using var flat = Values(4, 20);

        Rejects(() => CrossEntropy.Run(flat, head, targets, loss, null, null, 1f, scratch), "CrossEntropy.Run", "'hidden' must have rank 2");
        Rejects(() => CrossEntropy.Run(hidden, headWrong, targets, loss, null, null, 1f, scratch), "CrossEntropy.Run", "head must be [vocab, d] with d = 5", "head [7, 4]");
        Rejects(() => CrossEntropy.Run(hidden, head, targetsWrong, loss, null, null, 1f, scratch), "'targets' must have shape [4]");
        Rejects(() => CrossEntropy.Run(hidden, head, targets, lossWrong, null, null, 1f, scratch), "'loss' must have shape [4]");
        Rejects(() => CrossEntropy.Run(hidden, head, targets, loss, dHiddenWrong, null, 1f, scratch), "'dHidden' must have shape [4, 5]");
        Rejects(() => CrossEntropy.Run(hidden, head, targets, loss, null, dHeadWrong, 1f, scratch), "'dHead' must have shape [7, 5]");
        Rejects(() => CrossEntropy.Run(hidden, head, targets, loss, null, null, 1f, scratchWrong), "scratch must be [blockRows, vocab]", "scratch [2, 6]");
        Rejects(() => CrossEntropy.Run(hidden, head, targets, loss, null, null, 1f, scratchEmpty), "scratch must be [blockRows, vocab]");
        Rejects(() => CrossEntropy.Run(hidden, head, targets, loss, null, null, float.NaN, scratch), "scale must be finite");
        StillPoisoned(loss);
        StillPoisoned(scratch);
    }

    [Fact]
    public void CrossEntropy_RejectsOverlappingOutputs()
    {
        using var hidden = Values(1, 4, 5);
        using var head = Values(2, 7, 5);
        using var targets = cpu.FromHost<int>([0, 1, -1, 6], 4);
        using var buffer = Poison(100);
        using var loss = buffer.Slice(0, 4);
        using var scratch = buffer.Slice(2, 2, 7);
        using var dHidden = Poison(4, 5);
        using var lossInHidden = hidden.Slice(0, 4);

        Rejects(() => CrossEntropy.Run(hidden, head, targets, loss, null, null, 1f, scratch), "'loss' overlaps 'scratch'");
        Rejects(() => CrossEntropy.Run(hidden, head, targets, lossInHidden, null, null, 1f, buffer.Slice(50, 2, 7)), "'loss' overlaps 'hidden'");
        Rejects(() => CrossEntropy.Run(hidden, head, targets, buffer.Slice(80, 4), dHidden, head, 1f, buffer.Slice(50, 2, 7)), "'dHead' overlaps 'head'");
        Rejects(() => CrossEntropy.Run(hidden, head, targets, buffer.Slice(80, 4), hidden, null, 1f, buffer.Slice(50, 2, 7)), "'dHidden' overlaps 'hidden'");
        StillPoisoned(buffer);
    }

    [Fact]
    public void CrossEntropy_RejectsTargetsOutOfRange_NamingTheRow()
    {
        using var hidden = Values(1, 4, 5);
        using var head = Values(2, 7, 5);
        using var loss = Poison(4);
        using var dHidden = Poison(4, 5);
        using var scratch = Poison(2, 7);
        using var tooLarge = cpu.FromHost<int>([0, 1, 7, 2], 4);
        using var tooSmall = cpu.FromHost<int>([0, -2, 1, 2], 4);

        Rejects(() => CrossEntropy.Run(hidden, head, tooLarge, loss, dHidden, null, 1f, scratch), "targets[2] = 7", "[-1, 7)");
        Rejects(() => CrossEntropy.Run(hidden, head, tooSmall, loss, dHidden, null, 1f, scratch), "targets[1] = -2");
        StillPoisoned(loss);
        StillPoisoned(dHidden);
    }

    [Fact]
    public void AdamW_RejectsBadOperandsStepsAndSettings()
    {
        using var p = Values(1, 8);
        using var g = Values(2, 8);
        using var m = Values(3, 8);
        using var v = Values(4, 8);
        using var shortV = Values(5, 7);
        using var scale = cpu.FromHost<float>([1f], 1);
        using var scaleWrong = cpu.FromHost<float>([1f, 1f], 2);
        float[] before = p.ToArray();
        var settings = new AdamWSettings(1e-3f);

        Rejects(() => AdamW.Step(p, g, m, shortV, settings, 1), "AdamW.Step", "parameter, gradient, m and v must have the same shape", "v [7]");
        Rejects(() => AdamW.Step(p, g, m, v, settings, 0), "step must be 1 or more (got 0)");
        Rejects(() => AdamW.Step(p, g, m, v, settings, 1, scaleWrong), "'gradientScale' must have shape [1]");
        Rejects(() => AdamW.Step(p, g, m, v, settings with { LearningRate = float.NaN }, 1), "LearningRate must be finite");
        Rejects(() => AdamW.Step(p, g, m, v, settings with { Beta1 = 1f }, 1), "Beta1 must be in [0, 1)");
        Rejects(() => AdamW.Step(p, g, m, v, settings with { Beta2 = -0.1f }, 1), "Beta2 must be in [0, 1)");
        Rejects(() => AdamW.Step(p, g, m, v, settings with { Epsilon = 0f }, 1), "Epsilon must be positive");
        Rejects(() => AdamW.Step(p, g, m, v, settings with { WeightDecay = -1f }, 1), "WeightDecay must be finite and not negative");
        Rejects(() => AdamW.Step(p, g, m, m, settings, 1), "'m' overlaps 'v'");
        Rejects(() => AdamW.Step(p, p, m, v, settings, 1), "'parameter' overlaps 'gradient'");
        Rejects(() => AdamW.Step(p, g, m, v, settings, 1, p.Slice(3, 1)), "'parameter' overlaps 'gradientScale'");
        Assert.Equal(before, p.ToArray());
    }

    [Fact]
    public void GradientNorm_RejectsBadOperandsAndMaxNorm()
    {
        using var x = Values(1, 10);
        using var sum = cpu.FromHost<float>([0f], 1);
        using var sumWrong = cpu.FromHost<float>([0f, 0f], 2);
        using var factor = Poison(1);

        Rejects(() => GradientNorm.AccumulateSquares(x, sumWrong), "GradientNorm.AccumulateSquares", "'sumOfSquares' must have shape [1]");
        Rejects(() => GradientNorm.AccumulateSquares(x, x.Slice(4, 1)), "'sumOfSquares' overlaps 'x'");
        Rejects(() => GradientNorm.ClipFactor(sumWrong, 1f, factor), "GradientNorm.ClipFactor", "'sumOfSquares' must have shape [1]");
        Rejects(() => GradientNorm.ClipFactor(sum, 1f, sumWrong), "'factor' must have shape [1]");
        foreach (float bad in new[] { 0f, -1f, float.NaN, float.PositiveInfinity })
        {
            Rejects(() => GradientNorm.ClipFactor(sum, bad, factor), "maxNorm must be positive and finite");
        }

        StillPoisoned(factor);
    }

    // The blocks are fixed by the length, so one worker and several give the same bits.
    [Fact]
    public void GradientNorm_SumDoesNotDependOnTheWorkerCount()
    {
        float[] data = TestData.Uniform(9, (1 << 20) + 17, 2f);
        using var many = new CpuDevice(Math.Max(2, Environment.ProcessorCount));
        float[] Sum(Device device)
        {
            using var x = device.FromHost<float>(data, data.Length);
            using var s = device.FromHost<float>([0f], 1);
            GradientNorm.AccumulateSquares(x, s);
            return s.ToArray();
        }

        Compare.Exact(Sum(many), Sum(cpu), "sumOfSquares on several workers");
    }
}
