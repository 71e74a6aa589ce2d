using System.Globalization;

namespace Headlight.Explain.Census;

/// <summary>
/// Part-of-speech-tagged sentences for the syntactic roles (det_noun, adj_noun, prep_object, verb_subject):
/// Brown-style <c>.tsv</c> files, one <c>token&lt;TAB&gt;tag</c> per line and a blank line after each sentence.
/// The pairs each sentence gives are described in the README ("Head census", syntactic roles).
/// </summary>
public sealed class TaggedCorpus
{
    /// <summary>Files <see cref="FromDirectory"/> uses by default: the last this many in name order.</summary>
    public const int DefaultHeldOutFiles = 10;

    /// <summary>Sentences <see cref="FromDirectory"/> keeps by default (the first, in file order).</summary>
    public const int DefaultMaxSentences = 500;

    private TaggedCorpus(string name, IReadOnlyList<string> files, List<List<TaggedWord>> sentences)
    {
        Name = name;
        Files = files;
        Sentences = sentences;
    }

    /// <summary>The folder (or name) it was read from.</summary>
    public string Name { get; }

    /// <summary>The file names used, in order.</summary>
    public IReadOnlyList<string> Files { get; }

    internal List<List<TaggedWord>> Sentences { get; }

    /// <summary>
    /// Reads the last <paramref name="files"/> <c>.tsv</c> files of <paramref name="directory"/> in ordinal name
    /// order (held out: a model may be trained on the text of the others; for Brown, cp29 and cr01–cr09), keeping
    /// the first <paramref name="maxSentences"/> sentences that have at least one pair.
    /// </summary>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="ArgumentException">It holds no .tsv file, or they give no pair.</exception>
    /// <exception cref="FormatException">A line is not token, tab, tag.</exception>
    public static TaggedCorpus FromDirectory(string directory, int files = DefaultHeldOutFiles, int maxSentences = DefaultMaxSentences)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        OptionRange.Check("tagged corpus", nameof(files), files, 1, 100_000);
        OptionRange.Check("tagged corpus", nameof(maxSentences), maxSentences, 1, 1_000_000);
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"Tagged text folder '{directory}' does not exist.");
        }

        var all = Directory.GetFiles(directory, "*.tsv").OrderBy(Path.GetFileName, StringComparer.Ordinal).ToArray();
        if (all.Length == 0)
        {
            throw new ArgumentException($"Tagged text folder '{directory}' holds no .tsv file (token<TAB>tag per line).", nameof(directory));
        }

        var chosen = all.Skip(Math.Max(0, all.Length - files)).ToArray();
        var sentences = new List<List<TaggedWord>>();
        foreach (string path in chosen)
        {
            foreach (var sentence in SyntacticPairs.ReadSentences(File.ReadAllText(path), path))
            {
                if (sentences.Count < maxSentences && SyntacticPairs.Extract(sentence).Count > 0)
                {
                    sentences.Add(sentence);
                }
            }
        }

        if (sentences.Count == 0)
        {
            throw new ArgumentException($"Tagged text folder '{directory}': no sentence of {string.Join(", ", chosen.Select(Path.GetFileName))} gives a syntactic pair.", nameof(directory));
        }

        return new TaggedCorpus(directory, chosen.Select(f => Path.GetFileName(f)!).ToArray(), sentences);
    }

    internal static TaggedCorpus FromSentences(string name, List<List<TaggedWord>> sentences) => new(name, [name], sentences);

    /// <summary>A one-line description: files and sentences.</summary>
    public override string ToString()
        => string.Create(CultureInfo.InvariantCulture, $"{Name} ({string.Join(", ", Files)}): {Sentences.Count} sentences");
}
