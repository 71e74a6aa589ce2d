namespace Headlight.Models.Tokenization.HfTokenizerJson;

/// <summary>A tokenizer.json model: one pre-tokenised word → (id, start, end) with offsets into the word.</summary>
internal abstract class TokenModel
{
    protected TokenModel(string[] tokens, Dictionary<string, int> ids)
    {
        Tokens = tokens;
        Ids = ids;
    }

    /// <summary>The vocabulary's token per id.</summary>
    public string[] Tokens { get; }

    public Dictionary<string, int> Ids { get; }

    public abstract void Tokenize(string word, List<(int Id, int Start, int End)> output);
}

internal sealed class WordPieceModel(string[] tokens, Dictionary<string, int> ids, string prefix, int unknownId, int maxChars) : TokenModel(tokens, ids)
{
    private readonly WordPieceVocabulary vocabulary = WordPieceVocabulary.FromTokens(tokens, ids, prefix);

    public string Prefix => prefix;

    public override void Tokenize(string word, List<(int Id, int Start, int End)> output) =>
        vocabulary.Split(word, maxChars, unknownId, output);
}

/// <summary>
/// BPE by merge rank over a word's characters (byte-level words: one character per byte). With
/// ignore_merges a word that is itself in the vocabulary is one token.
/// </summary>
internal sealed class BpeModel : TokenModel
{
    private readonly Dictionary<(int, int), (int Rank, int Id)> merges;
    private readonly int unknownId;
    private readonly bool ignoreMerges;
    private readonly string prefix;
    private readonly string suffix;
    private readonly bool fuseUnknown;

    public BpeModel(string[] tokens, Dictionary<string, int> ids, Dictionary<(int, int), (int Rank, int Id)> merges,
        int unknownId, bool ignoreMerges, string prefix, string suffix, bool fuseUnknown) : base(tokens, ids)
    {
        this.merges = merges;
        this.unknownId = unknownId;
        this.ignoreMerges = ignoreMerges;
        this.prefix = prefix;
        this.suffix = suffix;
        this.fuseUnknown = fuseUnknown;
    }

    public override void Tokenize(string word, List<(int Id, int Start, int End)> output)
    {
        if (word.Length == 0)
        {
            return;
        }

        if (ignoreMerges && Ids.TryGetValue(word, out int whole))
        {
            output.Add((whole, 0, word.Length));
            return;
        }

        // symbols: (id, start, end) per character; a character missing from the vocabulary is the
        // unknown token, or dropped when there is none (as the library does)
        var symbols = new List<(int Id, int Start, int End)>(word.Length);
        for (int i = 0; i < word.Length;)
        {
            int start = i;
            AlignedText.ReadCodePoint(word, ref i);
            string piece = word[start..i];
            if (start > 0)
            {
                piece = prefix + piece;
            }

            if (i == word.Length)
            {
                piece += suffix;
            }

            if (Ids.TryGetValue(piece, out int id))
            {
                symbols.Add((id, start, i));
            }
            else if (unknownId >= 0)
            {
                if (fuseUnknown && symbols.Count > 0 && symbols[^1].Id == unknownId)
                {
                    symbols[^1] = (unknownId, symbols[^1].Start, i);
                }
                else
                {
                    symbols.Add((unknownId, start, i));
                }
            }
        }

        // Merge the lowest-ranked adjacent pair until none is left (leftmost first on ties).
        while (symbols.Count > 1)
        {
            int best = -1, bestRank = int.MaxValue, bestId = -1;
            for (int k = 0; k + 1 < symbols.Count; k++)
            {
                if (merges.TryGetValue((symbols[k].Id, symbols[k + 1].Id), out var merge) && merge.Rank < bestRank)
                {
                    (best, bestRank, bestId) = (k, merge.Rank, merge.Id);
                }
            }

            if (best < 0)
            {
                break;
            }

            symbols[best] = (bestId, symbols[best].Start, symbols[best + 1].End);
            symbols.RemoveAt(best + 1);
        }

        output.AddRange(symbols);
    }
}
