using System.Globalization;

namespace Headlight.Explain;

/// <summary>What Kernel SHAP switches on and off.</summary>
public enum ShapFeatures
{
    /// <summary>Words: a word's pieces are masked together (the default).</summary>
    Words,

    /// <summary>Tokens: every word piece on its own.</summary>
    Tokens,
}

/// <summary>How Kernel SHAP takes a feature out of the input.</summary>
public enum ShapMasking
{
    /// <summary>
    /// Replace its tokens by the mask token ([MASK] for BERT models; for a decoder without one, its pad token), or by
    /// <see cref="KernelShapOptions.ReplacementTokenId"/> when given (the default).
    /// </summary>
    Replace,

    /// <summary>
    /// Drop its tokens from attention: their key mask becomes 0, so no token attends to them. A dropped token is
    /// still a query: its own hidden state is computed from the tokens it may still see (not itself), and a
    /// target that reads that position (a next-token logit at the last token, one unit at a position) reads that
    /// state. Sentence pooling reads the same key mask, so mean pooling leaves dropped tokens out.
    /// </summary>
    Drop,
}

/// <summary>
/// Kernel SHAP (Lundberg and Lee 2017): Shapley values of features (words by default) for the target, estimated by
/// a weighted least-squares fit over coalitions of features, each coalition one forward pass of the masked input.
/// No gradients are taken. Coalition sizes follow the Shapley-kernel distribution; the smallest and largest sizes
/// are enumerated completely while the budget allows, the rest drawn on the device with a counter-based random
/// generator in complementary pairs, duplicates merged by adding weight. The fit runs in float64 with efficiency,
/// Σφ = F(x) − F(∅), enforced exactly; F(∅) masks every feature, special tokens ([CLS], [SEP], BOS) are never masked.
/// </summary>
/// <remarks>
/// With a budget of all 2^M − 2 coalitions (the default for M ≤ 11) the result equals the exact Shapley values of
/// the masked-input game; <see cref="Exact"/> computes them by the Shapley formula over all 2^M coalitions instead.
/// </remarks>
public sealed record KernelShapOptions : AttributionOptions
{
    /// <summary>The largest number of features <see cref="Exact"/> accepts (2^12 = 4,096 forward passes).</summary>
    public const int MaxExactFeatures = 12;

    /// <summary>The largest <see cref="Budget"/>: each coalition is one forward pass.</summary>
    public const int MaxBudget = 1_000_000;

    /// <inheritdoc />
    public override string Method => "kernel-shap";

    /// <summary>
    /// Coalitions to evaluate besides the empty and the full one; null gives 2M + 2048. Capped at 2^M − 2; at least
    /// M + 1 (or every coalition, when there are fewer). Range [1, <see cref="MaxBudget"/>].
    /// </summary>
    public int? Budget { get; init; }

    /// <summary>Seed of the coalition sampling: the same seed gives the same coalitions on every backend; any value.</summary>
    public int Seed { get; init; }

    /// <summary>Compute exact Shapley values by enumerating all 2^M coalitions (M ≤ <see cref="MaxExactFeatures"/>) instead of sampling.</summary>
    public bool Exact { get; init; }

    /// <summary>Words (default) or tokens.</summary>
    public ShapFeatures Features { get; init; } = ShapFeatures.Words;

    /// <summary>Replace masked tokens (default) or drop them from attention.</summary>
    public ShapMasking Masking { get; init; } = ShapMasking.Replace;

    /// <summary>
    /// The token that replaces masked ones with <see cref="ShapMasking.Replace"/>; null = the model's mask token (a decoder without one: its pad token, e.g. &lt;|endoftext|&gt;). Range
    /// [0, vocabulary size), the upper end checked against the model when the explanation runs.
    /// </summary>
    public int? ReplacementTokenId { get; init; }

    /// <summary>Sample coalitions in complementary pairs (default true); false draws each coalition on its own, for comparison.</summary>
    public bool Paired { get; init; } = true;

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, string> Describe()
    {
        var described = new Dictionary<string, string>(base.Describe(), StringComparer.Ordinal)
        {
            ["features"] = Features.ToString().ToLowerInvariant(),
            ["masking"] = Masking == ShapMasking.Drop ? "drop" : ReplacementTokenId is { } id ? $"token {id.ToString(CultureInfo.InvariantCulture)}" : "mask token",
        };
        if (Exact)
        {
            described["exact"] = "true";
        }
        else
        {
            described["budget"] = Budget is { } b ? b.ToString(CultureInfo.InvariantCulture) : "2M + 2048";
            described["seed"] = Seed.ToString(CultureInfo.InvariantCulture);
            described["paired"] = Paired ? "true" : "false";
        }

        return described;
    }

    internal override void Validate()
    {
        base.Validate();
        if (Exact && Budget is not null)
        {
            throw new ArgumentException("kernel-shap: a budget has no meaning with exact enumeration; give one or the other.", nameof(Budget));
        }

        if (Budget is { } budget)
        {
            OptionRange.Check(Method, nameof(Budget), budget, 1, MaxBudget);
        }

        if (!Enum.IsDefined(Features) || !Enum.IsDefined(Masking))
        {
            throw new ArgumentOutOfRangeException(nameof(Features), $"kernel-shap: unknown features {Features} or masking {Masking}.");
        }

        if (ReplacementTokenId is < 0 || (ReplacementTokenId is not null && Masking == ShapMasking.Drop))
        {
            throw new ArgumentOutOfRangeException(nameof(ReplacementTokenId), ReplacementTokenId, "kernel-shap: ReplacementTokenId must lie in [0, vocabulary size), and is used only with ShapMasking.Replace.");
        }
    }
}
