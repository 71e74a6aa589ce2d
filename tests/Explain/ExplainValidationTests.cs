using Headlight.Explain;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Explain;

/// <summary>Bad input to explanations: targets that do not fit the model or the inputs, options out of range, non-finite values.</summary>
public sealed class ExplainValidationTests : IDisposable
{
    private readonly TinyModel classifier = TinyModel.Bert(9000, TinyHead.Classifier);
    private readonly TinyModel sentence = TinyModel.Bert(9100, TinyHead.MeanPooling);
    private readonly TinyModel decoder = TinyModel.Gpt2(9200);

    public void Dispose()
    {
        classifier.Dispose();
        sentence.Dispose();
        decoder.Dispose();
    }

    [Fact]
    public void Targets_that_do_not_fit_the_model_or_the_inputs_throw_target_exceptions_naming_the_problem()
    {
        var device = Backends.Require("cpu");
        using var bert = HeadlightModel.Load(classifier.Folder, device);
        using var st = HeadlightModel.Load(sentence.Folder, device);
        using var gpt = HeadlightModel.Load(decoder.Folder, device);
        var bertIds = bert.FromIds([[2, 7, 12, 3]]);
        var gptIds = gpt.FromIds([[5, 17, 33]]);
        var options = new SaliencyOptions();

        Throws(() => Explainer.Explain(bert, bertIds, new ClassLogitTarget(3), options), "3 classes");
        Throws(() => Explainer.Explain(bert, bertIds, new ClassProbabilityTarget(-1), options), "3 classes");
        Throws(() => Explainer.Explain(st, st.FromIds([[2, 7, 3]]), new ClassLogitTarget(0), options), "no classification head");
        Throws(() => Explainer.Explain(gpt, gptIds, new EmbeddingSimilarityTarget("hello"), options), "is a decoder");
        Throws(() => Explainer.Explain(bert, bertIds, new EmbeddingSimilarityTarget([1f, 2f]), options), "sentence encoder");
        Throws(() => Explainer.Explain(st, st.FromIds([[2, 7, 3]]), new EmbeddingSimilarityTarget([1f, 2f]), options), "16");
        Throws(() => Explainer.Explain(bert, bertIds, new NextTokenLogitTarget(1), options), "needs a decoder");
        Throws(() => Explainer.Explain(gpt, gptIds, new NextTokenLogitTarget(TinyModel.Gpt2Vocab), options), "outside the vocabulary");
        Throws(() => Explainer.Explain(gpt, gptIds, new LogitDifferenceTarget(1, -2), options), "outside the vocabulary");
        Throws(() => Explainer.Explain(gpt, gptIds, new NextTokenLogitTarget(1, Position: 3), options), "position 3");
        Throws(() => Explainer.Explain(gpt, gptIds, new OutputUnitTarget(0, 16), options), "unit 16");
        Throws(() => Explainer.Explain(bert, bertIds, new OutputUnitTarget(4, 0), options), "position 4");
        Throws(() => Explainer.Explain(gpt, gptIds, OutputUnitTarget.Pooled(0), options), "sentence encoder");
        Assert.Throws<TargetException>(() => new EmbeddingSimilarityTarget([float.NaN, 1f]));
        Assert.Throws<TargetException>(() => new EmbeddingSimilarityTarget([0f, 0f]));
        Assert.Throws<TargetException>(() => Explainer.HeadGateGradients(bert, bertIds, new ClassLogitTarget(7)));
    }

    [Fact]
    public void Options_out_of_range_and_baselines_the_model_lacks_are_rejected_before_anything_runs()
    {
        var device = Backends.Require("cpu");
        using var gpt = HeadlightModel.Load(decoder.Folder, device);
        var ids = gpt.FromIds([[5, 17, 33]]);
        var target = new NextTokenLogitTarget(1);
        Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(gpt, ids, target, new IntegratedGradientsOptions { Steps = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(gpt, ids, target, new IntegratedGradientsOptions { Steps = 1, Rule = QuadratureRule.RiemannTrapezoid }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(gpt, ids, target, new SmoothGradOptions { Samples = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(gpt, ids, target, new SmoothGradOptions { NoiseLevel = double.NaN }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(gpt, ids, target, new SmoothGradOptions { NoiseLevel = -0.1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(gpt, ids, target, new SaliencyOptions { MemoryBudgetBytes = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Explain(gpt, ids, target, new IntegratedGradientsOptions { BaselineTokenId = TinyModel.Gpt2Vocab }));
        var e = Assert.Throws<ArgumentException>(() => Explainer.Explain(gpt, ids, target, new IntegratedGradientsOptions { Baseline = BaselineKind.Mask }));
        Assert.Contains("no mask token", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentNullException>(() => Explainer.Explain(gpt, ids, null!, new SaliencyOptions()));
        Assert.Throws<ArgumentNullException>(() => Explainer.Explain(gpt, ids, target, null!));
        Assert.Throws<ArgumentNullException>(() => Explainer.Explain(null!, ids, target, new SaliencyOptions()));
    }

    [Fact]
    public void Inputs_from_another_vocabulary_and_a_disposed_model_are_typed_errors()
    {
        var device = Backends.Require("cpu");
        using var bert = HeadlightModel.Load(classifier.Folder, device);
        using var gpt = HeadlightModel.Load(decoder.Folder, device);

        // Ids valid for the decoder's 40-token vocabulary but not for the encoder's 30.
        var e = Assert.Throws<ArgumentException>(() => Explainer.Explain(bert, gpt.FromIds([[2, 35, 3]]), new ClassLogitTarget(0), new SaliencyOptions()));
        Assert.Contains("35", e.Message, StringComparison.Ordinal);
        Assert.Single(Explainer.Explain(bert, bert.FromIds([[2, 7, 3]]), new ClassLogitTarget(0), new SaliencyOptions()).Rows);

        bert.Dispose();
        Assert.Throws<ObjectDisposedException>(() => Explainer.Explain(bert, bert.FromIds([[2, 7, 3]]), new ClassLogitTarget(0), new SaliencyOptions()));
    }

    private static void Throws(Action action, string fragment)
    {
        var e = Assert.Throws<TargetException>(action);
        Assert.Contains(fragment, e.Message, StringComparison.Ordinal);
    }
}
