namespace Headlight.Models.Tokenization;

/// <summary>What to do with a text that has more tokens than the model has positions.</summary>
public enum TruncationMode
{
    /// <summary>Do not truncate: a text that is too long throws <see cref="InputTooLongException"/>.</summary>
    None,

    /// <summary>
    /// Drop tokens from the end, keeping every special token ([CLS] and each [SEP]). For a pair,
    /// the shorter text keeps its tokens while it fits in half the room; otherwise both are cut
    /// to about half (the rule of Hugging Face's "longest_first").
    /// </summary>
    LongestFirst,

    /// <summary>
    /// For a pair, drop tokens only from the end of the second text (the document of a
    /// query–document pair), keeping at least one of its tokens; a single text is cut at its end.
    /// </summary>
    OnlySecond,
}
