using Headlight.Explain;
using Xunit.Abstractions;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Explain;

/// <summary>
/// Integrated gradients: completeness on MiniLM with a similarity target, the delta shrinking as the
/// steps grow, Riemann and Gauss–Legendre agreeing, batching that does not change the result; SmoothGrad
/// with no noise equal to saliency; and the quadrature nodes against known values.
/// </summary>
public sealed class IntegratedGradientsTests(ITestOutputHelper output)
{
    /// <summary>Ten (document, query) pairs: each document is explained by its similarity to the query.</summary>
    public static readonly (string Document, string Query)[] Pairs =
    [
        ("The cat sat on the mat.", "Where is the cat?"),
        ("Stocks fell sharply after the central bank raised interest rates.", "Why did the market drop?"),
        ("Patients with type 2 diabetes were given metformin for 24 weeks.", "diabetes drug trial"),
        ("The train to Berlin leaves from platform nine at noon.", "When does the train depart?"),
        ("A quick brown fox jumps over the lazy dog.", "animals jumping"),
        ("Headlight explains transformer models with gradients.", "interpretability of neural networks"),
        ("This product is terrible and I want a refund.", "customer complaint"),
        ("The mitochondria is the powerhouse of the cell.", "cell biology"),
        ("Rain is expected in Paris tomorrow afternoon.", "weather forecast for France"),
        ("She scored two goals in the final minutes of the match.", "football game result"),
    ];

    [Fact]
    public void Completeness_holds_on_minilm_similarity_with_64_gauss_legendre_steps_and_the_delta_shrinks_with_steps()
    {
        using var model = HeadlightModel.Load("minilm", Backends.Require("cpu"));
        var deltas = new Dictionary<int, double>();
        foreach (int steps in new[] { 8, 16, 64 })
        {
            double sum = 0;
            foreach (var (document, query) in Pairs)
            {
                var result = Explainer.Explain(model, document, new EmbeddingSimilarityTarget(query), new IntegratedGradientsOptions { Steps = steps });
                var row = result.Rows[0];
                double change = row.TargetValue - row.BaselineValue!.Value;
                double delta = row.Check!.Value;
                Assert.Equal(row.TokenScores.Sum() - change, delta, 1e-9);
                if (steps == 64)
                {
                    Assert.True(Math.Abs(delta) <= 0.01 * Math.Abs(change), $"'{document}': |delta| {Math.Abs(delta):E2} > 1% of |F(x) − F(x')| = {Math.Abs(change):E3}.");
                    output.WriteLine($"{steps} steps, '{document}': F(x) {row.TargetValue:F4}, F(x') {row.BaselineValue:F4}, delta {delta:E2} ({100 * Math.Abs(delta) / Math.Abs(change):F3}%), {result.Elapsed.TotalMilliseconds:F0} ms");
                }

                sum += Math.Abs(delta);
            }

            deltas[steps] = sum / Pairs.Length;
            output.WriteLine($"{steps} steps: mean |delta| {deltas[steps]:E2}");
        }

        Assert.True(deltas[16] < deltas[8] && deltas[64] < deltas[16], $"mean |delta| does not shrink with steps: 8 → {deltas[8]:E2}, 16 → {deltas[16]:E2}, 64 → {deltas[64]:E2}.");
    }

