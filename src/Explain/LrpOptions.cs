using System.Globalization;

namespace Headlight.Explain;

/// <summary>Which rules an LRP pass applies inside attention; the rest of the model is the same for both.</summary>
public enum LrpRules
{
    /// <summary>
    /// AttnLRP (Achtibat et al. 2024): the uniform rule for Q·Kᵀ and P·V (each operand gets half), the Taylor rule for
    /// softmax; relevance flows through queries, keys and values.
    /// </summary>
    AttnLrp,

    /// <summary>CP-LRP (Ali et al. 2022): attention probabilities are held constant, so relevance flows through the values only.</summary>
    CpLrp,
}

/// <summary>
/// Layer-wise relevance propagation, run as a modified backward pass on the device: relevance at a tensor is the
/// tensor times a modified gradient. Rules: the ε-rule for linear layers, <c>R_in = x ⊙ Wᵀ(R_out / (z + ε·sign z))</c>;
/// the identity rule for LayerNorm (1/σ held constant) and GELU; inside attention <see cref="Rules"/>; residual
/// additions split relevance in proportion to their summands. The target's own head (pooler and classifier, LM
/// head, pooling and cosine) is propagated by the same rules on the host, normalisations held constant.
/// </summary>
/// <remarks>
/// Relevance at the input is attributed to each token's embedding as the model sums it (word + position, + token
/// type for BERT), before BERT's embedding LayerNorm; token scores are its sums over dimensions, and the part carried
/// by the word embedding alone is given too. The check figure is the conservation gap <c>Σ input relevance − F</c>:
/// what biases, ε and (AttnLRP) the softmax rule absorb or add. LRP is patented for commercial use by its authors'
/// institute (Fraunhofer).
/// </remarks>
public sealed record LrpOptions : AttributionOptions
{
    /// <inheritdoc />
    public override string Method => Rules == LrpRules.CpLrp ? "cp-lrp" : "lrp";

    /// <summary>The attention rules (default AttnLRP).</summary>
    public LrpRules Rules { get; init; } = LrpRules.AttnLrp;

    /// <summary>The largest <see cref="Epsilon"/>: float32 sums with it stay finite.</summary>
    public const double MaxEpsilon = 1e30;

    /// <summary>
    /// The stabiliser ε of the ε-rule and the uniform rule (default 1e-6); range [<see cref="float.Epsilon"/>,
    /// <see cref="MaxEpsilon"/>] (positive as a float32).
    /// </summary>
    public double Epsilon { get; init; } = 1e-6;

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string>(base.Describe(), StringComparer.Ordinal)
    {
        ["rules"] = Rules == LrpRules.CpLrp ? "cp-lrp" : "attnlrp",
        ["epsilon"] = Epsilon.ToString("R", CultureInfo.InvariantCulture),
    };

    internal override void Validate()
    {
        base.Validate();
        OptionRange.Check(Method, nameof(Epsilon), Epsilon, float.Epsilon, MaxEpsilon);

        if (!Enum.IsDefined(Rules))
        {
            throw new ArgumentOutOfRangeException(nameof(Rules), Rules, $"{Method}: unknown rules {Rules}.");
        }
    }
}

/// <summary>
/// A model or target given to an LRP explanation has a part no relevance rule covers (an activation, a block layout, a
/// pooling, a custom target's head); the message names the part and the rule that is missing.
/// </summary>
public sealed class MissingRelevanceRuleException : ArgumentException
{
    /// <summary>Creates the exception with a message that names the part without a rule.</summary>
    public MissingRelevanceRuleException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the cause.</summary>
    public MissingRelevanceRuleException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception with no message.</summary>
    public MissingRelevanceRuleException() { }
}
