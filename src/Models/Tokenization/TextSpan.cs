namespace Headlight.Models.Tokenization;

/// <summary>A range [Start, End) of UTF-16 code units in a text.</summary>
/// <param name="Start">First code unit.</param>
/// <param name="End">One past the last code unit.</param>
public readonly record struct TextSpan(int Start, int End)
{
    /// <summary>Number of code units covered.</summary>
    public int Length => End - Start;

    /// <summary>The covered part of <paramref name="text"/>.</summary>
    public string Of(string text) => text[Start..End];

    /// <inheritdoc/>
    public override string ToString() => $"[{Start}, {End})";
}
