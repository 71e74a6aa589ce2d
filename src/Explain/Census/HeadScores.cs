namespace Headlight.Explain.Census;

/// <summary>
/// The census numbers of one attention head, averaged over the corpus. Attention-mass scores are in
/// [0, 1]: Σ(A⊙pattern)/ΣA per query, averaged over the queries where the pattern exists. The text
/// metrics come from the corpus texts, <see cref="Duplicate"/> and <see cref="Induction"/> from random
/// token sequences repeated twice.
/// </summary>
public sealed record HeadScores
{
    /// <summary>The layer (block), from 0; −1 for the uniform-attention chance level.</summary>
    public required int Layer { get; init; }

    /// <summary>The head within the layer, from 0; −1 for the chance level.</summary>
    public required int Head { get; init; }

    /// <summary>Mean over queries of −Σ A log A (nats), visible keys only.</summary>
    public double Entropy { get; init; }

    /// <summary>Mean over queries (with at least two visible keys) of the entropy divided by log(visible keys): 1 = uniform.</summary>
    public double NormalizedEntropy { get; init; }

    /// <summary>Mean over queries of the largest attention weight.</summary>
    public double Confidence { get; init; }

    /// <summary>Mean attention on the previous token, over queries that have one.</summary>
    public double Previous { get; init; }

    /// <summary>Mean attention on the next token, over queries that have one (0 for causal heads).</summary>
    public double Next { get; init; }

    /// <summary>The offset key − query at which the strongest key sits most consistently.</summary>
    public int Offset { get; init; }

    /// <summary>Share of queries (where that offset exists and is visible) whose strongest key is at <see cref="Offset"/>.</summary>
    public double OffsetArgmaxShare { get; init; }

    /// <summary>Mean attention on the first token ([CLS], or the BOS a decoder's census prepends).</summary>
    public double First { get; init; }

    /// <summary>Mean attention on separator tokens (control tokens after the first position: [SEP]).</summary>
    public double Separator { get; init; }

    /// <summary>Mean attention on punctuation tokens.</summary>
    public double Punctuation { get; init; }

    /// <summary>Repeated random tokens: mean attention on the other copy of the query's own token, over queries that can see it.</summary>
    public double Duplicate { get; init; }

    /// <summary>Repeated random tokens: mean attention on the token after the earlier copy of the query's token, over the second copy's queries.</summary>
    public double Induction { get; init; }

    /// <summary>Tagged text: mean attention from a noun (its first token) on any token of its determiner; null without tagged text.</summary>
    public double? DetNoun { get; init; }

    /// <summary>Tagged text: mean attention from a noun (its first token) on any token of an adjective before it; null without tagged text.</summary>
    public double? AdjNoun { get; init; }

    /// <summary>Tagged text: mean attention from a preposition's object (its first token) on any token of the preposition; null without tagged text.</summary>
    public double? PrepObject { get; init; }

    /// <summary>Tagged text: mean attention from a finite verb (its first token) on any token of its subject; null without tagged text.</summary>
    public double? VerbSubject { get; init; }

    /// <summary>Head importance (Michel et al. 2019): mean over corpus texts of |∂L/∂ξ| for a gate ξ = 1 on the head's output; null when not computed.</summary>
    public double? Importance { get; init; }

    /// <summary><see cref="Importance"/> divided by the sum over all heads of the model; null when not computed.</summary>
    public double? ImportanceShare { get; init; }

    /// <summary>Mean over the ablation texts of L(all heads) − L(this head's output zeroed); null when not computed.</summary>
    public double? AblationDrop { get; init; }

    /// <summary>The roles that pass <see cref="CensusThresholds"/>.</summary>
    public HeadRole Roles { get; init; }

    /// <summary>True when at least one role passes.</summary>
    public bool IsInterpretable => Roles != HeadRole.None;
}
