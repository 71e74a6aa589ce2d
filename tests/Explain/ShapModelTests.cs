using Headlight.Explain;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Tokenization;
using Xunit.Abstractions;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Explain;

/// <summary>
/// Kernel SHAP on tiny random transformers: with every coalition it equals the exact Shapley values computed here
/// in float64 from the model's own values (and those values match an independent float64 forward pass); at M = 12
/// the error falls with the budget and paired sampling beats unpaired; masking by replacement and by dropping
/// from attention give the values of inputs built independently; words and tokens as features; typed errors.
/// </summary>
public sealed class ShapModelTests(ITestOutputHelper output)
{
    private const int MaskToken = 4;

    private static Device Cpu => Backends.Require("cpu");

    /// <summary>φ_i = Σ_{S∌i} |S|!(M−|S|−1)!/M!·(v(S∪i) − v(S)) over values indexed by bit mask, in float64.</summary>
    public static double[] ShapleyByEnumeration(int m, Func<int, double> value)
    {
        var v = Enumerable.Range(0, 1 << m).Select(value).ToArray();
        var phi = new double[m];
        for (int s = 0; s < v.Length; s++)
        {
            int size = System.Numerics.BitOperations.PopCount((uint)s);
            for (int i = 0; i < m; i++)
            {
                if ((s & (1 << i)) == 0)
                {
                    phi[i] += Factorial(size) * Factorial(m - size - 1) / Factorial(m) * (v[s | (1 << i)] - v[s]);
                }
            }
        }

        return phi;
    }

    private static void Close(IEnumerable<double> expected, IEnumerable<double> actual, double tolerance, string what)
    {
        double[] e = expected.ToArray(), a = actual.ToArray();
        Assert.Equal(e.Length, a.Length);
        // Math.Max keeps a NaN where Enumerable.Max would skip it.
        double worst = e.Select((x, i) => Math.Abs(x - a[i])).Aggregate(0.0, Math.Max);
        Assert.True(worst <= tolerance, $"{what}: largest difference {worst:E2} > {tolerance:E0}.");
    }

    private static double Factorial(int n) => Enumerable.Range(1, n).Aggregate(1.0, (p, k) => p * k);

    private static double RelativeError(IReadOnlyList<double> estimate, IReadOnlyList<double> exact)
        => Math.Sqrt(estimate.Select((e, i) => (e - exact[i]) * (e - exact[i])).Sum() / exact.Sum(x => x * x));

    // [CLS] w5 .. w(4 + m) [SEP]: m one-token words.
    private static int[] Row(int m) => [2, .. Enumerable.Range(5, m), 3];

    [Fact]
    public void With_every_coalition_kernel_shap_equals_exact_shapley_values_from_float64_enumeration_for_m_8()
    {
        using var tiny = TinyModel.Bert(4100, TinyHead.Classifier);
        using var model = HeadlightModel.Load(tiny.Folder, Cpu);
        int[] ids = Row(8);
        var target = new ClassLogitTarget(1);
        var result = Explainer.Explain(model, model.FromIds([ids]), target, new KernelShapOptions());
        var row = result.Rows[0];
        Assert.Equal(8, row.Features!.Count);
        Assert.Equal(256, result.Passes);

        // The game's values from the public forward on inputs built here, [MASK] for absent words.
        int[] Masked(int set) => ids.Select((id, t) => t == 0 || t == 9 || (set & (1 << (t - 1))) != 0 ? id : MaskToken).ToArray();
        var batch = model.FromIds(Enumerable.Range(0, 256).Select(s => (IReadOnlyList<int>)Masked(s)).ToArray());
        var logits = model.Forward(batch).ClassLogits!;
        double[] exact = ShapleyByEnumeration(8, s => logits[(s * 3) + 1]);
        double error = Math.Sqrt(row.Features.Select((f, i) => (f.Score - exact[i]) * (f.Score - exact[i])).Sum()) / Math.Sqrt(exact.Sum(x => x * x));
        output.WriteLine($"M = 8, 254 coalitions: Kernel SHAP vs float64 enumeration, relative error {error:E2}; φ = [{string.Join(", ", exact.Select(p => p.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}]");
        Assert.True(error <= 1e-6, $"relative error {error:E2} > 1e-6.");
        Assert.All(row.Features, f => Assert.Equal(0, f.StandardError));
        Assert.True(Math.Abs(row.Check!.Value) <= 1e-9);
        Assert.Equal(logits[(255 * 3) + 1], row.TargetValue, 1e-5);
        Assert.Equal(logits[1], row.BaselineValue!.Value, 1e-5);

        // The values themselves against the float64 reference forward pass.
        var reference = new ReferenceTransformer(tiny);
        double worst = 0;
        for (int s = 0; s < 256; s += 5)
        {
            double v = reference.ClassLogits(reference.Hidden(reference.Embed(Masked(s))))[1];
            worst = Math.Max(worst, Math.Abs(v - logits[(s * 3) + 1]) / Math.Max(1, Math.Abs(v)));
        }

        output.WriteLine($"values vs the float64 reference: worst relative error {worst:E2}");
        Assert.True(worst <= 1e-5, $"values differ from the float64 reference by {worst:E2}.");

        // Exact enumeration through the option gives the same values.
        var exactRow = Explainer.Explain(model, model.FromIds([ids]), target, new KernelShapOptions { Exact = true }).Rows[0];
        Assert.True(RelativeError(exactRow.Features!.Select(f => f.Score).ToArray(), exact) <= 1e-6);
    }

