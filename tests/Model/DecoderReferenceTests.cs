using System.Text.Json;
using Headlight.Models;
using Headlight.Tests.Loading;

namespace Headlight.Tests.Model;

/// <summary>
/// The GPT-2 decoder against shared/fixtures/gpt2-tiny: a random GPT-2 in Hugging Face layout whose
/// logits and attention probabilities were computed in float64 with PyTorch's own modules.
/// </summary>
public sealed class DecoderReferenceTests
{
    private const double LogitsRelativeL2 = 1e-5;
    private const double ProbabilityAbsolute = 1e-6;

    public static TheoryData<string> Backends_ => new() { "cpu", "ilgpu-cpu", "cuda" };

    /// <summary>One fixture case: ids, logits [position][vocab], attention [layer][head][query][key].</summary>
    public sealed record Case(int[] Ids, double[][] Logits, double[][][][] Attention);

    public static IReadOnlyList<Case> Cases { get; } = LoadCases();

    [SkippableTheory]
    [MemberData(nameof(Backends_))]
    public void Logits_and_attention_match_pytorch(string backend) => Check(backend);

    [SkippableFact]
    [Trait("Category", "OpenCL")]
    public void OpenCL_logits_and_attention_match_pytorch() => Check("opencl");

    [Fact]
    public void Batched_rows_of_different_lengths_match_the_reference()
    {
        using var model = Headlight.Models.Model.Load(LoadingFiles.SharedFixture("gpt2-tiny"), Backends.Require("cpu"));
        var result = model.Forward(model.FromIds(Cases.Select(c => (IReadOnlyList<int>)c.Ids).ToList()));
        int t = result.SequenceLength;
        int v = model.Config.VocabSize;
        for (int r = 0; r < Cases.Count; r++)
        {
            var c = Cases[r];
            AssertRelativeL2(c.Logits, result.Logits!.AsSpan(r * t * v, c.Ids.Length * v).ToArray(), v, $"row {r} of a padded batch");
        }
    }

    [Fact]
    public void Changing_a_later_token_never_changes_earlier_logits()
    {
        using var model = Headlight.Models.Model.Load(LoadingFiles.SharedFixture("gpt2-tiny"), Backends.Require("cpu"));
        int[] ids = Cases[0].Ids;
        var before = model.Forward(model.FromIds([ids])).Logits!;
        int v = model.Config.VocabSize;
        for (int changed = 1; changed < ids.Length; changed++)
        {
            int[] altered = (int[])ids.Clone();
            altered[changed] = (altered[changed] + 17) % v;
            var after = model.Forward(model.FromIds([altered])).Logits!;
            for (int i = 0; i < changed * v; i++)
            {
                Assert.True(BitConverter.SingleToInt32Bits(before[i]) == BitConverter.SingleToInt32Bits(after[i]),
                    $"Changing token {changed} changed logit {i % v} at earlier position {i / v}: {before[i]:R} -> {after[i]:R}.");
            }

            Assert.NotEqual(before.AsSpan(changed * v, v).ToArray(), after.AsSpan(changed * v, v).ToArray());
        }
    }

    [Fact]
    public void Top_k_and_greedy_generation_follow_the_reference_logits()
    {
        using var model = Headlight.Models.Model.Load(LoadingFiles.SharedFixture("gpt2-tiny"), Backends.Require("cpu"));
        foreach (var c in Cases)
        {
            var last = c.Logits[^1];
            var expectedOrder = Enumerable.Range(0, last.Length).OrderByDescending(i => last[i]).Take(5).ToArray();
            var result = model.Forward(model.FromIds([c.Ids]));
            var top = model.TopK(result, 0, c.Ids.Length - 1, 5);
            Assert.Equal(expectedOrder, top.Select(p => p.Id).ToArray());
            double max = last.Max();
            double expectedProbability = 1 / last.Sum(x => Math.Exp(x - max));
            Assert.Equal(expectedProbability, top[0].Probability, 1e-5);
            Assert.Equal(expectedOrder[0], model.Generate(c.Ids, 3)[0]);
        }
    }

    private static void Check(string backend)
    {
        var device = Backends.Require(backend);
        using var model = Headlight.Models.Model.Load(LoadingFiles.SharedFixture("gpt2-tiny"), device);
        Assert.Equal(ModelFamily.Gpt2Decoder, model.Config.Family);
        int v = model.Config.VocabSize;
        foreach (var c in Cases)
        {
            var capture = Enumerable.Range(0, model.Config.Layers).Select(ActivationNames.AttentionProbs).ToArray();
            var result = model.Forward(model.FromIds([c.Ids]), capture);
            AssertRelativeL2(c.Logits, result.Logits!, v, $"{backend}: {c.Ids.Length} tokens");
            for (int l = 0; l < c.Attention.Length; l++)
            {
                var p = result.Activations[ActivationNames.AttentionProbs(l)];
                for (int h = 0; h < c.Attention[l].Length; h++)
                {
                    for (int q = 0; q < c.Ids.Length; q++)
                    {
                        for (int k = 0; k < c.Ids.Length; k++)
                        {
                            double expected = c.Attention[l][h][q][k];
                            float actual = p[0, h, q, k];
                            if (k > q)
                            {
                                Assert.True(actual == 0f, $"{backend}: layer {l} head {h}: future key {k} of query {q} has probability {actual}.");
                            }

                            Assert.True(Math.Abs(actual - expected) <= ProbabilityAbsolute, $"{backend}: layer {l} head {h} [{q}, {k}]: {actual} vs {expected}.");
                        }
                    }
                }
            }
        }
    }

    private static void AssertRelativeL2(double[][] expected, float[] actual, int vocab, string what)
    {
        double num = 0;
        double den = 0;
        for (int pos = 0; pos < expected.Length; pos++)
        {
            for (int j = 0; j < vocab; j++)
            {
                double e = expected[pos][j];
                double diff = actual[(pos * vocab) + j] - e;
                num += diff * diff;
                den += e * e;
            }
        }

        double rel = Math.Sqrt(num / den);
        Assert.True(rel <= LogitsRelativeL2, $"{what}: logits relative L2 error {rel:E3} > {LogitsRelativeL2:E0}.");
    }

    private static List<Case> LoadCases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(LoadingFiles.SharedFixture("gpt2-tiny"), "expected.json")));
        var cases = new List<Case>();
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            cases.Add(new Case(
                c.GetProperty("ids").Deserialize<int[]>()!,
                c.GetProperty("logits").Deserialize<double[][]>()!,
                c.GetProperty("attention").Deserialize<double[][][][]>()!));
        }

        return cases;
    }
}
