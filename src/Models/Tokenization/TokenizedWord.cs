namespace Headlight.Models.Tokenization;

/// <summary>
/// One word of a tokenised text (a run of letters and digits, or a single punctuation mark or CJK
/// ideograph) and the tokens it became. Attributions per word add up the scores of these tokens.
/// </summary>
/// <param name="Text">The word as written in the original text (before lower-casing or accent stripping).</param>
/// <param name="Normalized">The word as the vocabulary saw it (lower-cased, accents stripped for uncased models).</param>
/// <param name="Segment">0 for the first text, 1 for the second text of a pair.</param>
/// <param name="Span">Where <paramref name="Text"/> is in the text of its segment.</param>
/// <param name="FirstToken">Index of the word's first token in the tokenised text.</param>
/// <param name="TokenCount">How many consecutive tokens the word became (at least 1).</param>
public sealed record TokenizedWord(string Text, string Normalized, int Segment, TextSpan Span, int FirstToken, int TokenCount)
{
    /// <summary>One past the index of the word's last token.</summary>
    public int EndToken => FirstToken + TokenCount;
}
