using System.Text.Json;
using Headlight.Explain;
using Headlight.Tests.Loading;
using Xunit.Abstractions;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Explain;

/// <summary>
/// The decoder's backward pass against shared/fixtures/gpt2-tiny: PyTorch's float64 gradient of
/// <c>logits[target_position, target_token]</c> with respect to the input embedding <c>wte[ids] + wpe</c>.
/// With positions held fixed that is our gradient with respect to the word embeddings.
/// </summary>
public sealed class Gpt2FixtureGradientTests(ITestOutputHelper output)
{
    public static TheoryData<string> Backends_ => new() { "cpu", "ilgpu-cpu", "cuda" };

    /// <summary>One fixture case.</summary>
    public sealed record Case(int[] Ids, int TargetPosition, int TargetToken, double TargetLogit, double[][] Gradient);

    public static IReadOnlyList<Case> Cases { get; } = LoadCases();

    [SkippableTheory]
    [MemberData(nameof(Backends_))]
    public void Input_embedding_gradient_matches_pytorch(string backend) => Check(backend);

    [SkippableFact]
    [Trait("Category", "OpenCL")]
    public void OpenCL_input_embedding_gradient_matches_pytorch() => Check("opencl");

    private void Check(string backend)
    {
        var device = Backends.Require(backend);
        using var model = HeadlightModel.Load(LoadingFiles.SharedFixture("gpt2-tiny"), device);
        int d = model.Config.Hidden;
        foreach (var c in Cases)
        {
            var result = Explainer.Explain(model, model.FromIds([c.Ids]), new NextTokenLogitTarget(c.TargetToken, c.TargetPosition), new SaliencyOptions());
            var row = result.Rows[0];
            var expected = c.Gradient.SelectMany(g => g).ToArray();
            double error = GradientCheckTests.RelativeL2(row.EmbeddingScores.ToArray(), expected);
            string what = $"{backend}: {c.Ids.Length} tokens, logit of {c.TargetToken} at {c.TargetPosition}";
            Assert.Equal(c.Ids.Length * d, expected.Length);
            Assert.True(Math.Abs(row.TargetValue - c.TargetLogit) <= 1e-5 * Math.Max(1, Math.Abs(c.TargetLogit)), $"{what}: target logit {row.TargetValue} vs {c.TargetLogit}.");
            Assert.True(error <= GradientCheckTests.GradientRelative, $"{what}: gradient relative L2 error {error:E2} vs PyTorch.");
            output.WriteLine($"{what}: gradient relative L2 error {error:E2}");
        }
    }

    private static List<Case> LoadCases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(LoadingFiles.SharedFixture("gpt2-tiny"), "expected.json")));
        return doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("ids").Deserialize<int[]>()!,
            c.GetProperty("target_position").GetInt32(),
            c.GetProperty("target_token").GetInt32(),
            c.GetProperty("target_logit").GetDouble(),
            c.GetProperty("grad_wrt_input_embeddings").Deserialize<double[][]>()!)).ToList();
    }
}
