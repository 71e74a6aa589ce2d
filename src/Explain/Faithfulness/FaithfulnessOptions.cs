using System.Globalization;

namespace Headlight.Explain;

/// <summary>How the faithfulness benchmark takes a word out of the input.</summary>
public enum WordRemoval
{
    /// <summary>
    /// Replace each of the word's tokens by the mask token ([MASK] for BERT models; the pad token where the model has
    /// no mask token), or by <see cref="FaithfulnessOptions.ReplacementTokenId"/>. The length and positions stay.
    /// </summary>
    Mask,

    /// <summary>Delete the word's tokens from the sequence: the text gets shorter and later tokens move up.</summary>
    Remove,
}

/// <summary>Options of <see cref="FaithfulnessBenchmark.Run"/>.</summary>
public sealed record FaithfulnessOptions
{
    /// <summary>How a word is taken out (default <see cref="WordRemoval.Mask"/>).</summary>
    public WordRemoval Removal { get; init; } = WordRemoval.Mask;

    /// <summary>The most random orders <see cref="RandomOrders"/> may ask for.</summary>
    public const int MaxRandomOrders = 1_000;

    /// <summary>The most curve points <see cref="MaxSteps"/> may ask for.</summary>
    public const int MaxCurveSteps = 10_000;

    /// <summary>
    /// The token that replaces removed ones with <see cref="WordRemoval.Mask"/>; null = the model's mask (or pad) token.
    /// Range [0, vocabulary size), the upper end checked against the model when the benchmark runs.
    /// </summary>
    public int? ReplacementTokenId { get; init; }

    /// <summary>Random word orders per case that make the baseline (their curves are averaged); range [1, <see cref="MaxRandomOrders"/>].</summary>
    public int RandomOrders { get; init; } = 5;

    /// <summary>Seed of the random orders; any value.</summary>
    public int Seed { get; init; }

    /// <summary>
    /// Points on each curve besides the start: null = one per word (k = 0, 1, …, M words removed); otherwise at most
    /// this many, k = round(i·M/steps). Range [1, <see cref="MaxCurveSteps"/>].
    /// </summary>
    public int? MaxSteps { get; init; }

    /// <summary>Host memory the batched forward passes may use; range [1, 2^40] (1 TiB).</summary>
    public long MemoryBudgetBytes { get; init; } = 256L << 20;

    /// <summary>Throws for an option out of range.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public void Validate()
    {
        const string method = "faithfulness";
        OptionRange.Check(method, nameof(RandomOrders), RandomOrders, 1, MaxRandomOrders);
        if (MaxSteps is { } steps)
        {
            OptionRange.Check(method, nameof(MaxSteps), steps, 1, MaxCurveSteps);
        }

        OptionRange.Check(method, nameof(MemoryBudgetBytes), MemoryBudgetBytes, 1, OptionRange.MaxMemoryBudgetBytes);
        if (ReplacementTokenId is { } id)
        {
            OptionRange.Check(method, nameof(ReplacementTokenId), id, 0, int.MaxValue);
        }

        if (!Enum.IsDefined(Removal))
        {
            throw new ArgumentOutOfRangeException(nameof(Removal), Removal, $"{method}: unknown removal {Removal}.");
        }
    }

    /// <summary>The options as name and value.</summary>
    public IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["removal"] = Removal == WordRemoval.Mask ? "mask" : "remove",
        ["replacement_token"] = ReplacementTokenId?.ToString(CultureInfo.InvariantCulture) ?? "model mask token",
        ["random_orders"] = RandomOrders.ToString(CultureInfo.InvariantCulture),
        ["seed"] = Seed.ToString(CultureInfo.InvariantCulture),
        ["max_steps"] = MaxSteps?.ToString(CultureInfo.InvariantCulture) ?? "every word",
    };
}

/// <summary>One input of the benchmark: a text and the target explained on it (a similarity to a query, a class, …).</summary>
/// <param name="Text">The text whose words are removed and inserted.</param>
/// <param name="Target">The explained value.</param>
public sealed record FaithfulnessCase(string Text, ITarget Target);

/// <summary>Where a long benchmark run is: the stage, and how many of its items are done.</summary>
/// <param name="Stage">What runs, e.g. <c>case 3/20: integrated-gradients</c>.</param>
/// <param name="Done">Cases finished.</param>
/// <param name="Total">Cases in all.</param>
public sealed record FaithfulnessProgress(string Stage, int Done, int Total);
