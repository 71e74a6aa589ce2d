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

    /// <summary>config.json's <c>model_type</c>: <c>bert</c>, <c>roberta</c> or <c>distilbert</c> (which name mapping and head the checkpoint uses).</summary>
    public string ModelType { get; init; } = "bert";

    private protected override string Family => ModelType;

    /// <summary>RoBERTa's padding_idx: positions are padding_idx + 1 + (index among non-pad tokens), pads take padding_idx; null = 0..T−1.</summary>
    public int? PositionPaddingId { get; init; }

    /// <summary>Whether the checkpoint is a <c>*ForSequenceClassification</c> of its family (a dense layer on the first token, then a classifier layer).</summary>
    public bool IsSequenceClassifier => Architectures.Any(a => a is "BertForSequenceClassification" or "RobertaForSequenceClassification" or "DistilBertForSequenceClassification");

    /// <inheritdoc />
    public override void Validate(string source)
    {
        base.Validate(source);

        // DistilBERT has no token type embeddings.
        if (ModelType != "distilbert")
        {
            Positive(source, Key(nameof(TypeVocabSize)), TypeVocabSize);
        }
    }
}
