using System.Text.Json;
using Headlight.Explain.Census;
using Headlight.Models;
using Headlight.Tests.Explain;
using Headlight.Tests.Loading;
using RandomWeights = Headlight.Explain.Census.RandomWeights;

namespace Headlight.Tests.Census;

/// <summary>
/// The census end to end on tiny models and the gpt2-tiny fixture: importance and ablation against an
/// independent float64 forward pass with head gates, reproducibility, random-weight controls.
/// </summary>
public sealed class HeadCensusTests
{
    private static CensusOptions Options(int controls = 0, bool importance = true, int ablation = 6, CensusCorpus? corpus = null) => new()
    {
        Corpus = (corpus ?? CensusCorpus.BuiltIn()).WithRepeats(6, 6, 0),
        ControlSeeds = Enumerable.Range(1, controls).ToArray(),
        Importance = importance,
        AblationTexts = ablation,
    };

    // Mean next-token log-likelihood of one row in float64, with a gate per (layer, head).
    private static double Likelihood(ReferenceTransformer reference, int[] ids, double[,] gates)
    {
        var hidden = reference.Hidden(reference.Embed(ids), gates: gates);
        double sum = 0;
        for (int t = 0; t + 1 < ids.Length; t++)
        {
            var logits = Enumerable.Range(0, TinyModel.Gpt2Vocab).Select(v => reference.Logit(hidden, t, v)).ToArray();
            double max = logits.Max();
            double logSum = max + Math.Log(logits.Sum(z => Math.Exp(z - max)));
            sum += logits[ids[t + 1]] - logSum;
        }

        return sum / (ids.Length - 1);
    }

    private static double[,] Gates(int layer, int head, double value)
    {
        var g = new double[2, TinyModel.Heads];
        for (int l = 0; l < 2; l++)
        {
            for (int h = 0; h < TinyModel.Heads; h++)
            {
                g[l, h] = 1;
            }
        }

        g[layer, head] = value;
        return g;
    }

    [Fact]
    public void Decoder_importance_and_ablation_match_a_float64_reference_with_head_gates()
    {
        using var tiny = TinyModel.Gpt2(9601);
        using var model = Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu"));
        var options = Options();
        var result = HeadCensus.Run(model, options);
        var plan = CorpusPlan.Build(model, options.Corpus!);
        Assert.Equal("random tokens", result.Corpus.TextSource);
        var reference = new ReferenceTransformer(tiny);
        var texts = plan.Texts.Select(t => t.Ids).ToArray();
        int k = options.AblationTexts;
        var chosen = Enumerable.Range(0, k).Select(i => texts[i * texts.Length / k]).ToArray();

        for (int l = 0; l < 2; l++)
        {
            for (int h = 0; h < TinyModel.Heads; h++)
            {
                // Michel et al.'s importance: mean |dL/dξ|, by central differences on the float64 gates.
                const double eps = 1e-4;
                double importance = texts.Average(ids => Math.Abs((Likelihood(reference, ids, Gates(l, h, 1 + eps)) - Likelihood(reference, ids, Gates(l, h, 1 - eps))) / (2 * eps)));
                double drop = chosen.Average(ids => Likelihood(reference, ids, Gates(l, h, 1)) - Likelihood(reference, ids, Gates(l, h, 0)));
                var head = result[l, h];
                Assert.True(Math.Abs(head.Importance!.Value - importance) <= 1e-4 + (1e-3 * importance), $"L{l}H{h} importance {head.Importance} vs {importance}");
                Assert.True(Math.Abs(head.AblationDrop!.Value - drop) <= 1e-4 + (1e-3 * Math.Abs(drop)), $"L{l}H{h} drop {head.AblationDrop} vs {drop}");
            }
        }

        double baseline = chosen.Average(ids => Likelihood(reference, ids, Gates(0, 0, 1)));
        Assert.Equal(baseline, result.TargetBaseline!.Value, 4);
        Assert.Equal(1.0, result.Heads.Sum(x => x.ImportanceShare!.Value), 9);

        // The ablation restores the weights: the model gives the same logits as a fresh copy.
        using var fresh = Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu"));
        var batch = model.FromIds([texts[0]]);
        Assert.Equal(fresh.Forward(batch).Logits, model.Forward(batch).Logits);
    }

