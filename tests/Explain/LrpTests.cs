using Headlight.Explain;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Tokenization;
using Xunit.Abstractions;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Explain;

/// <summary>
/// LRP on tiny random encoders and decoders against the explicit float64 reference (<see cref="LrpReference"/>) for
/// every target type and both rule sets: relevance at the input, the word part, every residual boundary, every head
/// and the last hidden state, each within 1e-4 relative L2 error, on padded batches. With ε → 0 and biases zeroed,
/// CP-LRP conserves relevance through every layer. Each backend is a column; OpenCL runs in the trixie root.
/// </summary>
public sealed class LrpTests(ITestOutputHelper output)
{
    /// <summary>Relative L2 error allowed between the kernels and the float64 reference (the issue's bar).</summary>
    public const double Relative = 1e-4;

    private static readonly int[][] BertRows = [[2, 7, 12, 9, 20, 3], [2, 15, 6, 3]];
    private static readonly int[][] Gpt2Rows = [[5, 17, 33, 2, 28], [11, 3, 39]];

    public static TheoryData<string> Backends_ => new() { "cpu", "ilgpu-cpu", "cuda" };

    [SkippableTheory]
    [MemberData(nameof(Backends_))]
    public void Encoder_relevance_matches_the_explicit_reference(string backend) => Encoder(backend);

    [SkippableTheory]
    [MemberData(nameof(Backends_))]
    public void Decoder_relevance_matches_the_explicit_reference(string backend) => Decoder(backend);

    [SkippableTheory]
    [MemberData(nameof(Backends_))]
    public void Cp_lrp_conserves_relevance_through_every_layer_without_biases(string backend) => Conservation(backend);

    [SkippableFact]
    [Trait("Category", "OpenCL")]
    public void OpenCL_encoder_relevance_matches_the_explicit_reference() => Encoder("opencl");

    [SkippableFact]
    [Trait("Category", "OpenCL")]
    public void OpenCL_decoder_relevance_matches_the_explicit_reference() => Decoder("opencl");

    [SkippableFact]
    [Trait("Category", "OpenCL")]
    public void OpenCL_cp_lrp_conserves_relevance_through_every_layer_without_biases() => Conservation("opencl");

    /// <summary>A target and the same head for the reference, given one row's ids.</summary>
    private sealed record Case(string Name, ITarget Target, Func<int[], LrpReference.Head> Head);

    private void Encoder(string backend)
    {
        var device = Backends.Require(backend);
        using (var tiny = TinyModel.Bert(1100, TinyHead.Classifier))
        {
            Check(device, tiny, BertRows,
            [
                new("class logit", new ClassLogitTarget(1), _ => new LrpReference.ClassHead(1, false)),
                new("class probability", new ClassProbabilityTarget(2), _ => new LrpReference.ClassHead(2, true)),
                new("output unit", new OutputUnitTarget(2, 5), _ => new LrpReference.UnitHead(2, 5)),
            ]);
        }

        using (var tiny = TinyModel.Bert(2100, TinyHead.MeanPooling))
        {
            var other = Embedding(tiny, [2, 21, 8, 17, 3], cls: false);
            Check(device, tiny, BertRows,
            [
                new("similarity (mean pooling)", new EmbeddingSimilarityTarget(other), _ => new LrpReference.SimilarityHead(TestData.ToDouble(other), false)),
                new("pooled unit (mean pooling)", OutputUnitTarget.Pooled(3), _ => new LrpReference.PooledUnitHead(3, false)),
            ]);
        }

        using (var tiny = TinyModel.Bert(3100, TinyHead.ClsPooling))
        {
            var other = Embedding(tiny, [2, 11, 25, 3], cls: true);
            Check(device, tiny, BertRows,
            [
                new("similarity (cls pooling)", new EmbeddingSimilarityTarget(other), _ => new LrpReference.SimilarityHead(TestData.ToDouble(other), true)),
            ]);
        }
    }

    private void Decoder(string backend)
    {
        var device = Backends.Require(backend);
        using var tiny = TinyModel.Gpt2(4100);
        Check(device, tiny, Gpt2Rows,
        [
            new("next-token logit (last position)", new NextTokenLogitTarget(7), ids => new LrpReference.LmHead(ids.Length - 1, 7)),
            new("logit difference at position 1", new LogitDifferenceTarget(12, 30, 1), _ => new LrpReference.LmHead(1, 12, 30)),
            new("output unit", new OutputUnitTarget(2, 9), _ => new LrpReference.UnitHead(2, 9)),
        ]);
    }

