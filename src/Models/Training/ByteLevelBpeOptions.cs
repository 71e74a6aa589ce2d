namespace Headlight.Models.Training;

/// <summary>Settings of <see cref="ByteLevelBpeTrainer"/>.</summary>
public sealed record ByteLevelBpeOptions
{
    /// <summary>
    /// Tokens given the first ids (0, 1, …) in this order and written as special added tokens; they are
    /// cut out of the training text, so no merge crosses them. Default: <c>&lt;|endoftext|&gt;</c> at id 0.
    /// </summary>
    public IReadOnlyList<string> SpecialTokens { get; init; } = ["<|endoftext|>"];

    /// <summary>A pair seen fewer times than this (counting every occurrence in every document) is never merged; training stops early when no pair reaches it. Default 2.</summary>
    public int MinPairFrequency { get; init; } = 2;
}
