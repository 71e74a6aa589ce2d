using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Bad input to <see cref="LayerNorm"/>, <see cref="Softmax"/> and <see cref="Embedding"/> throws an
/// <see cref="ArgumentException"/> naming the op and the shapes, before anything is written.
/// </summary>
public sealed class NormValidationTests : IDisposable
{
    private readonly CpuDevice cpu = new(1);

    /// <inheritdoc />
    public void Dispose() => cpu.Dispose();

    /// <summary>Runs <paramref name="op"/>, expects an ArgumentException, and checks its message names every fragment.</summary>
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
    public void LayerNormForward_RejectsMisshapedOperands()
    {
        using var x = cpu.FromHost<float>(TestData.Normal(1, 15), 3, 5);
        using var gamma = cpu.FromHost<float>(TestData.Normal(2, 5), 5);
        using var beta = cpu.FromHost<float>(TestData.Normal(3, 5), 5);
        using var shortGamma = cpu.FromHost<float>(TestData.Normal(2, 4), 4);
        using var y = Poison(3, 5);
        using var yWrong = Poison(5, 3);
        using var stats = Poison(3);
        using var statsWrong = Poison(4);
        using var residualWrong = Poison(3, 4);
        using var residual = cpu.FromHost<float>(TestData.Normal(4, 15), 3, 5);

        Rejects(() => LayerNorm.Forward(x, shortGamma, beta, y, 1e-5f), "LayerNorm.Forward", "gamma must be [d] = [5]", "x [3, 5]", "gamma [4]");
        Rejects(() => LayerNorm.Forward(x, gamma, shortGamma, y, 1e-5f), "LayerNorm.Forward", "beta");
        Rejects(() => LayerNorm.Forward(x, gamma, beta, yWrong, 1e-5f), "LayerNorm.Forward", "y must have x's shape", "y [5, 3]");
        Rejects(() => LayerNorm.Forward(x, gamma, beta, y, 1e-5f, mean: statsWrong), "LayerNorm.Forward", "mean", "[4]");
        Rejects(() => LayerNorm.Forward(x, gamma, beta, y, 1e-5f, rstd: statsWrong), "LayerNorm.Forward", "rstd");
        Rejects(() => LayerNorm.Forward(x, gamma, beta, y, 1e-5f, residual: residualWrong), "LayerNorm.Forward", "residual must have x's shape");
        Rejects(() => LayerNorm.Forward(x, gamma, beta, y, 1e-5f, sum: y), "LayerNorm.Forward", "sum is written only when residual is given");
        Rejects(() => LayerNorm.Forward(x, gamma, beta, y, 1e-5f, residual: residual, sum: yWrong), "LayerNorm.Forward", "sum must have x's shape");
        Rejects(() => LayerNorm.Forward(x, gamma, beta, y, 1e-5f, residual: residual, sum: y), "LayerNorm.Forward", "sum and y must be different");
        Rejects(() => LayerNorm.Forward(x, gamma, beta, y, 0f), "LayerNorm.Forward", "epsilon");
        Rejects(() => LayerNorm.Forward(x, gamma, beta, y, float.NaN), "LayerNorm.Forward", "epsilon");
        StillPoisoned(y);
        StillPoisoned(stats);
    }

    [Fact]
    public void LayerNormForward_RejectsNullDisposedAndForeignOperands()
    {
        using var other = new CpuDevice(1);
        using var x = cpu.FromHost<float>(TestData.Normal(1, 15), 3, 5);
        using var gamma = cpu.FromHost<float>(TestData.Normal(2, 5), 5);
        using var beta = cpu.FromHost<float>(TestData.Normal(3, 5), 5);
        using var foreignBeta = other.FromHost<float>(TestData.Normal(3, 5), 5);
        using var y = Poison(3, 5);
        var freed = cpu.FromHost<float>(TestData.Normal(2, 5), 5);
        freed.Dispose();

        Rejects(() => LayerNorm.Forward(null!, gamma, beta, y, 1e-5f), "LayerNorm.Forward", "'x' is null");
        Rejects(() => LayerNorm.Forward(x, freed, beta, y, 1e-5f), "LayerNorm.Forward", "'gamma' [5] has been disposed");
        Rejects(() => LayerNorm.Forward(x, gamma, foreignBeta, y, 1e-5f), "LayerNorm.Forward", "'beta'", "one device");
        StillPoisoned(y);
    }

