using System.Globalization;

namespace Headlight.Explain;

/// <summary>
/// Chooses an explanation method and its settings for <see cref="Explainer.Explain(Models.Model, Models.Tokenization.TokenBatch, ITarget, AttributionOptions, IProgress{Models.OperationProgress}, CancellationToken)"/>. Every gradient
/// method differentiates with respect to the word (token) embeddings <c>e_t</c>; position and token-type
/// embeddings are held fixed.
/// </summary>
public abstract record AttributionOptions
{
    private protected AttributionOptions() { }

    /// <summary>The method's name, e.g. <c>saliency</c>.</summary>
    public abstract string Method { get; }

    /// <summary>
    /// Device memory one batch of rows may use for the saved forward state and the gradient buffers
    /// (default 256 MiB); rows that need more are split into batches. Range [1, 2^40] (1 TiB).
    /// </summary>
    public long MemoryBudgetBytes { get; init; } = 256L << 20;

    /// <summary>The settings as name and value, for reports.</summary>
    public virtual IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["memory_budget_bytes"] = MemoryBudgetBytes.ToString(CultureInfo.InvariantCulture),
    };

    internal virtual void Validate()
    {
        OptionRange.Check(Method, nameof(MemoryBudgetBytes), MemoryBudgetBytes, 1, OptionRange.MaxMemoryBudgetBytes);
    }
}

/// <summary>Saliency: the gradient's L2 norm per token, <c>score[t] = ‖∂F/∂e_t‖₂</c>.</summary>
public sealed record SaliencyOptions : AttributionOptions
{
    /// <inheritdoc />
    public override string Method => "saliency";
}

/// <summary>Gradient × input: <c>score[t] = Σ_d e_{t,d}·∂F/∂e_{t,d}</c> (signed).</summary>
public sealed record GradientXInputOptions : AttributionOptions
{
    /// <inheritdoc />
    public override string Method => "gradient-x-input";
}

/// <summary>
/// SmoothGrad (Smilkov et al. 2017): the gradient averaged over <see cref="Samples"/> noisy copies of the
/// word embeddings, all in one batch; <c>score[t] = ‖mean_n ∂F/∂e_t(e + ε_n)‖₂</c>. The noise is Gaussian with
/// standard deviation <see cref="NoiseLevel"/> × the root-mean-square of the row's word embeddings (the
/// embedding's scale), on real tokens only, drawn from <see cref="Seed"/>.
/// </summary>
public sealed record SmoothGradOptions : AttributionOptions
{
    /// <inheritdoc />
    public override string Method => "smoothgrad";

    /// <summary>The most noisy copies per row <see cref="Samples"/> may ask for.</summary>
    public const int MaxSamples = 100_000;

    /// <summary>The largest <see cref="NoiseLevel"/>.</summary>
    public const double MaxNoiseLevel = 1_000;

    /// <summary>Noisy copies per row (default 16); range [1, <see cref="MaxSamples"/>].</summary>
    public int Samples { get; init; } = 16;

    /// <summary>Noise standard deviation relative to the embedding's scale (default 0.1; 0 gives saliency); range [0, <see cref="MaxNoiseLevel"/>].</summary>
    public double NoiseLevel { get; init; } = 0.1;

    /// <summary>Seed of the noise; any value.</summary>
    public int Seed { get; init; }

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string>(base.Describe(), StringComparer.Ordinal)
    {
        ["samples"] = Samples.ToString(CultureInfo.InvariantCulture),
        ["noise_level"] = NoiseLevel.ToString("R", CultureInfo.InvariantCulture),
        ["seed"] = Seed.ToString(CultureInfo.InvariantCulture),
    };

    internal override void Validate()
    {
        base.Validate();
        OptionRange.Check(Method, nameof(Samples), Samples, 1, MaxSamples);
        OptionRange.Check(Method, nameof(NoiseLevel), NoiseLevel, 0, MaxNoiseLevel);
    }
}

/// <summary>What integrated gradients starts from: x' per token.</summary>
public enum BaselineKind
{
    /// <summary>All-zero word embeddings.</summary>
    Zero,

