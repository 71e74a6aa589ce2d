using System.Text.Json;
using Headlight.Models;
using Headlight.Tests.Loading;
using Xunit.Abstractions;

namespace Headlight.Tests.Model;

/// <summary>
/// GPT-NeoX (Pythia), Llama and Qwen2 against shared/fixtures/{pythia,llama,qwen2}-tiny: random models saved as Hugging Face
/// folders with float64 references (logits, attention, hidden states, the gradient of the target logit w.r.t. the input
/// embeddings) computed by code written from the Hugging Face sources. Tolerances are the fixtures' own.
/// </summary>
public sealed class ModernDecoderReferenceTests(ITestOutputHelper output)
{
    private const double LogitsRelativeL2 = 1e-5;
    private const double HiddenRelativeL2 = 1e-5;
    private const double ProbabilityAbsolute = 1e-5;
    private const double GradientRelativeL2 = 1e-4;

    public static readonly string[] Fixtures = ["pythia-tiny", "llama-tiny", "qwen2-tiny"];

    public static TheoryData<string, string> FixtureBackends
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (string f in Fixtures)
            {
                foreach (string b in new[] { "cpu", "ilgpu-cpu", "cuda" })
                {
                    data.Add(f, b);
                }
            }

            return data;
        }
    }

    public static TheoryData<string> FixtureNames => new(Fixtures);

    /// <summary>One fixture case.</summary>
    public sealed record Case(int[] Ids, int TargetToken, double[][] Logits, double[][][][] Attention, double[][] Gradient, double[][] LastHidden, double[][][] Hidden);

    [SkippableTheory]
    [MemberData(nameof(FixtureBackends))]
    public void Logits_attention_hidden_states_and_gradient_match_the_reference(string fixture, string backend) => Check(fixture, backend);

    [SkippableTheory]
    [MemberData(nameof(FixtureNames))]
    [Trait("Category", "OpenCL")]
    public void OpenCL_matches_the_reference(string fixture) => Check(fixture, "opencl");

    [Theory]
    [MemberData(nameof(FixtureNames))]
    public void Family_and_shape_come_from_the_config(string fixture)
    {
        using var model = Headlight.Models.Model.Load(LoadingFiles.SharedFixture(fixture), Backends.Require("cpu"));
        var c = model.Config;
        switch (fixture)
        {
            case "pythia-tiny":
                Assert.Equal(ModelFamily.GptNeoXDecoder, c.Family);
                Assert.Equal(4, c.RotaryDims);
                Assert.True(c.ParallelResidual);
                Assert.Equal(NormKind.LayerNorm, c.Norm);
                Assert.True(c.HasUntiedHead);
                break;
            case "llama-tiny":
                Assert.Equal(ModelFamily.LlamaDecoder, c.Family);
                Assert.Equal(2, c.KeyValueHeads);
                Assert.Equal(MlpKind.SwiGlu, c.Mlp);
                Assert.False(c.HasQkvBias);
                Assert.True(c.HasUntiedHead);
                break;
            default:
                Assert.Equal(ModelFamily.Qwen2Decoder, c.Family);
                Assert.True(c.HasQkvBias);
                Assert.False(c.HasOutputBias);
                Assert.False(c.HasUntiedHead);
                Assert.Equal(1e6, c.RopeTheta);
                break;
        }

        // Every stored element is a parameter the config accounts for.
        long stored = new FileInfo(Path.Combine(LoadingFiles.SharedFixture(fixture), "model.safetensors")).Length;
        long header = BitConverter.ToInt64(File.ReadAllBytes(Path.Combine(LoadingFiles.SharedFixture(fixture), "model.safetensors")).AsSpan(0, 8));
        Assert.Equal((stored - 8 - header) / sizeof(float), c.ParameterCount);
    }

    [Theory]
    [MemberData(nameof(FixtureNames))]
    public void Changing_a_later_token_never_changes_earlier_logits(string fixture)
    {
        using var model = Headlight.Models.Model.Load(LoadingFiles.SharedFixture(fixture), Backends.Require("cpu"));
        int[] ids = LoadCases(fixture)[0].Ids;
        var before = model.Forward(model.FromIds([ids])).Logits!;
        int v = model.Config.VocabSize;
        foreach (int changed in new[] { 1, ids.Length / 2, ids.Length - 1 })
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

    [Theory]
    [MemberData(nameof(FixtureNames))]
    public void Key_value_cached_logits_equal_full_recompute_at_every_step(string fixture)
    {
        using var model = Headlight.Models.Model.Load(LoadingFiles.SharedFixture(fixture), Backends.Require("cpu"));
        var prompt = LoadCases(fixture)[1].Ids;
        var sampled = new GenerationOptions { MaxNewTokens = 24, Temperature = 0.8, TopK = 50, TopP = 0.95, Seed = 7, StopAtEndOfSequence = false };
        var cached = new List<float[]>();
        var full = new List<float[]>();
        var a = model.Generate(prompt, sampled, (_, l) => cached.Add(l.ToArray()), default);
        var b = model.Generate(prompt, sampled with { UseKeyValueCache = false }, (_, l) => full.Add(l.ToArray()), default);
        Assert.Equal(b.Tokens, a.Tokens);
        Assert.Equal(24, cached.Count);
        double worst = 0;
        for (int step = 0; step < cached.Count; step++)
        {
            double scale = full[step].Max(x => Math.Abs((double)x));
            for (int j = 0; j < full[step].Length; j++)
            {
                worst = Math.Max(worst, Math.Abs(cached[step][j] - full[step][j]) / scale);
            }
        }

        output.WriteLine($"{fixture}: cached vs full-recompute logits, max |difference| / max |logit| over 24 steps: {worst:E2}");
        Assert.True(worst <= 1e-6, $"{fixture}: cached logits differ from full recompute by {worst:E2} of the largest logit.");

        // The first step's logits are the reference's last-position logits.
        var reference = LoadCases(fixture)[1].Logits[^1];
        double num = 0, den = 0;
        for (int j = 0; j < reference.Length; j++)
        {
            num += Math.Pow(cached[0][j] - reference[j], 2);
            den += reference[j] * reference[j];
        }

        Assert.True(Math.Sqrt(num / den) <= LogitsRelativeL2);
    }

    [Fact]
    public void Sampling_is_reproducible_and_honours_its_options()
    {
        using var model = Headlight.Models.Model.Load(LoadingFiles.SharedFixture("llama-tiny"), Backends.Require("cpu"));
        var prompt = LoadCases("llama-tiny")[0].Ids;
        var options = new GenerationOptions { MaxNewTokens = 16, Temperature = 1.5, Seed = 3, StopAtEndOfSequence = false };
        Assert.Equal(model.Generate(prompt, options).Tokens, model.Generate(prompt, options).Tokens);
        Assert.NotEqual(model.Generate(prompt, options).Tokens, model.Generate(prompt, options with { Seed = 4 }).Tokens);

        // Top-k 1 is greedy whatever the temperature; greedy is the argmax of the reference's last logits.
        var greedy = model.Generate(prompt, new GenerationOptions { MaxNewTokens = 5, StopAtEndOfSequence = false });
        Assert.Equal(greedy.Tokens, model.Generate(prompt, options with { MaxNewTokens = 5, TopK = 1 }).Tokens);
        var last = LoadCases("llama-tiny")[0].Logits[^1];
        Assert.Equal(Array.IndexOf(last, last.Max()), greedy.Tokens[0]);

        // A tiny nucleus keeps only the most likely token.
        Assert.Equal(greedy.Tokens, model.Generate(prompt, options with { MaxNewTokens = 5, TopP = 1e-9 }).Tokens);
        Assert.All(model.Generate(prompt, options with { TopK = 3 }).Probabilities, p => Assert.InRange(p, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate(prompt, options with { TopP = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => model.Generate(prompt, options with { Temperature = -1 }));
    }

    [Fact]
    public void Generation_stops_at_the_end_of_sequence_token()
    {
        using var model = Headlight.Models.Model.Load(LoadingFiles.SharedFixture("llama-tiny"), Backends.Require("cpu"));
        var prompt = LoadCases("llama-tiny")[0].Ids;
        var free = model.Generate(prompt, new GenerationOptions { MaxNewTokens = 40, Temperature = 1, Seed = 11, StopAtEndOfSequence = false });
        Assert.Equal([2], model.Config.EndOfSequenceIds);
        int at = free.Tokens.ToList().IndexOf(2);
        var stopping = model.Generate(prompt, new GenerationOptions { MaxNewTokens = 40, Temperature = 1, Seed = 11 });
        if (at >= 0)
        {
            Assert.True(stopping.StoppedAtEndOfSequence);
            Assert.Equal(free.Tokens.Take(at + 1), stopping.Tokens);
        }
        else
        {
            Assert.False(stopping.StoppedAtEndOfSequence);
            Assert.Equal(free.Tokens, stopping.Tokens);
        }
    }

    private void Check(string fixture, string backend)
    {
        var device = Backends.Require(backend);
        using var model = Headlight.Models.Model.Load(LoadingFiles.SharedFixture(fixture), device);
        int v = model.Config.VocabSize;
        int d = model.Config.Hidden;
        int layers = model.Config.Layers;
        foreach (var c in LoadCases(fixture))
        {
            int t = c.Ids.Length;
            string what = $"{fixture} on {backend}, {t} tokens";
            var capture = Enumerable.Range(0, layers).Select(ActivationNames.AttentionProbs)
                .Concat(Enumerable.Range(0, layers).Select(ActivationNames.ResidPost)).Append(ActivationNames.Embed).Append(ActivationNames.Final).ToArray();
            var result = model.Forward(model.FromIds([c.Ids]), capture);
            AssertRelativeL2(c.Logits, result.Logits!, LogitsRelativeL2, $"{what}: logits");
            AssertRelativeL2(c.LastHidden, result.Activations[ActivationNames.Final].Data, HiddenRelativeL2, $"{what}: last hidden state");
            AssertRelativeL2(c.Hidden[0], result.Activations[ActivationNames.Embed].Data, HiddenRelativeL2, $"{what}: input embeddings");
            double worstProbability = 0;
            for (int l = 0; l < layers; l++)
            {
                AssertRelativeL2(c.Hidden[l + 1], result.Activations[ActivationNames.ResidPost(l)].Data, HiddenRelativeL2, $"{what}: stream after layer {l}");
                var p = result.Activations[ActivationNames.AttentionProbs(l)];
                for (int h = 0; h < c.Attention[l].Length; h++)
                {
                    for (int q = 0; q < t; q++)
                    {
                        for (int k = 0; k < t; k++)
                        {
                            float actual = p[0, h, q, k];
                            if (k > q)
                            {
                                Assert.True(actual == 0f, $"{what}: layer {l} head {h}: future key {k} of query {q} has probability {actual}.");
                            }

                            worstProbability = Math.Max(worstProbability, Math.Abs(actual - c.Attention[l][h][q][k]));
                            Assert.True(Math.Abs(actual - c.Attention[l][h][q][k]) <= ProbabilityAbsolute, $"{what}: layer {l} head {h} [{q}, {k}]: {actual} vs {c.Attention[l][h][q][k]}.");
                        }
                    }
                }
            }

            output.WriteLine($"{what}: attention max abs {worstProbability:E2}");

            // d logit[T−1, target] / d input embeddings: seed the last hidden state with the head's row of the target.
            var head = model.OutputEmbeddings.ToArray();
            var seed = new float[t * d];
            head.AsSpan(c.TargetToken * d, d).CopyTo(seed.AsSpan((t - 1) * d, d));
            using var pass = model.Run(PassRequest.For(model.FromIds([c.Ids])) with { Backward = new BackwardOptions { Rule = BackwardRule.Gradient } });
            pass.Backward(seed);
            AssertRelativeL2(c.Gradient, pass.InputSignal.ToArray(), GradientRelativeL2, $"{what}: gradient w.r.t. input embeddings");
        }
    }

    private void AssertRelativeL2(double[][] expected, float[] actual, double limit, string what)
    {
        double num = 0;
        double den = 0;
        int width = expected[0].Length;
        Assert.Equal(expected.Length * width, actual.Length);
        for (int row = 0; row < expected.Length; row++)
        {
            for (int j = 0; j < width; j++)
            {
                double diff = actual[(row * width) + j] - expected[row][j];
                num += diff * diff;
                den += expected[row][j] * expected[row][j];
            }
        }

        double rel = Math.Sqrt(num / den);
        output.WriteLine($"{what}: relative L2 {rel:E2}");
        Assert.True(rel <= limit, $"{what}: relative L2 error {rel:E3} > {limit:E0}.");
    }

    private static readonly Dictionary<string, List<Case>> Loaded = [];

    private static List<Case> LoadCases(string fixture)
    {
        lock (Loaded)
        {
            if (Loaded.TryGetValue(fixture, out var known))
            {
                return known;
            }

            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(LoadingFiles.SharedFixture(fixture), "expected.json")));
            var cases = new List<Case>();
            foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            {
                cases.Add(new Case(
                    c.GetProperty("ids").Deserialize<int[]>()!,
                    c.GetProperty("target_token").GetInt32(),
                    c.GetProperty("logits").Deserialize<double[][]>()!,
                    c.GetProperty("attention").Deserialize<double[][][][]>()!,
                    c.GetProperty("grad_wrt_input_embeddings").Deserialize<double[][]>()!,
                    c.GetProperty("last_hidden_state").Deserialize<double[][]>()!,
                    c.GetProperty("hidden_states").Deserialize<double[][][]>()!));
            }

            Loaded[fixture] = cases;
            return cases;
        }
    }
}