    [Fact]
    public void LayerNormBackward_RejectsMisshapedOperands()
    {
        using var dy = cpu.FromHost<float>(TestData.Normal(1, 15), 3, 5);
        using var input = cpu.FromHost<float>(TestData.Normal(2, 15), 3, 5);
        using var gamma = cpu.FromHost<float>(TestData.Normal(3, 5), 5);
        using var stats = cpu.FromHost<float>(TestData.Normal(4, 3), 3);
        using var statsWrong = cpu.FromHost<float>(TestData.Normal(4, 2), 2);
        using var dx = Poison(3, 5);
        using var dxWrong = Poison(15);
        using var dgamma = Poison(5);
        using var dgammaWrong = Poison(6);

        Rejects(() => LayerNorm.Backward(dy, input, gamma, stats, stats, dxWrong, dgamma, null), "LayerNorm.Backward", "dx [15]");
        Rejects(() => LayerNorm.Backward(dy, input, gamma, statsWrong, stats, dx, dgamma, null), "LayerNorm.Backward", "mean and rstd", "mean [2]");
        Rejects(() => LayerNorm.Backward(dy, input, gamma, stats, stats, dx, dgammaWrong, null), "LayerNorm.Backward", "dgamma must be [d] = [5]");
        Rejects(() => LayerNorm.Backward(dy, input, gamma, stats, stats, dx, null, dgammaWrong), "LayerNorm.Backward", "dbeta must be [d] = [5]");
        Rejects(() => LayerNorm.Backward(dy, input, gamma, stats, stats, input, null, null, accumulateInput: true), "LayerNorm.Backward", "dx may be input");
        StillPoisoned(dx);
        StillPoisoned(dgamma);
    }

    [Fact]
    public void SoftmaxForward_RejectsMisshapedOperands()
    {
        using var x = cpu.FromHost<float>(TestData.Normal(1, 2 * 3 * 4 * 5), 2, 3, 4, 5);
        using var flat = cpu.FromHost<float>(TestData.Normal(1, 5), 5);
        using var y = Poison(2, 3, 4, 5);
        using var yWrong = Poison(2, 3, 5, 4);
        using var maskWrongCols = cpu.FromHost<int>(new int[2 * 4], 2, 4);
        using var maskWrongBatch = cpu.FromHost<int>(new int[4 * 5], 4, 5);
        using var maskRank1 = cpu.FromHost<int>(new int[5], 5);

        Rejects(() => Softmax.Forward(flat, flat), "Softmax.Forward", "rank 2 or more", "x [5]");
        Rejects(() => Softmax.Forward(x, yWrong), "Softmax.Forward", "y must have x's shape", "y [2, 3, 5, 4]");
        Rejects(() => Softmax.Forward(x, y, keyMask: maskWrongCols), "Softmax.Forward", "keyMask must be [batch, cols] with cols = 5", "keyMask [2, 4]");
        Rejects(() => Softmax.Forward(x, y, keyMask: maskWrongBatch), "Softmax.Forward", "batch (4) must divide", "(6)");
        Rejects(() => Softmax.Forward(x, y, keyMask: maskRank1), "Softmax.Forward", "keyMask must be [batch, cols]");
        Rejects(() => Softmax.Forward(x, y, float.PositiveInfinity), "Softmax.Forward", "scale must be finite");
        Rejects(() => Softmax.Forward(x, null!), "Softmax.Forward", "'y' is null");
        StillPoisoned(y);
    }

    [Fact]
    public void SoftmaxBackward_RejectsMisshapedOperands()
    {
        using var y = cpu.FromHost<float>(TestData.Normal(1, 15), 3, 5);
        using var dy = cpu.FromHost<float>(TestData.Normal(2, 15), 3, 5);
        using var dx = Poison(3, 5);
        using var dxWrong = Poison(5, 3);
        Rejects(() => Softmax.Backward(y, dy, dxWrong), "Softmax.Backward", "same shape", "dx [5, 3]");
        Rejects(() => Softmax.Backward(y, dy, dx, float.NaN), "Softmax.Backward", "scale must be finite");
        StillPoisoned(dx);
    }

    [Fact]
    public void EmbeddingGather_RejectsIdsOutsideTheTable()
    {
        using var table = cpu.FromHost<float>(TestData.Normal(1, 4 * 3), 4, 3);
        using var badHigh = cpu.FromHost<int>([0, 1, 2, 3, 3, 4], 2, 3);
        using var badLow = cpu.FromHost<int>([0, -1, 2], 3);
        using var y = Poison(2, 3, 3);
        using var y3 = Poison(3, 3);
        Rejects(() => Embedding.Gather(table, badHigh, y), "Embedding.Gather", "ids[1, 2] = 4", "[0, 4)", "table [4, 3]", "ids [2, 3]");
        Rejects(() => Embedding.Gather(table, badLow, y3, accumulate: true), "Embedding.Gather", "ids[1] = -1");
        StillPoisoned(y);
        StillPoisoned(y3);
    }