    [Fact]
    public void Gauss_legendre_nodes_and_weights_match_known_values_and_integrate_polynomials_exactly()
    {
        var (x2, w2) = Quadrature.GaussLegendre(2);
        Assert.Equal([-1 / Math.Sqrt(3), 1 / Math.Sqrt(3)], x2, new Tolerant(1e-15));
        Assert.Equal([1.0, 1.0], w2, new Tolerant(1e-15));
        var (x3, w3) = Quadrature.GaussLegendre(3);
        Assert.Equal([-Math.Sqrt(0.6), 0, Math.Sqrt(0.6)], x3, new Tolerant(1e-15));
        Assert.Equal([5.0 / 9, 8.0 / 9, 5.0 / 9], w3, new Tolerant(1e-15));
        var (x5, w5) = Quadrature.GaussLegendre(5);
        double a = Math.Sqrt(5 - (2 * Math.Sqrt(10.0 / 7))) / 3;
        double b = Math.Sqrt(5 + (2 * Math.Sqrt(10.0 / 7))) / 3;
        Assert.Equal([-b, -a, 0, a, b], x5, new Tolerant(1e-15));
        double wa = (322 + (13 * Math.Sqrt(70))) / 900;
        double wb = (322 - (13 * Math.Sqrt(70))) / 900;
        Assert.Equal([wb, wa, 128.0 / 225, wa, wb], w5, new Tolerant(1e-15));

        foreach (int n in new[] { 1, 4, 7, 16, 64, 200 })
        {
            var (nodes, weights) = Quadrature.On01(QuadratureRule.GaussLegendre, n);
            Assert.Equal(1.0, weights.Sum(), 1e-13);
            Assert.True(nodes.Zip(nodes.Skip(1)).All(p => p.First < p.Second) && nodes[0] > 0 && nodes[^1] < 1, $"n = {n}: nodes not ascending inside (0, 1).");

            // Exact for degree 2n − 1: ∫₀¹ x^k = 1/(k + 1).
            for (int k = 0; k <= Math.Min((2 * n) - 1, 40); k++)
            {
                double integral = nodes.Zip(weights, (x, w) => w * Math.Pow(x, k)).Sum();
                Assert.True(Math.Abs(integral - (1.0 / (k + 1))) <= 1e-13, $"n = {n}: ∫x^{k} = {integral}, not {1.0 / (k + 1)}.");
            }
        }

        var (mid, midWeights) = Quadrature.On01(QuadratureRule.RiemannMiddle, 4);
        Assert.Equal([0.125, 0.375, 0.625, 0.875], mid);
        Assert.All(midWeights, w => Assert.Equal(0.25, w));
        Assert.Equal([0.0, 0.25, 0.5, 0.75], Quadrature.On01(QuadratureRule.RiemannLeft, 4).Nodes);
        Assert.Equal([0.25, 0.5, 0.75, 1.0], Quadrature.On01(QuadratureRule.RiemannRight, 4).Nodes);
        var (trap, trapWeights) = Quadrature.On01(QuadratureRule.RiemannTrapezoid, 5);
        Assert.Equal([0.0, 0.25, 0.5, 0.75, 1.0], trap);
        Assert.Equal([0.125, 0.25, 0.25, 0.25, 0.125], trapWeights);
    }

    [Theory]
    [InlineData(BaselineKind.Zero)]
    [InlineData(BaselineKind.Pad)]
    [InlineData(BaselineKind.Mask)]
    public void Riemann_and_gauss_legendre_agree_at_many_steps_and_batching_does_not_change_the_result(BaselineKind baseline)
    {
        using var tiny = TinyModel.Bert(8000, TinyHead.Classifier);
        using var model = HeadlightModel.Load(tiny.Folder, Backends.Require("cpu"));
        var batch = model.FromIds([[2, 7, 12, 9, 20, 3], [2, 15, 6, 3]]);
        var target = new ClassLogitTarget(1);
        var gauss = Explainer.Explain(model, batch, target, new IntegratedGradientsOptions { Steps = 256, Baseline = baseline });
        var riemann = Explainer.Explain(model, batch, target, new IntegratedGradientsOptions { Steps = 256, Baseline = baseline, Rule = QuadratureRule.RiemannMiddle });
        var small = Explainer.Explain(model, batch, target, new IntegratedGradientsOptions { Steps = 256, Baseline = baseline, MemoryBudgetBytes = 1 });
        for (int r = 0; r < 2; r++)
        {
            var g = gauss.Rows[r];
            double scale = g.TokenScores.Max(Math.Abs);
            Assert.True(Math.Abs(g.Check!.Value) <= 1e-4 * Math.Abs(g.TargetValue - g.BaselineValue!.Value), $"row {r}: delta {g.Check.Value:E2}.");
            for (int t = 0; t < g.TokenScores.Count; t++)
            {
                Assert.True(Math.Abs(g.TokenScores[t] - riemann.Rows[r].TokenScores[t]) <= 1e-4 * scale, $"row {r}, token {t}: Gauss–Legendre {g.TokenScores[t]} vs midpoint {riemann.Rows[r].TokenScores[t]}.");
                Assert.True(Math.Abs(g.TokenScores[t] - small.Rows[r].TokenScores[t]) <= 1e-6 * scale, $"row {r}, token {t}: one row per batch gives {small.Rows[r].TokenScores[t]}, not {g.TokenScores[t]}.");
            }

            Assert.Equal(g.TargetValue, small.Rows[r].TargetValue, 1e-6);
            Assert.Equal(g.BaselineValue!.Value, small.Rows[r].BaselineValue!.Value, 1e-6);
        }

        Assert.True(small.Passes >= 2 * 258, $"a 1-byte budget should run one row per batch; ran {small.Passes} rows.");
    }

