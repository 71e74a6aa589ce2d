using System.Text.Json;
using Headlight.Explain;
using Headlight.Models;
using Headlight.Tests.Explain;
using Headlight.Tests.Loading;
using Xunit.Abstractions;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Model;

/// <summary>
/// RoBERTa and DistilBERT against shared/fixtures/roberta-tiny and distilbert-tiny: random encoders in Hugging Face
/// layout with float64 references (hidden states, attention, pooled sentence embedding and its gradient with respect
/// to the word embeddings) for a single row and a padded batch (RoBERTa's includes a left-padded row).
/// </summary>
public sealed class EncoderFamilyReferenceTests(ITestOutputHelper output)
{
    private const double HiddenRelativeL2 = 1e-5;
    private const double ProbabilityAbsolute = 1e-5;

    public static TheoryData<string, string> Columns_ => Columns("cpu", "ilgpu-cpu", "cuda");

    /// <summary>One fixture case: a batch [B][T] with its references.</summary>
    public sealed record Case(
        string Name, int[][] Ids, int[][] Mask, int[][] Positions, double[][][] LastHidden, double[][][][] HiddenStates,
        double[][][][][] Attention, double[][] SentenceEmbedding, double[][]? Pooler, int Unit, double[][][] Gradient)
    {
        public int Rows => Ids.Length;

        public int Seq => Ids[0].Length;

        /// <summary>The real tokens of row <paramref name="r"/> (wherever the padding is).</summary>
        public int[] RealIds(int r) => Ids[r].Where((_, t) => Mask[r][t] == 1).ToArray();
    }

    [SkippableTheory]
    [MemberData(nameof(Columns_))]
    public void Hidden_states_and_attention_match_the_reference(string fixture, string backend) => CheckForward(fixture, backend);

    [SkippableTheory]
    [MemberData(nameof(Columns_))]
    public void Sentence_embedding_gradient_matches_the_reference(string fixture, string backend) => CheckGradient(fixture, backend);

    [SkippableFact]
    [Trait("Category", "OpenCL")]
    public void OpenCL_roberta_and_distilbert_match_the_reference()
    {
        foreach (string fixture in (string[])["roberta-tiny", "distilbert-tiny"])
        {
            CheckForward(fixture, "opencl");
            CheckGradient(fixture, "opencl");
        }
    }

    [Theory]
    [InlineData("roberta-tiny")]
    [InlineData("distilbert-tiny")]
    public void Sentence_embeddings_and_pooler_match_the_reference(string fixture)
    {
        using var model = HeadlightModel.Load(LoadingFiles.SharedFixture(fixture), Backends.Require("cpu"));
        Assert.Equal(Models.Loading.PoolingMode.Mean, model.Config.Pooling);
        Assert.True(model.Config.NormalizeEmbedding);
        foreach (var c in Load(fixture))
        {
            // Our batcher pads on the right; a row alone equals the row padded either way.
            var result = model.Forward(model.FromIds(Enumerable.Range(0, c.Rows).Select(r => (IReadOnlyList<int>)c.RealIds(r)).ToList()));
            for (int r = 0; r < c.Rows; r++)
            {
                AssertRelativeL2(c.SentenceEmbedding[r], result.SentenceEmbeddings![r], HiddenRelativeL2, $"{fixture} {c.Name} row {r}: sentence embedding");
                // HF's pooler reads position 0, a pad in a left-padded row; ours is right-padded.
                if (c.Pooler is not null && c.Mask[r][0] == 1)
                {
                    var pooled = result.Pooler!.AsSpan(r * model.Config.Hidden, model.Config.Hidden).ToArray();
                    AssertRelativeL2(c.Pooler[r], pooled, HiddenRelativeL2, $"{fixture} {c.Name} row {r}: pooler output");
                }
            }
        }
    }