    // Every case under both rule sets, at the default ε and at ε = 0.01 (where ε visibly absorbs relevance). The
    // simulated accelerators are slow: there each case runs one of the three settings in turn, all three still covered.
    private void Check(Device device, TinyModel tiny, int[][] rows, Case[] cases)
    {
        using var model = HeadlightModel.Load(tiny.Folder, device);
        var reference = new LrpReference(tiny);
        var batch = model.FromIds(rows);
        (LrpRules, double)[] settings = [(LrpRules.AttnLrp, 1e-6), (LrpRules.CpLrp, 1e-6), (LrpRules.AttnLrp, 1e-2)];
        bool slow = device.Name.StartsWith("ilgpu-cpu", StringComparison.Ordinal);
        for (int k = 0; k < cases.Length; k++)
        {
            var c = cases[k];
            foreach (var (rules, epsilon) in slow ? [settings[k % settings.Length]] : settings)
            {
                var result = Explainer.Relevance(model, batch, c.Target, new LrpOptions { Rules = rules, Epsilon = epsilon });
                for (int r = 0; r < rows.Length; r++)
                {
                    string what = $"{device.Name}, {(tiny.IsBert ? "encoder" : "decoder")}, {c.Name}, {rules} ε={epsilon}, row {r}";
                    var ours = result.Rows[r];
                    var expected = reference.Explain(rows[r], c.Head(rows[r]), rules == LrpRules.CpLrp, epsilon);
                    Assert.True(Math.Abs(ours.TargetValue - expected.Value) <= 1e-5 * Math.Max(1, Math.Abs(expected.Value)), $"{what}: value {ours.TargetValue} vs reference {expected.Value}.");
                    double worst = 0;
                    void Agree(string part, IEnumerable<double> actual, IEnumerable<double> wanted)
                    {
                        double error = RelativeL2(actual.ToArray(), wanted.ToArray());
                        Assert.True(error <= Relative, $"{what}: {part} relative L2 error {error:E2} vs the explicit reference.");
                        worst = Math.Max(worst, error);
                    }

                    var embedding = ours.Attribution.EmbeddingScores.ToArray().Select(v => (double)v);
                    Agree("input relevance [t, d]", embedding, expected.Input.SelectMany(x => x));
                    Agree("token scores", ours.Attribution.TokenScores, expected.Input.Select(x => x.Sum()));
                    Agree("word-embedding part", ours.WordEmbeddingRelevance, expected.WordPart);
                    Agree("relevance at every boundary", ours.LayerRelevance.SelectMany(x => x), expected.Layers.SelectMany(x => x));
                    Agree("relevance per head", ours.HeadRelevance.SelectMany(x => x), expected.Heads.SelectMany(x => x));
                    Agree("relevance at the last hidden state", ours.OutputRelevance, expected.Output);
                    Assert.Equal(ours.InputTotal - ours.TargetValue, ours.Attribution.Check!.Value, 1e-12);
                    Assert.Equal("conservation gap", ours.Attribution.Check.Name);
                    output.WriteLine($"{what}: F {ours.TargetValue:F6}, worst relative L2 {worst:E2}; Σ input {ours.InputTotal:F6} (reference {expected.Input.Sum(x => x.Sum()):F6}), "
                        + $"per boundary [{string.Join(", ", ours.LayerTotals.Select(v => v.ToString("F5")))}]");
                }
            }
        }
    }

    private void Conservation(string backend)
    {
        var device = Backends.Require(backend);
        using (var tiny = TinyModel.Bert(1200, TinyHead.Classifier))
        {
            Conserves(device, tiny, BertRows, new ClassLogitTarget(0), _ => new LrpReference.ClassHead(0, false));
        }

        using (var tiny = TinyModel.Gpt2(4200))
        {
            Conserves(device, tiny, Gpt2Rows, new NextTokenLogitTarget(7), ids => new LrpReference.LmHead(ids.Length - 1, 7));
        }

        // The pooled similarity head only on the fast column (the simulated accelerators are slow).
        if (device.Name.StartsWith("ilgpu-cpu", StringComparison.Ordinal))
        {
            return;
        }

        using (var tiny = TinyModel.Bert(2200, TinyHead.MeanPooling))
        {
            var other = Embedding(tiny, [2, 21, 8, 17, 3], cls: false);
            Conserves(device, tiny, BertRows, new EmbeddingSimilarityTarget(other), _ => new LrpReference.SimilarityHead(TestData.ToDouble(other), false));
        }
    }