    [Fact]
    public void Encoder_census_runs_on_text_with_self_retrieval_importance()
    {
        using var tiny = TinyModel.Bert(9602, TinyHead.MeanPooling);
        using var model = Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu"));
        var random = new Random(5);
        var texts = Enumerable.Range(0, 12).Select(_ => string.Join(' ', Enumerable.Range(0, random.Next(3, 12)).Select(_ => $"w{random.Next(5, TinyModel.BertVocab)}"))).ToArray();
        var result = HeadCensus.Run(model, Options(controls: 2, corpus: CensusCorpus.FromTexts("tiny", texts)));
        Assert.Equal("corpus texts", result.Corpus.TextSource);
        Assert.Equal(12, result.Corpus.Texts);
        Assert.Equal(texts.Sum(t => t.Split(' ').Length + 2), result.Corpus.TextTokens);
        Assert.Contains("self-retrieval", result.Target, StringComparison.Ordinal);
        Assert.All(result.Heads, h => Assert.True(h.Importance > 0 && double.IsFinite(h.AblationDrop!.Value)));
        Assert.Equal(2, result.Controls.Count);
        Assert.All(result.Controls, c => Assert.Equal(4, c.Heads.Count));
        Assert.InRange(result.Chance.First, 0.05, 0.4);
    }

    [Fact]
    public void Self_retrieval_gradient_matches_finite_differences_and_the_scale_is_calibrated()
    {
        var random = new Random(3);
        var embeddings = Enumerable.Range(0, 9).Select(_ => Enumerable.Range(0, 6).Select(_ => random.NextDouble() - 0.5).ToArray()).ToArray();
        var gallery = RetrievalGallery.Calibrate(embeddings);

        // With every embedding as it is, a text retrieves itself with mean probability 1/2 (float64, own formula).
        double meanSelf = Enumerable.Range(0, 9).Average(i => Math.Exp(gallery.Value(embeddings[i], i)));
        Assert.Equal(RetrievalGallery.CalibratedProbability, meanSelf, 4);

        var e = embeddings[4].Select(v => v * 1.7 + 0.05).ToArray();
        var g = new double[6];
        double value = gallery.Value(e, 4, g);
        for (int i = 0; i < 6; i++)
        {
            var plus = (double[])e.Clone();
            var minus = (double[])e.Clone();
            plus[i] += 1e-6;
            minus[i] -= 1e-6;
            Assert.Equal((gallery.Value(plus, 4) - gallery.Value(minus, 4)) / 2e-6, g[i], 5);
        }

        // Independent: log softmax of s·cos against the normalised gallery.
        var cos = gallery.Embeddings.Select(x => x.Zip(e, (a, b) => a * b).Sum() / Math.Sqrt(e.Sum(v => v * v))).ToArray();
        double max = cos.Max() * gallery.Scale;
        Assert.Equal((gallery.Scale * cos[4]) - max - Math.Log(cos.Sum(c => Math.Exp((gallery.Scale * c) - max))), value, 9);
    }

    [Fact]
    public void Gpt2_tiny_fixture_census_runs_end_to_end_and_repeats_exactly()
    {
        using var model = Headlight.Models.Model.Load(LoadingFiles.SharedFixture("gpt2-tiny"), Backends.Require("cpu"));
        var options = Options(controls: 2) with { Corpus = CensusCorpus.BuiltIn() };
        var first = HeadCensus.Run(model, options);
        var second = HeadCensus.Run(model, options);
        Assert.Equal(2 * 4, first.Heads.Count);
        Assert.Equal("gpt2-decoder", first.Family);
        Assert.Equal(CensusCorpus.DefaultRepeatSequences, first.Corpus.RepeatSequences);
        Assert.Equal(CensusCorpus.DefaultRepeatLength, first.Corpus.RepeatLength);
        Assert.All(first.Heads, h => Assert.Equal(0.0, h.Next));
        Assert.Equal(Strip(CensusJson.Serialize(first)), Strip(CensusJson.Serialize(second)));

        static string Strip(string json)
        {
            var node = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
            node.Remove("elapsed_seconds");
            return node.ToJsonString();
        }
    }