    [Fact]
    public void Roberta_position_ids_follow_the_ids_as_in_the_reference()
    {
        using var model = HeadlightModel.Load(LoadingFiles.SharedFixture("roberta-tiny"), Backends.Require("cpu"));
        Assert.Equal(1, model.Config.PositionPaddingId);
        Assert.Equal(32, model.Config.MaxTokens);
        foreach (var c in Load("roberta-tiny"))
        {
            var ids = c.Ids.SelectMany(r => r).ToArray();
            var state = model.Prepare(ids, c.Mask.SelectMany(r => r).ToArray(), new int[ids.Length], c.Rows, c.Seq, savesForBackward: false);
            Assert.Equal(c.Positions.SelectMany(r => r).ToArray(), state.Positions.ToArray());
        }

        // 33 tokens need position 34, past the 34-row table.
        var tooLong = Enumerable.Repeat(5, 33).ToArray();
        Assert.Contains("32", Assert.ThrowsAny<ArgumentException>(() => model.FromIds([tooLong])).Message);
    }

    [Fact]
    public void Distilbert_has_no_token_types_and_its_own_config_keys()
    {
        using var model = HeadlightModel.Load(LoadingFiles.SharedFixture("distilbert-tiny"), Backends.Require("cpu"));
        Assert.Equal(0, model.Config.TypeVocabSize);
        Assert.Equal((3, 64, 4, 192, 32), (model.Config.Layers, model.Config.Hidden, model.Config.Heads, model.Config.Intermediate, model.Config.MaxPositions));
        Assert.Equal(1e-12f, model.Config.LayerNormEpsilon);
        Assert.Null(model.Config.PositionPaddingId);
    }

    private void CheckForward(string fixture, string backend)
    {
        var device = Backends.Require(backend);
        using var model = HeadlightModel.Load(LoadingFiles.SharedFixture(fixture), device);
        Assert.Equal(ModelFamily.BertEncoder, model.Config.Family);
        int d = model.Config.Hidden;
        int layers = model.Config.Layers;
        int heads = model.Config.Heads;
        var capture = new List<string> { ActivationNames.Embed };
        capture.AddRange(Enumerable.Range(0, layers).SelectMany(l => new[] { ActivationNames.AttentionProbs(l), ActivationNames.ResidPost(l) }));
        foreach (var c in Load(fixture))
        {
            int b = c.Rows;
            int t = c.Seq;
            using var pass = model.Run(new PassRequest
            {
                Rows = b,
                SequenceLength = t,
                InputIds = c.Ids.SelectMany(r => r).ToArray(),
                AttentionMask = c.Mask.SelectMany(r => r).ToArray(),
                Capture = capture,
            });
            string what = $"{fixture} {c.Name} on {backend}";
            double worstHidden = 0;
            double worstProbability = 0;
            for (int r = 0; r < b; r++)
            {
                worstHidden = Math.Max(worstHidden, RealRelativeL2(c.LastHidden[r], pass.LastHiddenState.ToArray(), c.Mask[r], r, t, d, $"{what} row {r}: last hidden state"));
                for (int l = 0; l <= layers; l++)
                {
                    var h = pass.Activations[l == 0 ? ActivationNames.Embed : ActivationNames.ResidPost(l - 1)].Data;
                    worstHidden = Math.Max(worstHidden, RealRelativeL2(c.HiddenStates[r][l], h, c.Mask[r], r, t, d, $"{what} row {r}: hidden state {l}"));
                }

                for (int l = 0; l < layers; l++)
                {
                    var p = pass.Activations[ActivationNames.AttentionProbs(l)];
                    for (int h = 0; h < heads; h++)
                    {
                        for (int q = 0; q < t; q++)
                        {
                            if (c.Mask[r][q] == 0)
                            {
                                continue;
                            }

                            for (int k = 0; k < t; k++)
                            {
                                float actual = p[r, h, q, k];
                                if (c.Mask[r][k] == 0)
                                {
                                    Assert.True(actual == 0f, $"{what}: row {r} layer {l} head {h}: padded key {k} of query {q} has probability {actual}.");
                                }

                                double error = Math.Abs(actual - c.Attention[r][l][h][q][k]);
                                worstProbability = Math.Max(worstProbability, error);
                                Assert.True(error <= ProbabilityAbsolute, $"{what}: row {r} layer {l} head {h} [{q}, {k}]: {actual} vs {c.Attention[r][l][h][q][k]}.");
                            }
                        }
                    }
                }
            }

            output.WriteLine($"{what}: hidden states relative L2 ≤ {worstHidden:E2}, attention |Δ| ≤ {worstProbability:E2}");
        }
    }