    // Biases and LayerNorm shifts zeroed and ε = 1e-9: CP-LRP keeps Σ relevance = F at every boundary, at the input and
    // at the last hidden state. AttnLRP's figures (its softmax rule is not conservative) are printed and checked against
    // the explicit reference.
    private void Conserves(Device device, TinyModel tiny, int[][] rows, ITarget target, Func<int[], LrpReference.Head> head)
    {
        using var model = HeadlightModel.Load(tiny.Folder, device);
        ZeroBiases(tiny, model);
        var reference = new LrpReference(tiny);
        var batch = model.FromIds(rows);
        const double epsilon = 1e-9;
        var cp = Explainer.Relevance(model, batch, target, new LrpOptions { Rules = LrpRules.CpLrp, Epsilon = epsilon });
        var attn = Explainer.Relevance(model, batch, target, new LrpOptions { Epsilon = epsilon });
        for (int r = 0; r < rows.Length; r++)
        {
            string what = $"{device.Name}, {(tiny.IsBert ? "encoder" : "decoder")}, {target.Description}, row {r}";
            var row = cp.Rows[r];
            double f = row.TargetValue;
            // Math.Max keeps a NaN total where Enumerable.Max would skip it.
            double worst = new[] { row.InputTotal, row.OutputTotal }.Concat(row.LayerTotals).Select(v => Math.Abs(v - f)).Aggregate(0.0, Math.Max) / Math.Abs(f);
            Assert.True(worst <= 1e-3, $"{what}: CP-LRP without biases is {worst:E2} (relative) from F = {f} somewhere: input {row.InputTotal}, "
                + $"boundaries [{string.Join(", ", row.LayerTotals)}], output {row.OutputTotal}.");

            var expected = reference.Explain(rows[r], head(rows[r]), conservative: false, epsilon);
            var ours = attn.Rows[r];
            double error = RelativeL2(ours.LayerTotals.Append(ours.InputTotal).ToArray(), expected.Layers.Select(l => l.Sum()).Append(expected.Input.Sum(x => x.Sum())).ToArray());
            Assert.True(error <= Relative, $"{what}: AttnLRP per-layer totals relative L2 error {error:E2} vs the explicit reference.");
            output.WriteLine($"{what}: F {f:F6}; CP-LRP worst |Σ R − F|/|F| {worst:E2} (input {row.InputTotal:F6}); "
                + $"AttnLRP Σ per boundary [{string.Join(", ", ours.LayerTotals.Select(v => v.ToString("F5")))}], input {ours.InputTotal:F6}, "
                + $"reference [{string.Join(", ", expected.Layers.Select(l => l.Sum().ToString("F5")))}], input {expected.Input.Sum(x => x.Sum()):F6}");
        }
    }

    [Fact]
    public void Minilm_reports_the_overall_conservation_figure_with_every_result()
    {
        using var model = HeadlightModel.Load("minilm", Backends.Require("cpu"));
        foreach (var rules in new[] { LrpRules.AttnLrp, LrpRules.CpLrp })
        {
            foreach (var (document, query) in IntegratedGradientsTests.Pairs.Take(5))
            {
                var result = Explainer.Relevance(model, model.Tokenize([document]), new EmbeddingSimilarityTarget(query), new LrpOptions { Rules = rules });
                var row = result.Rows[0];
                var check = row.Attribution.Check!;
                Assert.Equal("conservation gap", check.Name);
                Assert.True(double.IsFinite(check.Value));
                Assert.Equal(row.InputTotal - row.TargetValue, check.Value, 1e-9);
                Assert.Equal(7, row.LayerTotals.Count);
                Assert.Equal(6, row.HeadRelevance.Count);
                Assert.All(row.HeadRelevance, h => Assert.Equal(12, h.Count));

                // The head's cosine and mean pooling have no bias: all of F reaches the last hidden state, up to ε.
                Assert.Equal(row.TargetValue, row.OutputTotal, 1e-4);
                output.WriteLine($"{rules}, '{document}': F {row.TargetValue:F4}, Σ input {row.InputTotal:F4}, gap {check.Value:E2} "
                    + $"({100 * check.Value / row.TargetValue:F1}% of F); boundaries [{string.Join(", ", row.LayerTotals.Select(v => v.ToString("F3")))}]; {result.Attributions.Elapsed.TotalMilliseconds:F0} ms");
            }
        }
    }

