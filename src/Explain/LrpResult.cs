namespace Headlight.Explain;

/// <summary>
/// An LRP explanation of every input row: the usual per-token and per-word scores, and relevance per layer and per
/// head with the conservation figures. <see cref="Attributions"/> is what <see cref="Explainer.Explain(Models.Model, Models.Tokenization.TokenBatch, ITarget, AttributionOptions, IProgress{Models.OperationProgress}, CancellationToken)"/> returns.
/// </summary>
public sealed class RelevanceResult
{
    internal RelevanceResult(AttributionResult attributions, IReadOnlyList<RowRelevance> rows, int layers, int heads)
    {
        Attributions = attributions;
        Rows = rows;
        Layers = layers;
        Heads = heads;
    }

    /// <summary>Scores per token and word with the conservation gap as the check figure, one row per input row.</summary>
    public AttributionResult Attributions { get; }

    /// <summary>The relevance of each input row through the model.</summary>
    public IReadOnlyList<RowRelevance> Rows { get; }

    /// <summary>Blocks of the model.</summary>
    public int Layers { get; }

    /// <summary>Heads per block.</summary>
    public int Heads { get; }
}

/// <summary>
/// Relevance of one input row, from the target down to the input: at the last hidden state, at every residual-stream
/// boundary, per head, and at the input embeddings. Each figure is a sum of relevance; with ε → 0, zero biases and
/// CP-LRP every layer total equals the target value.
/// </summary>
public sealed class RowRelevance
{
    internal RowRelevance(Attribution attribution, double[] output, double[][] layers, double[][] heads, double[] wordPart)
    {
        Attribution = attribution;
        OutputRelevance = output;
        LayerRelevance = layers;
        HeadRelevance = heads;
        WordEmbeddingRelevance = wordPart;
        InputTotal = attribution.TokenScores.Sum();
        OutputTotal = output.Sum();
        LayerTotals = layers.Select(l => l.Sum()).ToArray();
    }

    /// <summary>
    /// Per token and word: the relevance of each token's input embedding (word + position (+ type), as summed by the
    /// model); the target value F; the check figure <c>Σ input relevance − F</c>.
    /// </summary>
    public Attribution Attribution { get; }

    /// <summary>The explained value F.</summary>
    public double TargetValue => Attribution.TargetValue;

    /// <summary>Relevance per token at the last hidden state (GPT-2: after the final LayerNorm): what the target's head hands to the model.</summary>
    public IReadOnlyList<double> OutputRelevance { get; }

    /// <summary>
    /// <c>[layers + 1][tokens]</c>: relevance per token of the residual stream entering block l (l = 0: the embedding
    /// output, after BERT's embedding LayerNorm; l = layers: after the last block).
    /// </summary>
    public IReadOnlyList<IReadOnlyList<double>> LayerRelevance { get; }

    /// <summary>
    /// <c>[layers][heads]</c>: relevance of each head's output, the head's columns of <c>attn.z</c> (the input of the output
    /// projection) summed over tokens: how much of the target passes through that head.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<double>> HeadRelevance { get; }

    /// <summary>Per token, the part of <see cref="Attribution"/>'s token score carried by the word embedding alone (the rest is position and type).</summary>
    public IReadOnlyList<double> WordEmbeddingRelevance { get; }

    /// <summary>Σ of the input relevance over tokens.</summary>
    public double InputTotal { get; }

    /// <summary>Σ of <see cref="OutputRelevance"/>: F minus what the head's biases and ε absorb.</summary>
    public double OutputTotal { get; }

    /// <summary><c>[layers + 1]</c>: Σ of <see cref="LayerRelevance"/> over tokens at each boundary.</summary>
    public IReadOnlyList<double> LayerTotals { get; }

    /// <summary>The conservation gap <c>Σ input relevance − F</c> (0 is perfect conservation).</summary>
    public double ConservationGap => InputTotal - TargetValue;
}
