using Headlight.Explain;
using Headlight.Models;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Explain;

/// <summary>
/// A model with a NaN embedding row: refused at load, and loaded with <see cref="ModelLoadOptions.AllowNonFiniteWeights"/>
/// so that the non-finite value an explanation meets is a typed error naming the row.
/// </summary>
public sealed class NonFiniteResultTests
{
    [Fact]
    public void A_nan_embedding_is_refused_at_load_and_when_allowed_gives_a_typed_error_naming_the_row()
    {
        using var classifier = TinyModel.Bert(9000, TinyHead.Classifier, nanToken: 9);
        var device = Backends.Require("cpu");
        Assert.Throws<ModelFormatException>(() => HeadlightModel.Load(classifier.Folder, device));

        using var bert = HeadlightModel.Load(classifier.Folder, device, new ModelLoadOptions { AllowNonFiniteWeights = true });

        // Token 9's embedding is NaN in this model: the value is not finite, and the error says which row.
        var nan = Assert.Throws<InvalidOperationException>(() => Explainer.Explain(bert, bert.FromIds([[2, 7, 3], [2, 9, 3]]), new ClassLogitTarget(0), new IntegratedGradientsOptions { Steps = 4 }));
        Assert.Contains("row 1", nan.Message, StringComparison.Ordinal);
        Assert.Contains("not finite", nan.Message, StringComparison.Ordinal);

        // The option holds for that one load only.
        Assert.Throws<ModelFormatException>(() => HeadlightModel.Load(classifier.Folder, device));
    }
}
