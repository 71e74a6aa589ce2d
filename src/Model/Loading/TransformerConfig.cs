namespace Headlight.Models.Loading;

/// <summary>The shape of a transformer, whatever its family.</summary>
/// <param name="HiddenSize">The residual stream width d.</param>
/// <param name="Layers">The number of blocks.</param>
/// <param name="Heads">Attention heads per block.</param>
/// <param name="IntermediateSize">The feed-forward inner width.</param>
/// <param name="Activation">The feed-forward activation.</param>
/// <param name="MaxPositions">The number of learned position embeddings.</param>
/// <param name="LayerNormEps">LayerNorm's epsilon (added to the variance over d).</param>
/// <param name="VocabSize">The number of token embeddings.</param>
internal abstract record TransformerConfig(int HiddenSize, int Layers, int Heads, int IntermediateSize, ActivationFunction Activation, int MaxPositions, double LayerNormEps, int VocabSize)
{
    /// <summary>The width of one head: <see cref="HiddenSize"/> / <see cref="Heads"/>.</summary>
    public int HeadDim => Heads > 0 ? HiddenSize / Heads : 0;

    /// <summary>config.json keys the loader neither reads nor knows to be inert (see <see cref="HfConfigKeys"/>); empty when none.</summary>
    public IReadOnlyList<string> IgnoredKeys { get; init; } = [];

    /// <summary>Checks sizes are positive, the width splits into heads and epsilon is positive.</summary>
    /// <param name="source">The file or description named in errors.</param>
    /// <exception cref="ModelFormatException">A value is out of range.</exception>
    public virtual void Validate(string source)
    {
        Positive(source, nameof(HiddenSize), HiddenSize);
        Positive(source, nameof(Layers), Layers);
        Positive(source, nameof(Heads), Heads);
        Positive(source, nameof(IntermediateSize), IntermediateSize);
        Positive(source, nameof(MaxPositions), MaxPositions);
        Positive(source, nameof(VocabSize), VocabSize);
        if (HiddenSize % Heads != 0)
        {
            throw new ModelFormatException(source, nameof(Heads), $"a divisor of the hidden size {HiddenSize}", $"{Heads}");
        }

        if (!double.IsFinite(LayerNormEps) || LayerNormEps <= 0)
        {
            throw new ModelFormatException(source, nameof(LayerNormEps), "a positive number", $"{LayerNormEps}");
        }
    }

    /// <summary>Throws unless <paramref name="value"/> is positive.</summary>
    protected static void Positive(string source, string field, int value)
    {
        if (value <= 0)
        {
            throw new ModelFormatException(source, field, "a positive integer", $"{value}");
        }
    }
}