    // The two rule sets differ only inside attention: same F and the same relevance at the last boundary, where the last
    // block's attention is not yet crossed; below it CP-LRP (nothing through q and k) moves relevance differently.
    [Fact]
    public void Cp_lrp_and_attn_lrp_differ_only_below_the_first_attention_crossed()
    {
        foreach (var tiny in new[] { TinyModel.Bert(1250, TinyHead.Classifier), TinyModel.Gpt2(4250) })
        {
            using (tiny)
            {
                using var model = HeadlightModel.Load(tiny.Folder, Backends.Require("cpu"));
                var rows = tiny.IsBert ? BertRows : Gpt2Rows;
                ITarget target = tiny.IsBert ? new ClassLogitTarget(1) : new NextTokenLogitTarget(7);
                var attn = Explainer.Relevance(model, model.FromIds(rows), target, new LrpOptions { Rules = LrpRules.AttnLrp });
                var cp = Explainer.Relevance(model, model.FromIds(rows), target, new LrpOptions { Rules = LrpRules.CpLrp });
                for (int r = 0; r < rows.Length; r++)
                {
                    var (a, c) = (attn.Rows[r], cp.Rows[r]);
                    int last = a.LayerRelevance.Count - 1;
                    Assert.Equal(a.TargetValue, c.TargetValue);
                    Assert.Equal(a.OutputRelevance, c.OutputRelevance);
                    Assert.Equal(a.LayerRelevance[last], c.LayerRelevance[last]);
                    for (int l = 0; l < last; l++)
                    {
                        double difference = RelativeL2(a.LayerRelevance[l].ToArray(), c.LayerRelevance[l].ToArray());
                        Assert.True(difference > 1e-2, $"{(tiny.IsBert ? "encoder" : "decoder")} row {r}: AttnLRP and CP-LRP agree at boundary {l} ({difference:E2}).");
                        output.WriteLine($"{(tiny.IsBert ? "encoder" : "decoder")} row {r}, boundary {l}: AttnLRP vs CP-LRP relative L2 difference {difference:E2}");
                    }

                    Assert.True(RelativeL2(a.Attribution.TokenScores.ToArray(), c.Attribution.TokenScores.ToArray()) > 1e-2);
                }
            }
        }
    }

    [Fact]
    public void Batching_and_the_generic_entry_point_give_the_same_relevance()
    {
        using var tiny = TinyModel.Bert(1300, TinyHead.Classifier);
        using var model = HeadlightModel.Load(tiny.Folder, Backends.Require("cpu"));
        var batch = model.FromIds(BertRows);
        var target = new ClassLogitTarget(2);
        var whole = Explainer.Relevance(model, batch, target, new LrpOptions());
        var split = Explainer.Relevance(model, batch, target, new LrpOptions { MemoryBudgetBytes = 1 });
        var generic = Explainer.Explain(model, batch, target, new LrpOptions());
        Assert.Equal("lrp", generic.Method);
        Assert.Equal("attnlrp", generic.Options["rules"]);
        for (int r = 0; r < BertRows.Length; r++)
        {
            Assert.Equal(whole.Rows[r].Attribution.TokenScores.Count, BertRows[r].Length);
            for (int t = 0; t < BertRows[r].Length; t++)
            {
                double scale = whole.Rows[r].Attribution.TokenScores.Max(Math.Abs);
                Assert.Equal(whole.Rows[r].Attribution.TokenScores[t], split.Rows[r].Attribution.TokenScores[t], 1e-5 * scale);
                Assert.Equal(whole.Rows[r].Attribution.TokenScores[t], generic.Rows[r].TokenScores[t], 1e-9 * scale);
            }

            Assert.Equal(whole.Rows[r].Attribution.Words.Select(w => w.Score), generic.Rows[r].Words.Select(w => w.Score));
        }
    }

    [Fact]
    public void A_custom_target_supplies_its_own_relevance_signal()
    {
        using var tiny = TinyModel.Gpt2(1400);
        using var model = HeadlightModel.Load(tiny.Folder, Backends.Require("cpu"));
        var batch = model.FromIds(Gpt2Rows);
        var custom = Explainer.Relevance(model, batch, new HiddenUnit(1, 4), new LrpOptions());
        var builtIn = Explainer.Relevance(model, batch, new OutputUnitTarget(1, 4), new LrpOptions());
        for (int r = 0; r < Gpt2Rows.Length; r++)
        {
            Assert.Equal(builtIn.Rows[r].Attribution.TokenScores, custom.Rows[r].Attribution.TokenScores);
            Assert.Equal(builtIn.Rows[r].TargetValue, custom.Rows[r].TargetValue);
        }
    }

