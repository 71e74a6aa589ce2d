using Headlight.Explain;
using Headlight.Kernels;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Explain;

/// <summary>
/// The same seed gives the same coalitions, bit for bit, and the same Shapley values within float tolerance on
/// every backend: each backend is compared with the managed CPU path. OpenCL runs in the trixie root.
/// </summary>
public sealed class ShapBackendTests
{
    public static TheoryData<string> Backends_ => new() { "ilgpu-cpu", "cuda" };

    [SkippableTheory]
    [MemberData(nameof(Backends_))]
    public void Same_seed_same_coalitions_and_values_as_the_cpu(string backend) => SameAsCpu(backend);

    [SkippableFact]
    [Trait("Category", "OpenCL")]
    public void OpenCL_same_seed_same_coalitions_and_values_as_the_cpu() => SameAsCpu("opencl");

    private static void SameAsCpu(string backend)
    {
        var device = Backends.Require(backend);
        var cpu = Backends.Require("cpu");

        // The default budget for M = 20: 420 coalitions enumerated, 1,668 drawn in pairs.
        foreach (bool paired in new[] { true, false })
        {
            var expected = CoalitionSet.Build(cpu, 20, KernelShap.DefaultBudget(20), 12345, paired);
            var actual = CoalitionSet.Build(device, 20, KernelShap.DefaultBudget(20), 12345, paired);
            Assert.Equal(expected.Count, actual.Count);
            for (int k = 0; k < expected.Count; k++)
            {
                Assert.Equal(expected.Mask(k), actual.Mask(k));
            }

            Assert.Equal(expected.Weights, actual.Weights);
        }

        // A tiny classifier, 7 words, 20 of the 126 coalitions, replace and drop masking.
        using var tiny = TinyModel.Bert(4600, TinyHead.Classifier);
        using var onCpu = HeadlightModel.Load(tiny.Folder, cpu);
        using var onDevice = HeadlightModel.Load(tiny.Folder, device);
        int[] ids = [2, 5, 6, 7, 8, 9, 10, 11, 3];
        foreach (var masking in new[] { ShapMasking.Replace, ShapMasking.Drop })
        {
            var options = new KernelShapOptions { Budget = 20, Seed = 3, Masking = masking };
            var a = Explainer.Explain(onCpu, onCpu.FromIds([ids]), new ClassProbabilityTarget(2), options).Rows[0];
            var b = Explainer.Explain(onDevice, onDevice.FromIds([ids]), new ClassProbabilityTarget(2), options).Rows[0];
            var fa = a.Features!;
            var fb = b.Features!;
            double scale = fa.Max(f => Math.Abs(f.Score));
            for (int f = 0; f < 7; f++)
            {
                double difference = Math.Abs(fa[f].Score - fb[f].Score);
                Assert.True(difference <= 1e-4 * scale, $"{backend}, {masking}: feature {f} is {fb[f].Score} on {backend}, {fa[f].Score} on cpu.");
                Assert.Equal(fa[f].StandardError, fb[f].StandardError, 1e-4 * scale);
            }

            Assert.Equal(a.TargetValue, b.TargetValue, 1e-5);
            Assert.Equal(a.BaselineValue!.Value, b.BaselineValue!.Value, 1e-5);
        }
    }
}
