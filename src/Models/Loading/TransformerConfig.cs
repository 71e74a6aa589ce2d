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
        Positive(source, Key(nameof(HiddenSize)), HiddenSize);
        Positive(source, Key(nameof(Layers)), Layers);
        Positive(source, Key(nameof(Heads)), Heads);
        Positive(source, Key(nameof(IntermediateSize)), IntermediateSize);
        Positive(source, Key(nameof(MaxPositions)), MaxPositions);
        Positive(source, Key(nameof(VocabSize)), VocabSize);
        if (HiddenSize % Heads != 0)
        {
            throw new ModelFormatException(source, Key(nameof(Heads)), $"a divisor of {Key(nameof(HiddenSize))} {HiddenSize}", $"{Heads}");
        }

        // The float the kernels use must hold it: 1e300 is finite as a double, infinite as a float.
        if (!double.IsFinite(LayerNormEps) || LayerNormEps <= 0 || !float.IsFinite((float)LayerNormEps) || (float)LayerNormEps <= 0)
        {
            throw new ModelFormatException(source, Key(nameof(LayerNormEps)), "a positive number a 32-bit float holds (1.2e-38 to 3.4e38)", LayerNormEps.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        // Every weight matrix the sizes imply must fit one tensor (checked 64-bit products).
        Fits(source, nameof(HiddenSize), 3L * HiddenSize, "3·{0} (the fused q, k, v width)", int.MaxValue);
        Fits(source, nameof(HiddenSize), 3L * HiddenSize * HiddenSize, "3·{0}² (the q, k, v weights)", Array.MaxLength);
        Fits(source, nameof(IntermediateSize), (long)HiddenSize * IntermediateSize, $"{Key(nameof(HiddenSize))}·{{0}} (a feed-forward weight)", Array.MaxLength);
        Fits(source, nameof(VocabSize), (long)VocabSize * HiddenSize, $"{{0}}·{Key(nameof(HiddenSize))} (the token embeddings)", Array.MaxLength);
        Fits(source, nameof(MaxPositions), (long)MaxPositions * HiddenSize, $"{{0}}·{Key(nameof(HiddenSize))} (the position embeddings)", Array.MaxLength);
    }

    /// <summary>The config.json key of a property: errors name what the user wrote.</summary>
    private protected string Key(string property) => (Family, property) switch
    {
        ("gpt2", nameof(HiddenSize)) => "n_embd",
        ("gpt2", nameof(Layers)) => "n_layer",
        ("gpt2", nameof(Heads)) => "n_head",
        ("gpt2", nameof(IntermediateSize)) => "n_inner",
        ("gpt2", nameof(MaxPositions)) => "n_positions",
        ("gpt2", nameof(LayerNormEps)) => "layer_norm_epsilon",
        ("distilbert", nameof(HiddenSize)) => "dim",
        ("distilbert", nameof(Layers)) => "n_layers",
        ("distilbert", nameof(Heads)) => "n_heads",
        ("distilbert", nameof(IntermediateSize)) => "hidden_dim",
        (_, nameof(HiddenSize)) => "hidden_size",
        (_, nameof(Layers)) => "num_hidden_layers",
        (_, nameof(Heads)) => "num_attention_heads",
        (_, nameof(IntermediateSize)) => "intermediate_size",
        (_, nameof(MaxPositions)) => "max_position_embeddings",
        (_, nameof(LayerNormEps)) => "layer_norm_eps",
        (_, "TypeVocabSize") => "type_vocab_size",
        (_, nameof(VocabSize)) => "vocab_size",
        _ => property,
    };

    /// <summary>The config.json naming this record follows: <c>gpt2</c>, <c>distilbert</c> or BERT's (any other).</summary>
    private protected virtual string Family => "bert";

    private void Fits(string source, string property, long value, string what, long limit)
    {
        if (value > limit)
        {
            string key = Key(property);
            throw new ModelFormatException(source, key, string.Format(System.Globalization.CultureInfo.InvariantCulture, what, key) + $" of at most {limit} elements", $"{value} from {key} = {Size(property)}");
        }
    }

    private int Size(string property) => property switch
    {
        nameof(HiddenSize) => HiddenSize,
        nameof(IntermediateSize) => IntermediateSize,
        nameof(VocabSize) => VocabSize,
        _ => MaxPositions,
    };

    /// <summary>Throws unless <paramref name="value"/> is positive.</summary>
    protected static void Positive(string source, string field, int value)
    {
        if (value <= 0)
        {
            throw new ModelFormatException(source, field, "a positive integer", $"{value}");
        }
    }
}