    [Fact]
    public void Bad_epsilon_and_parts_without_a_rule_are_typed_errors()
    {
        using var tiny = TinyModel.Gpt2(1500);
        using var model = HeadlightModel.Load(tiny.Folder, Backends.Require("cpu"));
        var batch = model.FromIds(Gpt2Rows);
        var target = new NextTokenLogitTarget(3);
        foreach (double epsilon in new[] { 0, -1e-6, double.NaN, double.PositiveInfinity, 1e-60 })
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Relevance(model, batch, target, new LrpOptions { Epsilon = epsilon }));
            Assert.Contains(nameof(LrpOptions.Epsilon), e.Message, StringComparison.Ordinal);
        }

        Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(model, batch, target, new LrpOptions { Rules = (LrpRules)7 }));

        var custom = Assert.Throws<MissingRelevanceRuleException>(() => Explainer.Relevance(model, batch, new GradientOnly(), new LrpOptions()));
        Assert.Contains("no relevance rule", custom.Message, StringComparison.Ordinal);
        Assert.Contains(nameof(IRelevanceTarget), custom.Message, StringComparison.Ordinal);

        var relu = Assert.Throws<MissingRelevanceRuleException>(() => LrpHeads.Check(model.Config with { Activation = (GeluForm)5 }, "relu-model"));
        Assert.Contains("MLP activation (5) without a relevance rule", relu.Message, StringComparison.Ordinal);
        Assert.Contains("relu-model", relu.Message, StringComparison.Ordinal);
        var family = Assert.Throws<MissingRelevanceRuleException>(() => LrpHeads.Check(model.Config with { Family = (ModelFamily)9 }, "t5"));
        Assert.Contains("block layout (9)", family.Message, StringComparison.Ordinal);
        var pooling = Assert.Throws<MissingRelevanceRuleException>(() => LrpHeads.Check(model.Config with { Pooling = (Headlight.Models.Loading.PoolingMode)11 }, "x"));
        Assert.Contains("sentence pooling (11)", pooling.Message, StringComparison.Ordinal);
    }

    /// <summary>Zeroes every bias and LayerNorm shift of the tiny model, on the device and for the reference.</summary>
    internal static void ZeroBiases(TinyModel tiny, HeadlightModel model)
    {
        foreach (var (name, values) in tiny.Weights)
        {
            if (name.EndsWith(".bias", StringComparison.Ordinal))
            {
                Array.Clear(values);
            }
        }

        var w = model.Weights;
        foreach (var l in w.Layers)
        {
            foreach (var bias in new[] { l.QkvBias, l.OutBias, l.FfnInBias, l.FfnOutBias, l.Norm1Beta, l.Norm2Beta })
            {
                bias.Fill(0f);
            }
        }

        foreach (var bias in new[] { w.EmbeddingNormBeta, w.FinalNormBeta, w.PoolerBias, w.ClassifierBias })
        {
            bias?.Fill(0f);
        }
    }

    /// <summary>The reference's L2-normalised sentence embedding of <paramref name="ids"/>, as floats.</summary>
    internal static float[] Embedding(TinyModel tiny, int[] ids, bool cls)
    {
        var reference = new ReferenceTransformer(tiny);
        return reference.SentenceEmbedding(reference.Hidden(reference.Embed(ids)), cls).Select(v => (float)v).ToArray();
    }

    internal static double RelativeL2(double[] actual, double[] expected)
    {
        double num = 0;
        double den = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            num += (actual[i] - expected[i]) * (actual[i] - expected[i]);
            den += expected[i] * expected[i];
        }

        return den == 0 ? Math.Sqrt(num) : Math.Sqrt(num / den);
    }

    /// <summary>Unit k of the last hidden state at one position, with its relevance signal given by hand.</summary>
    private sealed record HiddenUnit(int Position, int Unit) : IRelevanceTarget
    {
        public string Description => $"hidden unit {Unit} at {Position}";

        public void Prepare(HeadlightModel model, TokenBatch inputs) { }

        public void Evaluate(TargetContext context) => throw new InvalidOperationException("LRP asks for EvaluateRelevance.");

        public void EvaluateRelevance(TargetContext context, double epsilon)
        {
            for (int r = 0; r < context.Rows; r++)
            {
                context.Values[r] = context.HiddenAt(r, Position)[Unit];
                context.Seed(r, Position)[Unit] = 1f;
            }
        }
    }

    /// <summary>A custom target that knows only its gradient.</summary>
    private sealed record GradientOnly : ITarget
    {
        public string Description => "a custom scalar";

        public void Prepare(HeadlightModel model, TokenBatch inputs) { }

        public void Evaluate(TargetContext context) { }
    }
}
