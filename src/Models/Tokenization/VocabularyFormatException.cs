namespace Headlight.Models.Tokenization;

/// <summary>A vocabulary file that cannot be used: empty, malformed, or missing a required token.</summary>
public sealed class VocabularyFormatException : FormatException
{
    /// <summary>Creates the exception; the message names <paramref name="source"/> and the problem.</summary>
    /// <param name="source">The file path or stream name the vocabulary came from.</param>
    /// <param name="problem">What is wrong, phrased to follow the source name.</param>
    /// <param name="lineNumber">The 1-based line at fault, if one is.</param>
    /// <param name="token">The token at fault, if one is.</param>
    /// <param name="inner">The underlying error, if any.</param>
    public VocabularyFormatException(string source, string problem, int? lineNumber, string? token, Exception? inner = null)
        : base($"Vocabulary '{source}' {problem}.", inner)
    {
        VocabularySource = source;
        LineNumber = lineNumber;
        Token = token;
    }

    /// <summary>The file path or stream name the vocabulary came from.</summary>
    public string VocabularySource { get; }

    /// <summary>The 1-based line at fault, or null when the problem is not on one line.</summary>
    public int? LineNumber { get; }

    /// <summary>The token at fault (a duplicate, or a special token that is missing), or null.</summary>
    public string? Token { get; }
}