    [Fact]
    public void Kept_special_tokens_score_zero_and_the_baselines_differ()
    {
        using var tiny = TinyModel.Bert(8100, TinyHead.Classifier);
        using var model = HeadlightModel.Load(tiny.Folder, Backends.Require("cpu"));
        var batch = model.FromIds([[2, 7, 12, 9, 20, 3]]);
        var kept = Explainer.Explain(model, batch, new ClassProbabilityTarget(0), new IntegratedGradientsOptions { KeepSpecialTokens = true, Baseline = BaselineKind.Pad }).Rows[0];
        Assert.Equal([true, false, false, false, false, true], kept.IsSpecial);
        Assert.Equal(0, kept.TokenScores[0]);
        Assert.Equal(0, kept.TokenScores[5]);
        Assert.True(Math.Abs(kept.Check!.Value) <= 0.01 * Math.Abs(kept.TargetValue - kept.BaselineValue!.Value));
        var zero = Explainer.Explain(model, batch, new ClassProbabilityTarget(0), new IntegratedGradientsOptions()).Rows[0];
        Assert.NotEqual(kept.BaselineValue, zero.BaselineValue);
        Assert.Equal(kept.TargetValue, zero.TargetValue, 1e-12);
        Assert.Equal(4, kept.Words.Count);
        Assert.Equal(kept.TokenScores.Skip(1).Take(4).ToArray(), kept.Words.Select(w => w.Score).ToArray());
    }

    [Fact]
    public void Smoothgrad_without_noise_equals_saliency_and_gradient_x_input_sums_embedding_times_gradient()
    {
        using var tiny = TinyModel.Gpt2(8200);
        using var model = HeadlightModel.Load(tiny.Folder, Backends.Require("cpu"));
        var batch = model.FromIds([[5, 17, 33, 2, 28], [11, 3, 39]]);
        var target = new LogitDifferenceTarget(4, 9);
        var saliency = Explainer.Explain(model, batch, target, new SaliencyOptions());
        var smooth = Explainer.Explain(model, batch, target, new SmoothGradOptions { Samples = 3, NoiseLevel = 0 });
        var noisy = Explainer.Explain(model, batch, target, new SmoothGradOptions { Samples = 8, NoiseLevel = 0.2, Seed = 3 });
        var again = Explainer.Explain(model, batch, target, new SmoothGradOptions { Samples = 8, NoiseLevel = 0.2, Seed = 3 });
        var gxi = Explainer.Explain(model, batch, target, new GradientXInputOptions());
        int d = model.Config.Hidden;
        for (int r = 0; r < 2; r++)
        {
            var s = saliency.Rows[r];
            Assert.Equal(batch.Lengths[r], s.TokenScores.Count);
            for (int t = 0; t < s.TokenScores.Count; t++)
            {
                Assert.Equal(s.TokenScores[t], smooth.Rows[r].TokenScores[t], 1e-6 * s.TokenScores.Max());
                var g = s.EmbeddingScores.Span.Slice(t * d, d).ToArray();
                Assert.Equal(Math.Sqrt(g.Sum(v => (double)v * v)), s.TokenScores[t], 1e-9);
                var e = model.Weights.TokenEmbeddings.Slice((long)batch.Texts[r].Ids[t] * d, d).ToArray();
                double expected = Enumerable.Range(0, d).Sum(i => (double)e[i] * g[i]);
                Assert.Equal(expected, gxi.Rows[r].TokenScores[t], 1e-5 * Math.Max(1, Math.Abs(expected)));
            }

            Assert.Equal(s.TargetValue, smooth.Rows[r].TargetValue);
            Assert.Equal(s.TargetValue, noisy.Rows[r].TargetValue);
            Assert.NotEqual(s.TokenScores, noisy.Rows[r].TokenScores);
            Assert.Equal(noisy.Rows[r].TokenScores, again.Rows[r].TokenScores);
            Assert.Null(s.Check);
        }

        Assert.Equal("smoothgrad", noisy.Method);
        Assert.Equal("8", noisy.Options["samples"]);
    }

    private sealed class Tolerant(double tolerance) : IEqualityComparer<double>
    {
        public bool Equals(double x, double y) => Math.Abs(x - y) <= tolerance;

        public int GetHashCode(double obj) => 0;
    }
}
