using System.Text;

namespace Headlight.Models.Tokenization;

/// <summary>
/// A WordPiece vocabulary (vocab.txt: one token per line, the line number is the id) and BERT's
/// greedy longest-match-first split of one word into pieces.
/// </summary>
/// <remarks>
/// The split is written here rather than taken from Microsoft.ML.Tokenizers' WordPieceTokenizer:
/// that one measures a word's length in UTF-16 units, so a word with characters outside the
/// Basic Multilingual Plane (emoji, math letters) reaches the 100-character [UNK] limit earlier
/// than in BERT, which counts code points. Looking pieces up as spans in two dictionaries
/// (word starts, and continuations keyed without their "##") also keeps the loop allocation-free.
/// </remarks>
internal sealed class WordPieceVocabulary
{
    private readonly string[] tokens;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> starts;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> continuations;
    private readonly Dictionary<string, int> ids;

    // No candidate longer than the longest entry can match: the search starts there.
    private readonly int longestStart;
    private readonly int longestContinuation;

    private WordPieceVocabulary(string[] tokens, Dictionary<string, int> ids, string continuingSubwordPrefix)
    {
        this.tokens = tokens;
        this.ids = ids;
        var continuing = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var (token, id) in ids)
        {
            if (token.Length > continuingSubwordPrefix.Length && token.StartsWith(continuingSubwordPrefix, StringComparison.Ordinal))
            {
                continuing[token[continuingSubwordPrefix.Length..]] = id;
            }
        }

        starts = ids.GetAlternateLookup<ReadOnlySpan<char>>();
        continuations = continuing.GetAlternateLookup<ReadOnlySpan<char>>();
        longestStart = ids.Keys.Max(t => t.Length);
        longestContinuation = continuing.Count == 0 ? 0 : continuing.Keys.Max(t => t.Length);
    }

    /// <summary>A vocabulary from tokens indexed by id (tokenizer.json's WordPiece vocab, already checked dense and unique).</summary>
    internal static WordPieceVocabulary FromTokens(string[] tokens, Dictionary<string, int> ids, string continuingSubwordPrefix) =>
        new(tokens, ids, continuingSubwordPrefix);

    /// <summary>Number of tokens.</summary>
    public int Count => tokens.Length;

    /// <summary>The token with id <paramref name="id"/>, which the caller has range-checked.</summary>
    public string this[int id] => tokens[id];

    /// <summary>Looks a whole token up.</summary>
    public bool TryGetId(string token, out int id) => ids.TryGetValue(token, out id);

    /// <summary>
    /// Reads vocab.txt from <paramref name="stream"/> (UTF-8, \n or \r\n line ends). Empty input,
    /// empty lines, duplicate tokens and invalid UTF-8 throw <see cref="VocabularyFormatException"/>
    /// naming <paramref name="source"/>.
    /// </summary>
    public static WordPieceVocabulary Load(Stream stream, string source, string continuingSubwordPrefix)
    {
        var tokens = new List<string>(32_000);
        var ids = new Dictionary<string, int>(32_000, StringComparer.Ordinal);
        var encoding = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        using var reader = new StreamReader(stream, encoding, detectEncodingFromByteOrderMarks: false, leaveOpen: true);
        try
        {
            // A UTF-8 byte order mark at the start is tolerated (the decoder passes it through).
            // Empty lines are allowed only at the end of the file.
            string? line;
            int emptyLine = 0;
            while ((line = reader.ReadLine()) is not null)
            {
                if (tokens.Count == 0 && line.StartsWith('\uFEFF'))
                {
                    line = line[1..];
                }

                int lineNumber = tokens.Count + 1;
                if (line.Length == 0)
                {
                    emptyLine = emptyLine == 0 ? lineNumber : emptyLine;
                    continue;
                }

                if (emptyLine != 0)
                {
                    throw new VocabularyFormatException(
                        source, $"line {emptyLine} is empty (every line must hold one token; ids are line numbers)", emptyLine, string.Empty);
                }

                if (!ids.TryAdd(line, tokens.Count))
                {
                    throw new VocabularyFormatException(
                        source, $"token '{line}' on line {lineNumber} repeats line {ids[line] + 1}", lineNumber, line);
                }

                tokens.Add(line);
            }
        }
        catch (DecoderFallbackException e)
        {
            throw new VocabularyFormatException(source, $"is not valid UTF-8 after line {tokens.Count}", tokens.Count + 1, null, e);
        }

        if (tokens.Count == 0)
        {
            throw new VocabularyFormatException(source, "is empty", null, null);
        }

        return new WordPieceVocabulary([.. tokens], ids, continuingSubwordPrefix);
    }

    /// <summary>
    /// Splits one normalised word into pieces, greedy longest match first; a piece after the first
    /// is looked up with the continuing-subword prefix. A word longer than
    /// <paramref name="maxCodePoints"/> code points, or one with no full split, becomes the single
    /// piece <paramref name="unknownId"/> covering the whole word.
    /// </summary>
    /// <param name="word">The normalised word.</param>
    /// <param name="maxCodePoints">BERT's max_input_chars_per_word.</param>
    /// <param name="unknownId">The [UNK] id.</param>
    /// <param name="pieces">Receives (id, start, end) with start/end as char offsets into <paramref name="word"/>.</param>
    public void Split(ReadOnlySpan<char> word, int maxCodePoints, int unknownId, List<(int Id, int Start, int End)> pieces)
    {
        int codePoints = word.Length;
        foreach (char c in word)
        {
            // Words hold only well-formed surrogate pairs; count each pair once.
            if (char.IsLowSurrogate(c))
            {
                codePoints--;
            }
        }

        if (codePoints > maxCodePoints)
        {
            pieces.Add((unknownId, 0, word.Length));
            return;
        }

        int first = pieces.Count;
        int start = 0;
        while (start < word.Length)
        {
            int end = Math.Min(word.Length, start + (start == 0 ? longestStart : longestContinuation));
            if (end < word.Length && char.IsLowSurrogate(word[end]))
            {
                end--; // never cut a surrogate pair
            }

            int id = -1;
            while (end > start)
            {
                ReadOnlySpan<char> candidate = word[start..end];
                if (start == 0 ? starts.TryGetValue(candidate, out id) : continuations.TryGetValue(candidate, out id))
                {
                    break;
                }

                id = -1;
                end -= end - start >= 2 && char.IsLowSurrogate(word[end - 1]) ? 2 : 1;
            }

            if (id < 0)
            {
                pieces.RemoveRange(first, pieces.Count - first);
                pieces.Add((unknownId, 0, word.Length));
                return;
            }

            pieces.Add((id, start, end));
            start = end;
        }
    }
}