    [Fact]
    public void For_m_12_on_a_transformer_the_error_falls_as_the_budget_grows_and_paired_beats_unpaired_over_10_seeds()
    {
        using var tiny = TinyModel.Bert(4200, TinyHead.MeanPooling);
        using var model = HeadlightModel.Load(tiny.Folder, Cpu);
        var reference = new ReferenceTransformer(tiny);
        var query = reference.SentenceEmbedding(reference.Hidden(reference.Embed([2, 21, 8, 17, 3])), cls: false).Select(v => (float)v).ToArray();
        var batch = model.FromIds([Row(12)]);
        var target = new EmbeddingSimilarityTarget(query);
        var exact = Explainer.Explain(model, batch, target, new KernelShapOptions { Exact = true }).Rows[0].Features!.Select(f => f.Score).ToArray();

        ShapSyntheticTests.ErrorFallsAndPairedWins(output, "M = 12 transformer", [50, 200, 800], (budget, seed, paired) => RelativeError(
            Explainer.Explain(model, batch, target, new KernelShapOptions { Budget = budget, Seed = seed, Paired = paired }).Rows[0].Features!.Select(f => f.Score).ToArray(), exact));
    }

    [Fact]
    public void Dropping_from_attention_gives_the_value_of_a_forward_with_those_keys_masked_and_pooling_without_them()
    {
        using var tiny = TinyModel.Bert(4300, TinyHead.MeanPooling);
        using var model = HeadlightModel.Load(tiny.Folder, Cpu);
        int[] ids = [2, 7, 8, 9, 10, 11, 3];
        var batch = model.FromIds([ids]);
        var target = OutputUnitTarget.Pooled(3);
        target.Prepare(model, batch);
        var map = ShapExplainer.Features(batch.Texts[0], ids.Length, ShapFeatures.Words);
        Assert.Equal([-1, 0, 1, 2, 3, 4, -1], map.FeatureOf);
        var runner = new ShapExplainer.Runner(model, batch, 0, target, map.FeatureOf, null, 1 << 20, RunControl.None);
        byte[] masks = Enumerable.Range(0, 32).SelectMany(s => Enumerable.Range(0, 5).Select(i => (byte)((s >> i) & 1))).ToArray();
        var values = new double[32];
        runner.Evaluate(masks, values);

        for (int s = 0; s < 32; s++)
        {
            int[] keys = ids.Select((_, t) => t == 0 || t == 6 || ((s >> (t - 1)) & 1) == 1 ? 1 : 0).ToArray();
            float[] hidden;
            lock (model.Gate)
            {
                var state = model.Prepare(ids, keys, new int[7], 1, 7, savesForBackward: false);
                TransformerForward.Run(model.Config, model.Weights, state, new HashSet<string>(), null);
                hidden = TransformerForward.LastHidden(model.Config, state).ToArray();
            }

            // Mean over the kept tokens, then L2 normalisation; unit 3.
            var e = new double[16];
            int kept = keys.Sum();
            for (int t = 0; t < 7; t++)
            {
                for (int i = 0; i < 16 && keys[t] == 1; i++)
                {
                    e[i] += hidden[(t * 16) + i] / (double)kept;
                }
            }

            double expected = e[3] / Math.Sqrt(e.Sum(x => x * x));
            Assert.True(Math.Abs(values[s] - expected) <= 1e-6, $"coalition {s}: {values[s]} vs {expected}.");
        }

        // Through the explainer the drop masking satisfies efficiency and scores no special token.
        var row = Explainer.Explain(model, batch, target, new KernelShapOptions { Masking = ShapMasking.Drop }).Rows[0];
        Assert.Equal(values[31], row.TargetValue, 1e-6);
        Assert.Equal(values[0], row.BaselineValue!.Value, 1e-6);
        Assert.Equal(0, row.TokenScores[0]);
        Assert.Equal(0, row.TokenScores[6]);
        Assert.True(Math.Abs(row.Check!.Value) <= 1e-9);
    }

