using BenchmarkDotNet.Attributes;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Tests.Model;

namespace Headlight.Bench;

/// <summary>
/// The forward pass (logits at every position) of a random model of GPT-2 small's size (12 layers, 768 wide,
/// 12 heads, 50,257 tokens; written once as a Hugging Face folder) on the managed <c>cpu</c> device, 1 and 4
/// rows of 128 tokens. No peer runs here: ONNX Runtime needs an exported graph, which the folder lacks.
/// <code>dotnet run -c Release --project bench -- --filter '*Gpt2Benchmarks*'</code>
/// </summary>
[MemoryDiagnoser]
[MinColumn]
[SimpleJob(launchCount: 1, warmupCount: 4, iterationCount: 12)]
public class Gpt2Benchmarks
{
    private const int Seq = 128;
    private string folder = "";
    private Device device = null!;
    private Model model = null!;
    private Headlight.Models.Tokenization.TokenBatch batch = null!;

    /// <summary>Rows of 128 tokens.</summary>
    [Params(1, 4)]
    public int Batch { get; set; } = 1;

    /// <summary>Writes the folder, loads it and runs the first pass of this shape.</summary>
    [GlobalSetup]
    public void Setup()
    {
        folder = Path.Combine(Path.GetTempPath(), "headlight-bench-gpt2-" + Environment.ProcessId);
        Directory.CreateDirectory(folder);
        RandomGpt2Folder.Write(folder, seed: 124);
        device = Device.Open("cpu");
        model = Model.Load(folder, device);
        var random = new Random(42);
        batch = model.FromIds(Enumerable.Range(0, Batch).Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, Seq).Select(_ => random.Next(RandomGpt2Folder.Vocab)).ToArray()).ToList());
        model.Forward(batch);
    }

    /// <summary>Frees the model and removes the folder.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        model.Dispose();
        device.Dispose();
        Directory.Delete(folder, recursive: true);
    }

    /// <summary>Logits [batch, 128, 50257] (the output projection is the tied embedding, 38.6 M weights).</summary>
    [Benchmark]
    public ForwardResult Forward() => model.Forward(batch);
}
