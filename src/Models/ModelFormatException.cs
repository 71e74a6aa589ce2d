namespace Headlight.Models;

/// <summary>
/// A model file (weights, graph, configuration or vocabulary) is malformed or does not describe the
/// model it claims to. The message names the file, the field, what was expected and what was found.
/// </summary>
public sealed class ModelFormatException : Exception
{
    /// <summary>Creates the exception for a field of a file.</summary>
    /// <param name="filePath">The file that failed to load.</param>
    /// <param name="field">Where in the file: a JSON key, tensor name, protobuf field path or byte range.</param>
    /// <param name="expected">What a valid file holds there.</param>
    /// <param name="found">What this file holds there.</param>
    /// <param name="innerException">The parser's own exception, if any.</param>
    public ModelFormatException(string filePath, string field, string expected, string found, Exception? innerException = null)
        : base($"{filePath}: {field}: expected {expected}, found {found.TrimEnd('.')}.", innerException)
    {
        FilePath = filePath;
        Field = field;
        Expected = expected;
        Found = found;
    }

    /// <summary>The file that failed to load.</summary>
    public string FilePath { get; }

    /// <summary>Where in the file the problem is: a JSON key, tensor name, protobuf field path or byte range.</summary>
    public string Field { get; }

    /// <summary>What a valid file holds at <see cref="Field"/>.</summary>
    public string Expected { get; }

    /// <summary>What this file holds at <see cref="Field"/>.</summary>
    public string Found { get; }
}
