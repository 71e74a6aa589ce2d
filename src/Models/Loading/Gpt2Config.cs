namespace Headlight.Models.Loading;

/// <summary>A GPT-2 decoder's configuration (pre-LayerNorm blocks, causal attention, LM head tied to the token embeddings unless <see cref="TieWordEmbeddings"/> is false).</summary>
/// <param name="HiddenSize">n_embd.</param>
/// <param name="Layers">n_layer.</param>
/// <param name="Heads">n_head.</param>
/// <param name="IntermediateSize">n_inner (4·n_embd when null).</param>
/// <param name="Activation">activation_function.</param>
/// <param name="MaxPositions">n_positions.</param>
/// <param name="LayerNormEps">layer_norm_epsilon.</param>
/// <param name="VocabSize">vocab_size.</param>
internal sealed record Gpt2Config(int HiddenSize, int Layers, int Heads, int IntermediateSize, ActivationFunction Activation, int MaxPositions, double LayerNormEps, int VocabSize)
    : TransformerConfig(HiddenSize, Layers, Heads, IntermediateSize, Activation, MaxPositions, LayerNormEps, VocabSize)
{
    private protected override string Family => "gpt2";

    /// <summary>The <c>architectures</c> list of config.json (empty when unknown).</summary>
    public IReadOnlyList<string> Architectures { get; init; } = [];

    /// <summary>tie_word_embeddings (default true): when false the checkpoint's own <c>lm_head.weight</c> [vocab, d] is the output projection.</summary>
    public bool TieWordEmbeddings { get; init; } = true;
}
