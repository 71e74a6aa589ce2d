namespace Headlight.Models.Loading;

/// <summary>A BERT encoder's configuration (post-LayerNorm blocks, learned positions and token types).</summary>
/// <param name="HiddenSize">The residual stream width d.</param>
/// <param name="Layers">The number of blocks.</param>
/// <param name="Heads">Attention heads per block.</param>
/// <param name="IntermediateSize">The feed-forward inner width.</param>
/// <param name="Activation">The feed-forward activation.</param>
/// <param name="MaxPositions">The number of learned position embeddings.</param>
/// <param name="LayerNormEps">LayerNorm's epsilon.</param>
/// <param name="VocabSize">The number of token embeddings.</param>
/// <param name="TypeVocabSize">The number of token type (segment) embeddings.</param>
internal sealed record BertConfig(int HiddenSize, int Layers, int Heads, int IntermediateSize, ActivationFunction Activation, int MaxPositions, double LayerNormEps, int VocabSize, int TypeVocabSize)
    : TransformerConfig(HiddenSize, Layers, Heads, IntermediateSize, Activation, MaxPositions, LayerNormEps, VocabSize)
{
    /// <summary>The <c>architectures</c> list of config.json (empty when unknown).</summary>
    public IReadOnlyList<string> Architectures { get; init; } = [];

    /// <summary>Class labels of a sequence classifier (from <c>id2label</c>, else <c>num_labels</c> placeholders); empty for other heads.</summary>
    public IReadOnlyList<string> Labels { get; init; } = [];

    /// <summary>Whether the checkpoint is a <c>BertForSequenceClassification</c> (pooler plus a classifier layer).</summary>
    public bool IsSequenceClassifier => Architectures.Contains("BertForSequenceClassification");

    /// <inheritdoc />
    public override void Validate(string source)
    {
        base.Validate(source);
        Positive(source, nameof(TypeVocabSize), TypeVocabSize);
    }
}
