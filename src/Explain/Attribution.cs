using Headlight.Models.Tokenization;

namespace Headlight.Explain;

/// <summary>
/// A figure that checks an explanation: for integrated gradients the completeness delta
/// <c>Σ attributions − (F(x) − F(x'))</c>; for relevance methods the conservation gap.
/// </summary>
/// <param name="Name">Short name, e.g. <c>completeness delta</c>.</param>
/// <param name="Value">The figure; 0 is perfect.</param>
/// <param name="Meaning">What it measures, in one sentence.</param>
public sealed record CheckFigure(string Name, double Value, string Meaning);

/// <summary>One word's score: the sum over its tokens (word pieces).</summary>
/// <param name="Text">The word as written in the input.</param>
/// <param name="FirstToken">Index of its first token.</param>
/// <param name="TokenCount">Number of its tokens.</param>
/// <param name="Score">The sum of its tokens' scores.</param>
public sealed record WordScore(string Text, int FirstToken, int TokenCount, double Score);

/// <summary>One feature that a perturbation method (Kernel SHAP) switches on and off: a word or a token, with its value and standard error.</summary>
/// <param name="Text">The word or token as written.</param>
/// <param name="FirstToken">Index of its first token.</param>
/// <param name="TokenCount">Number of its tokens.</param>
/// <param name="Score">Its value (the Shapley value estimate).</param>
/// <param name="StandardError">The standard error of <paramref name="Score"/> from the random sampling: 0 when every coalition was evaluated, NaN when too few were sampled to tell.</param>
public sealed record FeatureScore(string Text, int FirstToken, int TokenCount, double Score, double StandardError);

/// <summary>
/// The explanation of one input row: a score per token and per word, the explained value, and the
/// check figure where the method has one. Special tokens ([CLS], [SEP], BOS) are scored like any other
/// token and flagged in <see cref="IsSpecial"/>; they belong to no word.
/// </summary>
public sealed class Attribution
{
    internal Attribution(TokenizedText input, double[] tokenScores, float[] embeddingScores, int hidden, double targetValue, double? baselineValue, CheckFigure? check, IReadOnlyList<FeatureScore>? features = null)
    {
        Features = features;
        Input = input;
        Tokens = input.Tokens;
        IsSpecial = input.WordIndices.Select(w => w < 0).ToArray();
        TokenScores = tokenScores;
        EmbeddingScores = embeddingScores;
        Hidden = hidden;
        TargetValue = targetValue;
        BaselineValue = baselineValue;
        Check = check;
        Words = input.Words
            .Where(w => w.FirstToken < tokenScores.Length)
            .Select(w => new WordScore(w.Text, w.FirstToken, Math.Min(w.TokenCount, tokenScores.Length - w.FirstToken),
                tokenScores.AsSpan(w.FirstToken, Math.Min(w.TokenCount, tokenScores.Length - w.FirstToken)).ToArray().Sum()))
            .ToArray();
    }

    /// <summary>The tokenised input.</summary>
    public TokenizedText Input { get; }

    /// <summary>The tokens, special tokens included.</summary>
    public IReadOnlyList<string> Tokens { get; }

    /// <summary>For each token, whether it is a special token ([CLS], [SEP], BOS) that stands for no word.</summary>
    public IReadOnlyList<bool> IsSpecial { get; }

    /// <summary>One score per token (see the method for what it means).</summary>
    public IReadOnlyList<double> TokenScores { get; }

    /// <summary>Per-word scores: each word's token scores summed.</summary>
    public IReadOnlyList<WordScore> Words { get; }

    /// <summary>
    /// The attribution per token and embedding dimension, <c>[tokens, d]</c>, before it is reduced to a token
    /// score: the gradient (saliency), gradient × input, the mean noisy gradient (SmoothGrad) or the
    /// integrated gradient. Empty for Kernel SHAP, which does not work on embeddings.
    /// </summary>
    public ReadOnlyMemory<float> EmbeddingScores { get; }

    /// <summary>The embedding width d of <see cref="EmbeddingScores"/>.</summary>
    public int Hidden { get; }

    /// <summary>The explained value at the input, F(x).</summary>
    public double TargetValue { get; }

    /// <summary>The explained value at the baseline, F(x'), for methods that have one.</summary>
    public double? BaselineValue { get; }

    /// <summary>The check figure, for methods that have one.</summary>
    public CheckFigure? Check { get; }

    /// <summary>
    /// The features a perturbation method switched on and off, with their values and standard errors (Kernel SHAP);
    /// null for gradient methods. A feature's value is spread evenly over its tokens in <see cref="TokenScores"/>.
    /// </summary>
    public IReadOnlyList<FeatureScore>? Features { get; }
}

/// <summary>What an explanation method returns: one <see cref="Attribution"/> per input row, and how it was made.</summary>
public sealed class AttributionResult
{
    internal AttributionResult(string method, string target, IReadOnlyDictionary<string, string> options, string model, string device, TimeSpan elapsed, int passes, IReadOnlyList<Attribution> rows)
    {
        Method = method;
        Target = target;
        Options = options;
        Model = model;
        Device = device;
        Elapsed = elapsed;
        Passes = passes;
        Rows = rows;
    }

    /// <summary>The method, e.g. <c>integrated-gradients</c>.</summary>
    public string Method { get; }

    /// <summary>The explained target, in words.</summary>
    public string Target { get; }

    /// <summary>The method's options, as name and value.</summary>
    public IReadOnlyDictionary<string, string> Options { get; }

    /// <summary>The model's name.</summary>
    public string Model { get; }

    /// <summary>The device it ran on.</summary>
    public string Device { get; }

    /// <summary>Wall-clock time of the whole explanation (target preparation included).</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>Rows run through the model (forward, and backward where a gradient is needed), all batches and padding rows together.</summary>
    public int Passes { get; }

    /// <summary>One explanation per input row.</summary>
    public IReadOnlyList<Attribution> Rows { get; }
}