    private void CheckGradient(string fixture, string backend)
    {
        var device = Backends.Require(backend);
        using var model = HeadlightModel.Load(LoadingFiles.SharedFixture(fixture), device);
        int d = model.Config.Hidden;
        foreach (var c in Load(fixture))
        {
            var batch = model.FromIds(Enumerable.Range(0, c.Rows).Select(r => (IReadOnlyList<int>)c.RealIds(r)).ToList());
            var result = Explainer.Explain(model, batch, OutputUnitTarget.Pooled(c.Unit), new SaliencyOptions());
            for (int r = 0; r < c.Rows; r++)
            {
                var expected = Enumerable.Range(0, c.Seq).Where(t => c.Mask[r][t] == 1).SelectMany(t => c.Gradient[r][t]).ToArray();
                var row = result.Rows[r];
                string what = $"{fixture} {c.Name} row {r} on {backend}, sentence embedding unit {c.Unit}";
                Assert.Equal(expected.Length, row.EmbeddingScores.Length);
                Assert.True(Math.Abs(row.TargetValue - c.SentenceEmbedding[r][c.Unit]) <= 1e-5, $"{what}: value {row.TargetValue} vs {c.SentenceEmbedding[r][c.Unit]}.");
                double error = GradientCheckTests.RelativeL2(row.EmbeddingScores.ToArray(), expected);
                Assert.True(error <= GradientCheckTests.GradientRelative, $"{what}: gradient relative L2 error {error:E2}.");
                output.WriteLine($"{what}: gradient relative L2 error {error:E2}");
            }
        }
    }

    // Relative L2 over the real positions of row r of a [B, T, d] array.
    private static double RealRelativeL2(double[][] expected, float[] actual, int[] mask, int r, int t, int d, string what)
    {
        double num = 0;
        double den = 0;
        for (int p = 0; p < t; p++)
        {
            if (mask[p] == 0)
            {
                continue;
            }

            for (int j = 0; j < d; j++)
            {
                double e = expected[p][j];
                double diff = actual[(((r * t) + p) * d) + j] - e;
                num += diff * diff;
                den += e * e;
            }
        }

        double rel = Math.Sqrt(num / den);
        Assert.True(rel <= HiddenRelativeL2, $"{what}: relative L2 error {rel:E3} > {HiddenRelativeL2:E0}.");
        return rel;
    }

    private static void AssertRelativeL2(double[] expected, float[] actual, double limit, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double num = 0;
        double den = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double diff = actual[i] - expected[i];
            num += diff * diff;
            den += expected[i] * expected[i];
        }

        double rel = Math.Sqrt(num / den);
        Assert.True(rel <= limit, $"{what}: relative L2 error {rel:E3} > {limit:E0}.");
    }

    private static TheoryData<string, string> Columns(params string[] backends)
    {
        var data = new TheoryData<string, string>();
        foreach (string fixture in (string[])["roberta-tiny", "distilbert-tiny"])
        {
            foreach (string backend in backends)
            {
                data.Add(fixture, backend);
            }
        }

        return data;
    }

    private static readonly Dictionary<string, List<Case>> Loaded = [];

    private static List<Case> Load(string fixture)
    {
        lock (Loaded)
        {
            if (Loaded.TryGetValue(fixture, out var cached))
            {
                return cached;
            }

            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(LoadingFiles.SharedFixture(fixture), "expected.json")));
            var cases = doc.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
                c.GetProperty("name").GetString()!,
                c.GetProperty("ids").Deserialize<int[][]>()!,
                c.GetProperty("attention_mask").Deserialize<int[][]>()!,
                c.GetProperty("position_ids").Deserialize<int[][]>()!,
                c.GetProperty("last_hidden_state").Deserialize<double[][][]>()!,
                c.GetProperty("hidden_states").Deserialize<double[][][][]>()!,
                c.GetProperty("attention").Deserialize<double[][][][][]>()!,
                c.GetProperty("sentence_embedding").Deserialize<double[][]>()!,
                c.TryGetProperty("pooler_output", out var pooler) ? pooler.Deserialize<double[][]>() : null,
                c.GetProperty("target").GetProperty("unit").GetInt32(),
                c.GetProperty("grad_wrt_word_embeddings").Deserialize<double[][][]>()!)).ToList();
            Loaded[fixture] = cases;
            return cases;
        }
    }
}
