using BenchmarkDotNet.Attributes;
using Headlight.Explain;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Bench;

/// <summary>
/// LRP (AttnLRP and CP-LRP, similarity target) and attention rollout on MiniLM for one 128-token input,
/// against one forward pass of the same input, on the managed CPU backend in the same run. LRP is one
/// forward pass that keeps its intermediates plus one relevance pass; the bar is a ratio of at most 4.
/// <code>dotnet run -c Release --project bench -- --filter '*LrpBenchmarks*'</code>
/// </summary>
[MemoryDiagnoser]
[MinColumn]
[SimpleJob(launchCount: 1, warmupCount: 6, iterationCount: 15)]
public class LrpBenchmarks
{
    private Device device = null!;
    private Model model = null!;
    private TokenBatch batch = null!;
    private EmbeddingSimilarityTarget target = null!;
    private readonly LrpOptions attnLrp = new() { Rules = LrpRules.AttnLrp };
    private readonly LrpOptions cpLrp = new() { Rules = LrpRules.CpLrp };
    private readonly AttentionRolloutOptions rollout = new();

    /// <summary>Loads MiniLM and builds a 128-token input (with [CLS] and [SEP]).</summary>
    [GlobalSetup]
    public void Setup()
    {
        device = Device.Open("cpu");
        model = Model.Load("minilm", device);
        batch = BenchInputs.EnglishRow(model, 128);
        target = new EmbeddingSimilarityTarget("Why do explanations of neural networks matter?");
        target.Prepare(model, batch);
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

    /// <summary>AttnLRP: relevance per token, layer and head.</summary>
    [Benchmark]
    public RelevanceResult AttnLrp() => Explainer.Relevance(model, batch, target, attnLrp);

    /// <summary>CP-LRP (attention probabilities held constant).</summary>
    [Benchmark]
    public RelevanceResult CpLrp() => Explainer.Relevance(model, batch, target, cpLrp);

    /// <summary>Attention rollout (one forward pass capturing every layer's probabilities, combined on the host).</summary>
    [Benchmark]
    public RolloutResult Rollout() => Explainer.Rollout(model, batch, target, rollout);
}
