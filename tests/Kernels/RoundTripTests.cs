using Headlight.Kernels;
using Headlight.Tests.Explain;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Kernels;

/// <summary>
/// Host round trips of a forward pass on an ILGPU device: the inputs go up once, the output comes down once at
/// the end, and nothing in between waits for the device (index checks run in kernels, reductions stay on it).
/// </summary>
public sealed class RoundTripTests
{
    /// <summary>
    /// A tiny BERT encoder's steady-state forward (<see cref="HeadlightModel.Forward(Models.TokenBatch, Span{float})"/>)
    /// on its own ilgpu-cpu device, so no other test's copies are counted.
    /// </summary>
    [Fact]
    public void EncoderForward_UploadsInputsOnceAndDownloadsTheOutputOnce()
    {
        using var device = Device.Open("ilgpu-cpu");
        var backend = (IlgpuBackend)device.Backend;
        using var tiny = TinyModel.Bert(5700, TinyHead.None);
        using var model = HeadlightModel.Load(tiny.Folder, device);
        var batch = model.FromIds([[2, 7, 9, 11, 3], [2, 13, 3]]);
        var output = new float[batch.BatchSize * batch.SequenceLength * TinyModel.Hidden];

        // The first pass of a shape makes the state's buffers (positions and zeros go up then) and loads kernels.
        model.Forward(batch, output);
        var before = backend.RoundTrips;
        model.Forward(batch, output);
        var after = backend.RoundTrips;

        // Up: ids, key mask and token types (Model.Prepare); down: the last hidden state. Each copy waits once
        // (the caller's span must stay valid only for the call), and no other wait happens in the pass.
        Assert.Equal((3L, 1L, 4L), (after.Uploads - before.Uploads, after.Downloads - before.Downloads, after.Synchronizations - before.Synchronizations));
        Assert.All(output, v => Assert.True(float.IsFinite(v)));
    }
}

/// <summary>Which ILGPU row path the matrix's row cases take on ilgpu-cpu (RowPathCases).</summary>
public sealed class RowPathTests(Xunit.Abstractions.ITestOutputHelper output)
{
    /// <summary>ILGPU's CPU simulator reports warps, so the default row cases run the shuffle path there.</summary>
    [SkippableFact]
    public void IlgpuCpu_TakesTheWarpPathUpToTheRowLimit_AndTheSharedPathWhenForced()
    {
        var backend = (IlgpuBackend)Backends.Require("ilgpu-cpu").Backend;
        output.WriteLine($"ilgpu-cpu: warp size {backend.WarpSize}, groups up to {backend.MaxGroupSize}");
        Assert.True(backend.WarpSize > 1, $"warp size {backend.WarpSize}");
        Assert.True(GroupReduce.UseWarpRows(backend, GroupReduce.MaxWarpRow));
        Assert.False(GroupReduce.UseWarpRows(backend, GroupReduce.MaxWarpRow + 1));
        using (GroupReduce.ForceSharedRows())
        {
            Assert.False(GroupReduce.UseWarpRows(backend, 1));
        }

        Assert.True(GroupReduce.UseWarpRows(backend, 1));
        var config = GroupReduce.WarpRows(backend, 3);
        Assert.Equal(0, config.GroupDim.X % backend.WarpSize);
        Assert.True((long)config.GridDim.X * (config.GroupDim.X / backend.WarpSize) >= 3);
    }
}
