namespace Headlight.Models.Tokenization;

/// <summary>
/// A tokenised text that does not fit the model's positions and was not allowed to be truncated
/// (or cannot be truncated enough).
/// </summary>
public sealed class InputTooLongException : ArgumentException
{
    /// <summary>Creates the exception for text <paramref name="textIndex"/> of a batch.</summary>
    /// <param name="textIndex">Index of the text in the batch (0 for a single text).</param>
    /// <param name="tokenCount">Tokens the text has, special tokens included.</param>
    /// <param name="limit">The most tokens allowed.</param>
    /// <param name="detail">What the caller can do about it.</param>
    /// <param name="paramName">The argument that held the text.</param>
    public InputTooLongException(int textIndex, int tokenCount, int limit, string detail, string? paramName = null)
        : base($"Text {textIndex} has {tokenCount} tokens (special tokens included), more than the limit of {limit}; {detail}", paramName)
    {
        TextIndex = textIndex;
        TokenCount = tokenCount;
        Limit = limit;
    }

    /// <summary>Index of the text in the batch (0 for a single text).</summary>
    public int TextIndex { get; }

    /// <summary>Tokens the text has, special tokens included.</summary>
    public int TokenCount { get; }

    /// <summary>The most tokens allowed (usually the model's position count).</summary>
    public int Limit { get; }
}