    [Fact]
    public void Words_merge_their_pieces_tokens_do_not_and_special_tokens_are_never_features()
    {
        using var model = HeadlightModel.Load("minilm", Cpu);
        var text = model.Tokenize(["Interpretability matters, said the researchers."]).Texts[0];
        output.WriteLine(string.Join(" ", text.Tokens));
        var words = ShapExplainer.Features(text, text.Count, ShapFeatures.Words);
        var tokens = ShapExplainer.Features(text, text.Count, ShapFeatures.Tokens);
        Assert.Equal(text.Words.Count, words.Features.Length);
        Assert.Equal(text.Count - 2, tokens.Features.Length);
        Assert.Equal(-1, words.FeatureOf[0]);
        Assert.Equal(-1, words.FeatureOf[^1]);
        Assert.Equal("Interpretability", words.Features[0].Text);
        Assert.True(words.Features[0].TokenCount > 1, "'Interpretability' should be several word pieces.");
        Assert.All(Enumerable.Range(1, words.Features[0].TokenCount), t => Assert.Equal(0, words.FeatureOf[t]));

        // One run on MiniLM: word scores are the features' values, spread evenly over their pieces.
        var result = Explainer.Explain(model, "Interpretability matters, said the researchers.", new EmbeddingSimilarityTarget("Why explanations matter"), new KernelShapOptions { Budget = 40, Seed = 1 });
        var row = result.Rows[0];
        Assert.Equal(words.Features.Length, row.Features!.Count);
        Close(row.Words.Select(w => w.Score), row.Features.Select(f => f.Score), 1e-12, "word scores vs feature values");
        Assert.Equal(row.TargetValue - row.BaselineValue!.Value, row.Features.Sum(f => f.Score), 1e-9);
        Assert.Equal(0, row.TokenScores[0]);
        Assert.Equal(row.Features[0].Score / row.Features[0].TokenCount, row.TokenScores[1], 1e-12);
        Assert.All(row.Features, f => Assert.True(double.IsFinite(f.StandardError) && f.StandardError >= 0));
        output.WriteLine($"{result.Elapsed.TotalMilliseconds:F0} ms, {result.Passes} rows: " + string.Join("  ", row.Features.Select(f => $"{f.Text} {f.Score:F4}±{f.StandardError:F4}")));
    }