    [Fact]
    public void Random_weight_controls_are_seeded_and_drawn_as_the_original_initialisation()
    {
        using var tiny = TinyModel.Gpt2(9603);
        using var model = Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu"));
        var config = model.Config with { VocabSize = 5000, Hidden = 64, Heads = 4, Intermediate = 256, Layers = 3 };
        var a = RandomWeights.Draw(config, 7);
        var b = RandomWeights.Draw(config, 7);
        var c = RandomWeights.Draw(config, 8);
        Assert.Equal(a.Names, b.Names);
        Assert.True(a["wte.weight"].Data.Span.SequenceEqual(b["wte.weight"].Data.Span));
        Assert.False(a["wte.weight"].Data.Span.SequenceEqual(c["wte.weight"].Data.Span));

        static (double Mean, double Std) Moments(ReadOnlySpan<float> x)
        {
            double mean = 0, sq = 0;
            foreach (float v in x)
            {
                mean += v;
                sq += (double)v * v;
            }

            mean /= x.Length;
            return (mean, Math.Sqrt((sq / x.Length) - (mean * mean)));
        }

        var (m, s) = Moments(a["wte.weight"].Data.Span);
        Assert.InRange(m, -0.001, 0.001);
        Assert.InRange(s, 0.0195, 0.0205);
        var (_, proj) = Moments(a["h.1.mlp.c_proj.weight"].Data.Span);
        Assert.InRange(proj, 0.02 / Math.Sqrt(6) * 0.95, 0.02 / Math.Sqrt(6) * 1.05);
        Assert.All(a["h.0.ln_1.weight"].Data.ToArray(), v => Assert.Equal(1f, v));
        Assert.All(a["h.0.attn.c_attn.bias"].Data.ToArray(), v => Assert.Equal(0f, v));

        var bert = RandomWeights.Draw(config with { Family = ModelFamily.BertEncoder, TypeVocabSize = 2, HasPooler = true }, 1);
        Assert.True(bert.Contains("pooler.dense.weight"));
        Assert.All(bert["encoder.layer.2.output.LayerNorm.bias"].Data.ToArray(), v => Assert.Equal(0f, v));

        // A control of a real model: same shape and tokenizer, its own weights, on the same device.
        using var control = RandomWeights.Control(model, 1);
        Assert.Equal(model.Config, control.Config);
        Assert.Same(model.Device, control.Device);
        Assert.NotEqual(model.Forward(model.FromIds([[1, 2, 3]])).Logits, control.Forward(control.FromIds([[1, 2, 3]])).Logits);
    }

    [Fact]
    public void Options_out_of_range_are_rejected_before_any_pass()
    {
        using var tiny = TinyModel.Gpt2(9604);
        using var model = Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu"));
        Assert.Throws<ArgumentOutOfRangeException>(() => HeadCensus.Run(model, new CensusOptions { AblationTexts = -1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => HeadCensus.Run(model, new CensusOptions { BatchTokens = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => HeadCensus.Run(model, new CensusOptions { ControlSeeds = [1, 1] }));
        Assert.Throws<ArgumentNullException>(() => HeadCensus.Run(null!));
    }

    [Fact]
    public void Json_holds_every_head_metric_thresholds_and_controls()
    {
        using var tiny = TinyModel.Gpt2(9605);
        using var model = Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu"));
        var result = HeadCensus.Run(model, Options(controls: 1));
        using var doc = JsonDocument.Parse(CensusJson.Serialize(result));
        var root = doc.RootElement;
        Assert.Equal(CensusJson.Schema, root.GetProperty("schema").GetString());
        Assert.Equal(CensusThresholds.Mass, root.GetProperty("thresholds").GetProperty("mass").GetDouble());
        var heads = root.GetProperty("heads");
        Assert.Equal(4, heads.GetArrayLength());
        string[] fields = ["layer", "head", "entropy", "normalized_entropy", "confidence", "previous", "next", "offset", "offset_argmax_share",
            "first", "separator", "punctuation", "duplicate", "induction", "det_noun", "adj_noun", "prep_object", "verb_subject", "importance", "importance_share", "ablation_drop", "roles"];
        Assert.Equal(fields, heads[0].EnumerateObject().Select(p => p.Name));
        Assert.Equal(result.Heads[3].Previous, heads[3].GetProperty("previous").GetDouble());
        Assert.Equal(1, root.GetProperty("controls").GetArrayLength());
        Assert.Equal(1, root.GetProperty("control_summary").GetProperty("seeds").GetInt32());
        Assert.True(root.GetProperty("chance").TryGetProperty("induction", out _));
    }
}
