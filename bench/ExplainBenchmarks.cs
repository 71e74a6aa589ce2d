using BenchmarkDotNet.Attributes;
using Headlight.Explain;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Bench;

/// <summary>
/// Integrated gradients (50 Gauss–Legendre steps, similarity target) on MiniLM for one 64-token input,
/// against one forward pass of the same input, both on the managed CPU backend in the same run. IG runs
/// 52 rows (50 steps, the baseline and the input) forward and backward, batched within the default
/// memory budget; the bar is a ratio of at most 60.
/// </summary>
[MemoryDiagnoser]
[MinColumn]
[SimpleJob(launchCount: 1, warmupCount: 6, iterationCount: 12)]
public class ExplainBenchmarks
{
    private Device device = null!;
    private Model model = null!;
    private TokenBatch batch = null!;
    private EmbeddingSimilarityTarget target = null!;
    private IntegratedGradientsOptions options = null!;

    /// <summary>Loads MiniLM and builds a 64-token input (with [CLS] and [SEP]).</summary>
    [GlobalSetup]
    public void Setup()
    {
        device = Device.Open("cpu");
        model = Model.Load("minilm", device);
        batch = BenchInputs.EnglishRow(model, 64);
        target = new EmbeddingSimilarityTarget("Why do explanations of neural networks matter?");
        target.Prepare(model, batch);
        options = new IntegratedGradientsOptions { Steps = 50, Rule = QuadratureRule.GaussLegendre };
    }

    /// <summary>Frees the model and the device.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        model.Dispose();
        device.Dispose();
    }

    /// <summary>One forward pass of the input (last hidden state, pooler and sentence embedding copied back).</summary>
    [Benchmark(Baseline = true)]
    public ForwardResult Forward() => model.Forward(batch);

    /// <summary>Integrated gradients with 50 steps.</summary>
    [Benchmark]
    public AttributionResult IntegratedGradients50() => Explainer.Explain(model, batch, target, options);
}
