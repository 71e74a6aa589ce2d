using System.Globalization;

namespace Headlight.Explain;

/// <summary>
/// Explanations read off the attention probabilities of every layer, combined across layers into one
/// <c>[query, key]</c> matrix per input row. Token scores are the matrix rows of the positions the target reads (those
/// where its gradient at the last hidden state is not zero: [CLS] for a classifier, the last token for a next-token
/// target, every real token for mean pooling), averaged.
/// </summary>
public abstract record RolloutOptions : AttributionOptions
{
    private protected RolloutOptions() { }
}

/// <summary>
/// Attention rollout (Abnar &amp; Zuidema 2020): per layer the head-averaged probabilities mixed with the identity for the
/// residual stream, <c>Ã = (1 − w)·mean_h A + w·I</c>, multiplied through the layers, <c>M = Ã_L ⋯ Ã_1</c>. Rows of M sum
/// to 1. Needs no gradient; the target only chooses the query positions.
/// </summary>
public sealed record AttentionRolloutOptions : RolloutOptions
{
    /// <inheritdoc />
    public override string Method => "rollout";

    /// <summary>The weight w of the identity (the residual connection), in [0, 1] (default 0.5).</summary>
    public double ResidualWeight { get; init; } = 0.5;

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string>(base.Describe(), StringComparer.Ordinal)
    {
        ["residual_weight"] = ResidualWeight.ToString("R", CultureInfo.InvariantCulture),
    };

    internal override void Validate()
    {
        base.Validate();
        OptionRange.Check(Method, nameof(ResidualWeight), ResidualWeight, 0, 1);
    }
}

/// <summary>
/// Gradient-weighted attention (Chefer et al. 2021, for self-attention): per layer
/// <c>Ā = mean_h (∂F/∂A ⊙ A)⁺</c> from the captured probabilities and their gradients, accumulated from the first layer
/// up as <c>R ← R + Ā·R</c> starting from <c>R = I</c>. The reported matrix is <c>R − I</c>: what attention added to each
/// token's own starting relevance.
/// </summary>
public sealed record GradientAttentionOptions : RolloutOptions
{
    /// <inheritdoc />
    public override string Method => "gradattn";
}
