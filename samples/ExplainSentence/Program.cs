using Headlight.Explain;
using Headlight.Kernels;
using Headlight.Models;

// Why does this document match the query? Integrated gradients of the cosine similarity, per word.
using var device = Device.Open(); // CUDA, then an OpenCL GPU, then the managed SIMD CPU path
using var model = Model.Load("minilm", device);
var target = new EmbeddingSimilarityTarget("How do I reset my password?");
var result = Explainer.Explain(model, "Open Settings, choose Account and click Reset password.", target, new IntegratedGradientsOptions { Steps = 32 });

var row = result.Rows[0];
Console.WriteLine($"{result.Method} on {result.Device}: similarity {row.TargetValue:F4}, {row.Check?.Name} {row.Check?.Value:E1}");
foreach (var word in row.Words.OrderByDescending(w => Math.Abs(w.Score)))
{
    Console.WriteLine($"{word.Text,-10} {word.Score,8:F4} {new string('#', (int)Math.Round(Math.Abs(word.Score) * 100))}");
}