    [Fact]
    public void EmbeddingGather_RejectsMisshapedOperands()
    {
        using var table = cpu.FromHost<float>(TestData.Normal(1, 4 * 3), 4, 3);
        using var flatTable = cpu.FromHost<float>(TestData.Normal(1, 12), 12);
        using var ids = cpu.FromHost<int>([0, 1, 2], 3);
        using var yWrong = Poison(3, 4);
        using var y = Poison(3, 3);
        Rejects(() => Embedding.Gather(table, ids, yWrong), "Embedding.Gather", "'y' must have shape [3, 3]", "y [3, 4]");
        Rejects(() => Embedding.Gather(flatTable, ids, y), "Embedding.Gather", "'table' must be [vocab, d]");
        Rejects(() => Embedding.Gather(table, null!, y), "Embedding.Gather", "'ids' is null");
        StillPoisoned(y);
    }

    [Fact]
    public void EmbeddingScatterAdd_RejectsBadIdsAndShapesWithoutTouchingTheTable()
    {
        float[] start = TestData.Normal(5, 4 * 3);
        using var dTable = cpu.FromHost<float>(start, 4, 3);
        using var dy = cpu.FromHost<float>(TestData.Normal(6, 9), 3, 3);
        using var dyWrong = cpu.FromHost<float>(TestData.Normal(6, 6), 3, 2);
        using var ids = cpu.FromHost<int>([0, 7, 1], 3);
        using var goodIds = cpu.FromHost<int>([0, 3, 1], 3);
        Rejects(() => Embedding.ScatterAdd(dy, ids, dTable), "Embedding.ScatterAdd", "ids[1] = 7", "[0, 4)");
        Rejects(() => Embedding.ScatterAdd(dyWrong, goodIds, dTable), "Embedding.ScatterAdd", "'dy' must have shape [3, 3]");
        Assert.Equal(start, dTable.ToArray());
    }

    /// <summary>
    /// On an accelerator the ids are checked by a kernel (no download inside the op): the error comes from the next
    /// download or <see cref="Device.Synchronize"/>, and the op has written nothing.
    /// </summary>
    [SkippableFact]
    public void EmbeddingGather_ChecksIdsOnIlgpuDevices()
    {
        var gpu = Backends.Require("ilgpu-cpu");
        using var table = gpu.FromHost<float>(TestData.Normal(1, 4 * 3), 4, 3);
        float[] tableStart = table.ToArray();
        using var ids = gpu.FromHost<int>([0, 1, 9], 3);
        using var y = TestData.Poisoned(gpu, 3, 3);
        Rejects(() =>
        {
            Embedding.Gather(table, ids, y);
            y.ToArray();
        }, "Embedding.Gather", "ids[2] = 9", "[0, 4)", "table [4, 3]");
        Rejects(() =>
        {
            Embedding.ScatterAdd(y, ids, table);
            gpu.Synchronize();
        }, "Embedding.ScatterAdd", "ids[2] = 9");
        Assert.True(y.ToArray().All(float.IsNaN), "y was written before the op failed.");
        Assert.Equal(tableStart, table.ToArray());

        // Reported once; good ids run again afterwards.
        using var good = gpu.FromHost<int>([3, 0, 2], 3);
        Embedding.Gather(table, good, y);
        Assert.Equal(tableStart.AsSpan(9, 3).ToArray(), y.ToArray().AsSpan(0, 3).ToArray());
    }

    /// <summary>Several failed checks before one download are reported one per download or synchronisation, in launch order.</summary>
    [SkippableFact]
    public void EmbeddingGather_ReportsTheFirstFailedCheckOnIlgpuDevices()
    {
        var gpu = Backends.Require("ilgpu-cpu");
        using var table = gpu.FromHost<float>(TestData.Normal(1, 4 * 3), 4, 3);
        using var first = gpu.FromHost<int>([0, 1, 2, 3, -7, 4], 2, 3);
        using var second = gpu.FromHost<int>([5, 0, 1], 3);
        using var y = TestData.Poisoned(gpu, 2, 3, 3);
        using var y3 = TestData.Poisoned(gpu, 3, 3);
        Embedding.Gather(table, first, y);
        Embedding.Gather(table, second, y3);
        Rejects(() => y3.ToArray(), "Embedding.Gather", "ids[1, 1] = -7", "ids [2, 3]");
        Rejects(gpu.Synchronize, "Embedding.Gather", "ids[0] = 5", "ids [3]");
        gpu.Synchronize();
    }
}