    /// <summary>The padding token's embedding at every position.</summary>
    Pad,

    /// <summary>The mask token's embedding ([MASK]) at every position (BERT models with a tokenizer).</summary>
    Mask,
}

/// <summary>How the path integral over α ∈ [0, 1] is approximated.</summary>
public enum QuadratureRule
{
    /// <summary>Gauss–Legendre nodes and weights: exact for polynomials of degree 2n − 1.</summary>
    GaussLegendre,

    /// <summary>Midpoint Riemann sum, α = (k + ½)/n.</summary>
    RiemannMiddle,

    /// <summary>Left Riemann sum, α = k/n.</summary>
    RiemannLeft,

    /// <summary>Right Riemann sum, α = (k + 1)/n.</summary>
    RiemannRight,

    /// <summary>Trapezoid rule on α = k/(n − 1) (n ≥ 2).</summary>
    RiemannTrapezoid,
}

/// <summary>
/// Integrated gradients (Sundararajan et al. 2017): <c>IG_{t,d} = (e − e')_{t,d}·∫₀¹ ∂F/∂e_{t,d}(e' + α(e − e')) dα</c>,
/// with only the word embeddings interpolated; <c>score[t] = Σ_d IG_{t,d}</c>. All α steps of all rows run
/// batched, in batches that fit <see cref="AttributionOptions.MemoryBudgetBytes"/>. The check figure is
/// the completeness delta <c>Σ IG − (F(x) − F(x'))</c>, as Captum reports it.
/// </summary>
public sealed record IntegratedGradientsOptions : AttributionOptions
{
    /// <inheritdoc />
    public override string Method => "integrated-gradients";

    /// <summary>The most quadrature nodes <see cref="Steps"/> may ask for.</summary>
    public const int MaxSteps = 100_000;

    /// <summary>Quadrature nodes (default 64); range [1, <see cref="MaxSteps"/>], [2, <see cref="MaxSteps"/>] for the trapezoid rule.</summary>
    public int Steps { get; init; } = 64;

    /// <summary>The baseline x' (default all-zero embeddings).</summary>
    public BaselineKind Baseline { get; init; } = BaselineKind.Zero;

    /// <summary>
    /// A token whose embedding is the baseline at every position; overrides <see cref="Baseline"/> when set. Range
    /// [0, vocabulary size), the upper end checked against the model when the explanation runs.
    /// </summary>
    public int? BaselineTokenId { get; init; }

    /// <summary>The quadrature rule (default Gauss–Legendre).</summary>
    public QuadratureRule Rule { get; init; } = QuadratureRule.GaussLegendre;

    /// <summary>
    /// Keep special tokens ([CLS], [SEP], BOS) at their own embedding in the baseline, so that only the
    /// text's tokens are interpolated (their scores are then 0). Default false: every token is interpolated.
    /// </summary>
    public bool KeepSpecialTokens { get; init; }

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string>(base.Describe(), StringComparer.Ordinal)
    {
        ["steps"] = Steps.ToString(CultureInfo.InvariantCulture),
        ["baseline"] = BaselineTokenId is { } id ? $"token {id.ToString(CultureInfo.InvariantCulture)}" : Baseline.ToString().ToLowerInvariant(),
        ["rule"] = Rule.ToString(),
        ["keep_special_tokens"] = KeepSpecialTokens ? "true" : "false",
    };

    internal override void Validate()
    {
        base.Validate();
        OptionRange.Check(Method, nameof(Steps), Steps, Rule == QuadratureRule.RiemannTrapezoid ? 2 : 1, MaxSteps);
        if (BaselineTokenId is { } id)
        {
            OptionRange.Check(Method, nameof(BaselineTokenId), id, 0, int.MaxValue);
        }

        if (!Enum.IsDefined(Baseline) || !Enum.IsDefined(Rule))
        {
            throw new ArgumentOutOfRangeException(nameof(Baseline), $"integrated gradients: unknown baseline {Baseline} or rule {Rule}.");
        }
    }
}
