using Headlight.Kernels;
using Headlight.Models;
using Headlight.Tests.Explain;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Model;

/// <summary>The public pass API: the lease, its size, head gates and the backward pass, from outside the library.</summary>
public sealed class ModelPassTests
{
    private static Device Cpu => Backends.Require("cpu");

    [Fact]
    public void A_pass_holds_the_model_until_disposed_and_knows_its_size()
    {
        using var tiny = TinyModel.Bert(4301, TinyHead.None);
        using var model = HeadlightModel.Load(tiny.Folder, Cpu);
        var batch = model.FromIds([[2, 7, 8, 9, 3], [2, 10, 11, 12, 3]]);
        var request = PassRequest.For(batch) with { Backward = new BackwardOptions { HeadGates = true } };
        long perRow = model.BytesPerRow(request);

        using var otherDone = new ManualResetEventSlim();
        var other = new Thread(() =>
        {
            model.Forward(batch);
            otherDone.Set();
        });
        using (var pass = model.Run(request))
        {
            // Two rows of the one-row pass measured, less the few buffers that do not grow with the rows.
            Assert.InRange(pass.Bytes, perRow + 1, 2 * perRow);
            other.Start();
            Assert.False(otherDone.Wait(200), "another caller's forward pass ran while the lease was held");

            var seed = new float[pass.LastHiddenState.Length];
            seed[3] = 1f; // d(h[row 0, token 0, unit 3])
            pass.Backward(seed);
            Assert.Contains(pass.InputSignal.ToArray(), g => g != 0);
            Assert.Equal(model.Config.Layers * 2 * model.Config.Heads, pass.HeadGateSignal.Length);
        }

        Assert.True(otherDone.Wait(TimeSpan.FromSeconds(30)), "the forward pass waiting for the lease did not run after it ended");
        Assert.Throws<InvalidOperationException>(() =>
        {
            using var forwardOnly = model.Run(PassRequest.For(batch));
            forwardOnly.Backward(new float[forwardOnly.LastHiddenState.Length]);
        });
    }

    [Fact]
    public void A_zero_gate_ablates_its_head_for_one_pass_and_the_weights_come_back()
    {
        using var tiny = TinyModel.Bert(4302, TinyHead.None);
        using var model = HeadlightModel.Load(tiny.Folder, Cpu);
        var batch = model.FromIds([[2, 7, 8, 9, 10, 3]]);
        var gates = Enumerable.Repeat(1f, model.Config.Layers * model.Config.Heads).ToArray();
        gates[1] = 0f;
        var before = model.Forward(batch).LastHiddenState;

        var gated = model.Forward(batch, null, gates).LastHiddenState;
        float[] leased;
        using (var pass = model.Run(PassRequest.For(batch) with { HeadGates = gates }))
        {
            leased = pass.LastHiddenState.ToArray();
        }

        Assert.Equal(gated, leased);
        Assert.NotEqual(before, gated);
        Assert.Equal(before, model.Forward(batch).LastHiddenState);
    }
}
