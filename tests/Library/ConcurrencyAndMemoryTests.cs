using Headlight.Explain;
using Headlight.Kernels;
using Headlight.Tests.Explain;
using Xunit.Abstractions;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Library;

/// <summary>
/// What a service that links the library relies on: one loaded model serving concurrent callers with the
/// results of sequential calls, and long loops of calls that give back every byte they took, on the host
/// and on the device, also when calls fail.
/// </summary>
public sealed class ConcurrencyAndMemoryTests(ITestOutputHelper output)
{
    private static readonly string[] Sentences =
    [
        "The cat sat on the mat.",
        "Stocks fell sharply after the central bank raised interest rates.",
        "Patients with type 2 diabetes were given metformin for 24 weeks.",
        "The train to Berlin leaves from platform nine at noon.",
        "This product is terrible and I want a refund.",
        "Rain is expected in Paris tomorrow afternoon.",
        "She scored two goals in the final minutes of the match.",
        "A quick brown fox jumps over the lazy dog.",
    ];

    [Fact]
    public async Task Eight_concurrent_callers_mixing_forwards_and_explanations_get_the_sequential_results_bit_for_bit()
    {
        using var model = HeadlightModel.Load("minilm", Backends.Require("cpu"));

        // Caller i: even callers embed their sentence (a forward pass), odd ones explain it with integrated gradients.
        float[] Call(int caller)
        {
            string sentence = Sentences[caller];
            if (caller % 2 == 0)
            {
                return model.Embed([sentence])[0];
            }

            var result = Explainer.Explain(model, sentence, new EmbeddingSimilarityTarget(Sentences[(caller + 1) % Sentences.Length]), new IntegratedGradientsOptions { Steps = 8 });
            return result.Rows[0].TokenScores.Select(s => (float)s).Append((float)result.Rows[0].TargetValue).ToArray();
        }

        var sequential = Enumerable.Range(0, Sentences.Length).Select(Call).ToArray();

        for (int round = 0; round < 3; round++)
        {
            using var start = new Barrier(Sentences.Length);
            var tasks = Enumerable.Range(0, Sentences.Length)
                .Select(caller => Task.Factory.StartNew(() =>
                {
                    start.SignalAndWait();
                    return Call(caller);
                }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default))
                .ToArray();
            var concurrent = await Task.WhenAll(tasks);
            for (int caller = 0; caller < Sentences.Length; caller++)
            {
                Assert.True(sequential[caller].AsSpan().SequenceEqual(concurrent[caller]), $"round {round}, caller {caller}: the concurrent result differs from the sequential one.");
            }
        }
    }

    // ILGPU's CPU accelerator is a simulator, far too slow for a loop like this; the GPU rows skip where absent.
    [SkippableTheory]
    [InlineData("cpu", 1000)]
    [InlineData("opencl", 1000)]
    [InlineData("cuda", 1000)]
    public void A_loop_of_explain_calls_leaves_host_and_device_memory_at_the_baseline(string deviceName, int calls)
    {
        using var tiny = TinyModel.Bert(8100, TinyHead.Classifier);
        Skip.If(Backends.TryGet(deviceName, out string reason) is null, reason);

        // A device of its own: the shared test devices hold other tests' tensors at the same time.
        using var device = Device.Open(deviceName);
        long deviceBeforeLoad = device.AllocatedBytes;
        using (var model = HeadlightModel.Load(tiny.Folder, device))
        {
            var target = new ClassLogitTarget(1);
            var options = new IntegratedGradientsOptions { Steps = 4 };
            int[] ids = [2, 7, 11, 5, 3];

            // Warm-up: the first call of a shape makes the model's buffers for it and loads the kernels.
            Explainer.Explain(model, model.FromIds([ids]), target, options);
            long deviceBaseline = device.AllocatedBytes;
            long hostBaseline = HostBytes();

            for (int i = 0; i < calls; i++)
            {
                var result = Explainer.Explain(model, model.FromIds([ids]), target, options);
                Assert.Single(result.Rows);
            }

            long deviceAfter = device.AllocatedBytes;
            long hostAfter = HostBytes();
            output.WriteLine($"{deviceName}, {calls} calls: device {deviceBaseline} → {deviceAfter} bytes in {device.LiveTensors} tensors; managed heap {hostBaseline / 1024.0:F0} → {hostAfter / 1024.0:F0} KiB");
            Assert.Equal(deviceBaseline, deviceAfter);
            Assert.True(hostAfter - hostBaseline < 512 * 1024, $"the managed heap grew by {(hostAfter - hostBaseline) / 1024.0:F0} KiB over {calls} calls.");
        }

        Assert.Equal(deviceBeforeLoad, device.AllocatedBytes);
        Assert.Equal(0, device.LiveTensors);
    }

    [Fact]
    public void Failed_calls_leave_the_model_usable_and_dispose_still_frees_every_device_buffer()
    {
        using var tiny = TinyModel.Bert(8200, TinyHead.Classifier);
        using var device = Device.Open("cpu");
        var model = HeadlightModel.Load(tiny.Folder, device);
        try
        {
            var batch = model.FromIds([[2, 7, 11, 5, 3]]);
            var good = Explainer.Explain(model, batch, new ClassLogitTarget(0), new SaliencyOptions());

            // A class the model does not have, and an id outside the vocabulary: typed errors, nothing half done.
            Assert.ThrowsAny<TargetException>(() => Explainer.Explain(model, batch, new ClassLogitTarget(TinyModel.Labels), new SaliencyOptions()));
            Assert.ThrowsAny<ArgumentException>(() => Explainer.Explain(model, model.FromIds([[2, TinyModel.BertVocab + 5, 3]]), new ClassLogitTarget(0), new SaliencyOptions()));

            var again = Explainer.Explain(model, batch, new ClassLogitTarget(0), new SaliencyOptions());
            Assert.Equal(good.Rows[0].TokenScores, again.Rows[0].TokenScores);
        }
        finally
        {
            model.Dispose();
        }

        Assert.Equal(0, device.LiveTensors);
        Assert.Equal(0, device.AllocatedBytes);
    }

    private static long HostBytes()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return GC.GetTotalMemory(forceFullCollection: true);
    }
}
