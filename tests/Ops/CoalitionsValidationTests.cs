using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Bad input to <see cref="Philox"/> and <see cref="Coalitions"/> throws an <see cref="ArgumentException"/>
/// naming the op and the shapes, before anything is written.
/// </summary>
public sealed class CoalitionsValidationTests : IDisposable
{
    private readonly CpuDevice cpu = new(1);
    private readonly CpuDevice other = new(1);

    /// <inheritdoc />
    public void Dispose()
    {
        cpu.Dispose();
        other.Dispose();
    }

    private static void Rejects(Action op, params string[] fragments)
    {
        var e = Assert.ThrowsAny<ArgumentException>(op);
        foreach (string fragment in fragments)
        {
            Assert.Contains(fragment, e.Message, StringComparison.Ordinal);
        }
    }

    private Tensor<byte> Masks(int rows, int m)
    {
        var t = cpu.Allocate<byte>(rows, m);
        t.Fill(0xAB);
        return t;
    }

    private static void Untouched(Tensor<byte> t) => Assert.True(t.ToArray().All(b => b == 0xAB), $"{t} was written before the op failed.");

    [Fact]
    public void Philox_RejectsNullDisposedAndHugeOutputs()
    {
        Rejects(() => Philox.Fill(null!, 1), "Philox.Fill", "output");
        var freed = cpu.Allocate<uint>(4);
        freed.Dispose();
        Rejects(() => Philox.Fill(freed, 1), "Philox.Fill", "disposed");
        var freedFloats = cpu.Allocate<float>(4);
        freedFloats.Dispose();
        Rejects(() => Philox.Uniform(freedFloats, 1), "Philox.Uniform", "disposed");
    }

    [Fact]
    public void Sample_RejectsMisshapedOperandsAndSizesOutsideOneToMMinusOne()
    {
        using var masks = Masks(4, 6);
        using var odd = Masks(3, 6);
        using var flat = cpu.Allocate<byte>(24);
        using var thresholds = cpu.FromHost<uint>([1u << 31, uint.MaxValue], 2);
        using var none = cpu.Allocate<uint>(0);
        using var foreign = other.FromHost<uint>([uint.MaxValue], 1);

        Rejects(() => Coalitions.Sample(flat, thresholds, 1, false, 1, 0), "Coalitions.Sample", "'masks' must be [rows, M]", "masks [24]");
        Rejects(() => Coalitions.Sample(masks, none, 1, false, 1, 0), "Coalitions.Sample", "at least one class", "thresholds [0]");
        Rejects(() => Coalitions.Sample(odd, thresholds, 1, true, 1, 0), "Coalitions.Sample", "even number of rows", "masks [3, 6]");
        Rejects(() => Coalitions.Sample(masks, thresholds, 0, false, 1, 0), "Coalitions.Sample", "sizes 0 to 1 must lie in [1, M − 1] = [1, 5]");
        Rejects(() => Coalitions.Sample(masks, thresholds, 5, false, 1, 0), "Coalitions.Sample", "sizes 5 to 6");
        Rejects(() => Coalitions.Sample(masks, foreign, 1, false, 1, 0), "Coalitions.Sample", "All operands must be on one device");
        Rejects(() => Coalitions.Sample(masks, null!, 1, false, 1, 0), "Coalitions.Sample", "thresholds");
        Untouched(masks);
        Untouched(odd);
    }

    [Fact]
    public void MaskInputs_RejectsMisshapedOperandsFeaturesOutsideTheMaskAndNegativeReplacements()
    {
        using var masks = Masks(2, 3);
        using var features = cpu.FromHost<int>([-1, 0, 2, -1], 4);
        using var badFeatures = cpu.FromHost<int>([-1, 0, 3, -1], 4);
        using var lowFeatures = cpu.FromHost<int>([-2, 0, 1, -1], 4);
        using var ids = cpu.FromHost<int>([2, 7, 8, 3], 4);
        using var shortIds = cpu.FromHost<int>([2, 7, 8], 3);
        using var key = cpu.FromHost<int>([1, 1, 1, 1], 4);
        using var outIds = cpu.Allocate<int>(2, 4);
        using var outKey = cpu.Allocate<int>(2, 4);
        using var wrongOut = cpu.Allocate<int>(4, 2);
        outIds.Fill(-7);

        Rejects(() => Coalitions.MaskInputs(masks, features, shortIds, key, outIds, outKey, 4), "Coalitions.MaskInputs", "'ids' must have shape [4]", "ids [3]");
        Rejects(() => Coalitions.MaskInputs(masks, features, ids, key, wrongOut, outKey, 4), "Coalitions.MaskInputs", "'maskedIds' must have shape [2, 4]", "maskedIds [4, 2]");
        Rejects(() => Coalitions.MaskInputs(masks, features, ids, key, outIds, wrongOut, null), "Coalitions.MaskInputs", "'maskedKeyMask' must have shape [2, 4]");
        Rejects(() => Coalitions.MaskInputs(masks, badFeatures, ids, key, outIds, outKey, 4), "Coalitions.MaskInputs", "featureOf[2] = 3 is outside [−1, M) = [−1, 3)");
        Rejects(() => Coalitions.MaskInputs(masks, lowFeatures, ids, key, outIds, outKey, 4), "Coalitions.MaskInputs", "featureOf[0] = -2");
        Rejects(() => Coalitions.MaskInputs(masks, features, ids, key, outIds, outKey, -3), "Coalitions.MaskInputs", "replacement token id -3");
        Rejects(() => Coalitions.MaskInputs(masks, features, ids, null!, outIds, outKey, 4), "Coalitions.MaskInputs", "keyMask");
        Assert.True(outIds.ToArray().All(v => v == -7), "maskedIds was written before the op failed.");
    }

    /// <summary>
    /// On an accelerator the feature indices are checked by a kernel (no download inside the op): the error comes
    /// from the next download or <see cref="Device.Synchronize"/>, and nothing has been written.
    /// </summary>
    [SkippableFact]
    public void MaskInputs_ChecksFeaturesOnIlgpuDevices()
    {
        var gpu = Backends.Require("ilgpu-cpu");
        using var masks = gpu.FromHost<byte>([1, 0, 1, 0, 1, 1], 2, 3);
        using var badFeatures = gpu.FromHost<int>([-1, 0, 3, -1], 4);
        using var lowFeatures = gpu.FromHost<int>([-2, 0, 1, -1], 4);
        using var ids = gpu.FromHost<int>([2, 7, 8, 3], 4);
        using var key = gpu.FromHost<int>([1, 1, 1, 1], 4);
        using var outIds = gpu.FromHost<int>(Enumerable.Repeat(-7, 8).ToArray(), 2, 4);
        using var outKey = gpu.FromHost<int>(Enumerable.Repeat(-7, 8).ToArray(), 2, 4);
        Rejects(() =>
        {
            Coalitions.MaskInputs(masks, badFeatures, ids, key, outIds, outKey, 4);
            outIds.ToArray();
        }, "Coalitions.MaskInputs", "featureOf[2] = 3 is outside [−1, M) = [−1, 3)", "featureOf [4]");
        Rejects(() =>
        {
            Coalitions.MaskInputs(masks, lowFeatures, ids, key, outIds, outKey, null);
            gpu.Synchronize();
        }, "Coalitions.MaskInputs", "featureOf[0] = -2");
        Assert.True(outIds.ToArray().All(v => v == -7), "maskedIds was written before the op failed.");
        Assert.True(outKey.ToArray().All(v => v == -7), "maskedKeyMask was written before the op failed.");
    }
}