    [Fact]
    public void Decoders_drop_or_replace_with_a_chosen_token_and_have_no_mask_token()
    {
        using var tiny = TinyModel.Gpt2(4400);
        using var model = HeadlightModel.Load(tiny.Folder, Cpu);
        var batch = model.FromIds([[5, 17, 33, 2, 28, 11]]);
        var target = new NextTokenLogitTarget(7);
        var e = Assert.Throws<ArgumentException>(() => Explainer.Explain(model, batch, target, new KernelShapOptions()));
        Assert.Contains("no mask token", e.Message, StringComparison.Ordinal);

        var replaced = Explainer.Explain(model, batch, target, new KernelShapOptions { ReplacementTokenId = 0 }).Rows[0];
        var dropped = Explainer.Explain(model, batch, target, new KernelShapOptions { Masking = ShapMasking.Drop }).Rows[0];
        Assert.Equal(6, replaced.Features!.Count);
        Assert.Equal(replaced.TargetValue, dropped.TargetValue, 1e-6);
        Assert.NotEqual(replaced.BaselineValue!.Value, dropped.BaselineValue!.Value, 3);
        Assert.True(Math.Abs(dropped.Check!.Value) <= 1e-9 && Math.Abs(replaced.Check!.Value) <= 1e-9);

        // Exact with all 64 coalitions equals Kernel SHAP's fit of the 62 others.
        var exact = Explainer.Explain(model, batch, target, new KernelShapOptions { Masking = ShapMasking.Drop, Exact = true }).Rows[0];
        Close(exact.Features!.Select(f => f.Score), dropped.Features!.Select(f => f.Score), 1e-9, "exact vs Kernel SHAP with every coalition");
    }

    [Fact]
    public void Bad_budgets_inputs_without_features_texts_over_the_position_limit_and_bad_options_are_typed_errors()
    {
        using var tiny = TinyModel.Bert(4500, TinyHead.Classifier);
        using var model = HeadlightModel.Load(tiny.Folder, Cpu);
        var target = new ClassLogitTarget(0);
        var batch = model.FromIds([Row(10)]);
        var low = Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(model, batch, target, new KernelShapOptions { Budget = 10 }));
        Assert.Contains("at least 11", low.Message, StringComparison.Ordinal);
        var none = Assert.Throws<ArgumentException>(() => Explainer.Explain(model, model.FromIds([[2, 3]]), target, new KernelShapOptions()));
        Assert.Contains("no features to mask", none.Message, StringComparison.Ordinal);
        Assert.Throws<InputTooLongException>(() => Explainer.Explain(model, string.Join(" ", Enumerable.Repeat("w7", 20)), target, new KernelShapOptions()));
        Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(model, model.FromIds([Row(13)]), target, new KernelShapOptions { Exact = true }));
        Assert.Throws<ArgumentException>(() => Explainer.Explain(model, batch, target, new KernelShapOptions { Exact = true, Budget = 100 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(model, batch, target, new KernelShapOptions { Budget = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(model, batch, target, new KernelShapOptions { ReplacementTokenId = TinyModel.BertVocab }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(model, batch, target, new KernelShapOptions { ReplacementTokenId = 4, Masking = ShapMasking.Drop }));
        Assert.Throws<TargetException>(() => Explainer.Explain(model, batch, new ClassLogitTarget(5), new KernelShapOptions()));
    }

    [Fact]
    public void Repeated_calls_free_every_device_buffer_they_make()
    {
        using var tiny = TinyModel.Bert(4600, TinyHead.Classifier);

        // A device of its own: the shared test devices hold other tests' tensors at the same time.
        using var device = Device.Open("cpu");
        using (var model = HeadlightModel.Load(tiny.Folder, device))
        {
            var batch = model.FromIds([Row(9)]);
            var target = new ClassLogitTarget(2);
            var sampled = new KernelShapOptions { Budget = 120, Masking = ShapMasking.Drop, Seed = 3 };
            var exact = new KernelShapOptions { Exact = true };

            // The first calls make the forward buffers of their batch shapes; later calls of those shapes reuse them.
            Explainer.Explain(model, batch, target, sampled);
            Explainer.Explain(model, batch, target, exact);
            long baseline = device.AllocatedBytes;
            long tensors = device.LiveTensors;
            for (int i = 0; i < 20; i++)
            {
                Explainer.Explain(model, batch, target, sampled);
                Explainer.Explain(model, batch, target, exact);
            }

            output.WriteLine($"after 40 calls: {device.AllocatedBytes} bytes in {device.LiveTensors} tensors (the first two left {baseline} in {tensors})");
            Assert.Equal(baseline, device.AllocatedBytes);
            Assert.Equal(tensors, device.LiveTensors);
        }

        Assert.Equal(0, device.LiveTensors);
    }
}
