using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Headlight.Models.Tokenization;

namespace Headlight.Models.Training;

/// <summary>
/// A text corpus tokenised once into one stream of ids (documents joined by a separator), split by
/// documents into a training part and a held-out tail, and cut into next-token windows for training
/// and evaluation.
/// </summary>
/// <remarks>
/// Each document is encoded with <see cref="ITextTokenizer.Encode"/> (so a tokenizer's post-processor
/// tokens, e.g. BERT's [CLS]/[SEP], are kept) and, when a separator is given, followed by it. The ids
/// can be cached: the cache file's name is a SHA-256 of the inputs' names and contents, the
/// tokenizer's definition and the separator, so editing any of them makes a new one; a cache file
/// whose header, key or size does not check out is rebuilt, never read.
/// </remarks>
public sealed class TokenCorpus
{
    private const uint Magic = 0x43544C48; // "HLTC"
    private const int FormatVersion = 1;
    private const int HeaderBytes = 4 + 4 + 32 + 4 + 4;

    private readonly int[] tokens;
    private readonly int trainTokens;

    private TokenCorpus(string source, int[] tokens, int[] documentEnds, double heldOutFraction, string? cachePath, bool fromCache)
    {
        Source = source;
        this.tokens = tokens;
        Documents = documentEnds.Length;
        CachePath = cachePath;
        FromCache = fromCache;

        // The last ⌈fraction · documents⌉ documents are held out, keeping at least one for training.
        int heldOut = heldOutFraction <= 0 ? 0 : Math.Min(Documents - 1, (int)Math.Ceiling(heldOutFraction * Documents));
        HeldOutDocuments = Math.Max(0, heldOut);
        int firstHeldOut = Documents - HeldOutDocuments;
        trainTokens = firstHeldOut == 0 ? 0 : documentEnds[firstHeldOut - 1];
    }

    /// <summary>The file or folder the corpus was read from.</summary>
    public string Source { get; }

    /// <summary>Number of documents (lines of a .txt file, or files of a folder; empty ones skipped).</summary>
    public int Documents { get; }

    /// <summary>Number of documents in the held-out tail.</summary>
    public int HeldOutDocuments { get; }

    /// <summary>Ids in the training part (separators included).</summary>
    public int TrainTokens => trainTokens;

    /// <summary>Ids in the held-out part (separators included).</summary>
    public int HeldOutTokens => tokens.Length - trainTokens;

    /// <summary>The cache file, or null when no cache directory was given.</summary>
    public string? CachePath { get; }

    /// <summary>True when the ids were read from a valid cache file instead of tokenised.</summary>
    public bool FromCache { get; }

    /// <summary>The training part's ids.</summary>
    public ReadOnlySpan<int> TrainIds => tokens.AsSpan(0, trainTokens);

    /// <summary>The held-out part's ids.</summary>
    public ReadOnlySpan<int> HeldOutIds => tokens.AsSpan(trainTokens);

    /// <summary>Reads and tokenises a corpus, or reads its ids from the cache.</summary>
    /// <param name="path">A .txt file (one document per line) or a folder of .txt files (one document per file, in ordinal name order).</param>
    /// <param name="tokenizer">Encodes each document.</param>
    /// <param name="cacheDirectory">Where the id file is kept (created when missing); null to tokenise every time.</param>
    /// <param name="heldOutFraction">Fraction of documents held out at the end, in [0, 1).</param>
    /// <param name="separatorId">An id appended after every document (e.g. &lt;|endoftext|&gt;), or null for none.</param>
    /// <exception cref="FileNotFoundException">Neither a file nor a folder is at <paramref name="path"/>.</exception>
    /// <exception cref="ArgumentException">The corpus holds no document, or the folder no .txt file.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="heldOutFraction"/> is outside [0, 1) or <paramref name="separatorId"/> is not a vocabulary id.</exception>
    public static TokenCorpus Load(string path, ITextTokenizer tokenizer, string? cacheDirectory, double heldOutFraction = 0.05, int? separatorId = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(tokenizer);
        if (!(heldOutFraction >= 0 && heldOutFraction < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(heldOutFraction), heldOutFraction, "Expected a fraction in [0, 1).");
        }

        if (separatorId is { } sep && (sep < 0 || sep >= tokenizer.VocabularySize))
        {
            throw new ArgumentOutOfRangeException(nameof(separatorId), sep, $"Expected an id in [0, {tokenizer.VocabularySize}).");
        }

        string[] files = Directory.Exists(path) ? Directory.GetFiles(path, "*.txt").Order(StringComparer.Ordinal).ToArray()
            : File.Exists(path) ? [path]
            : throw new FileNotFoundException($"No corpus file or folder at {path}.", path);
        if (files.Length == 0)
        {
            throw new ArgumentException($"The corpus folder {path} holds no .txt file.", nameof(path));
        }

        byte[][] contents = files.Select(File.ReadAllBytes).ToArray();
        string? cachePath = null;
        if (cacheDirectory is not null)
        {
            byte[] key = CacheKey(files, contents, tokenizer, separatorId);
            Directory.CreateDirectory(cacheDirectory);
            cachePath = Path.Combine(cacheDirectory, $"{Convert.ToHexStringLower(key)[..32]}.tokens");
            if (TryReadCache(cachePath, key, tokenizer.VocabularySize) is var (cachedTokens, cachedEnds))
            {
                return new TokenCorpus(path, cachedTokens, cachedEnds, heldOutFraction, cachePath, fromCache: true);
            }

            (int[] ids, int[] ends) = Tokenise(path, Directory.Exists(path), contents, tokenizer, separatorId);
            WriteCache(cachePath, key, ids, ends);
            return new TokenCorpus(path, ids, ends, heldOutFraction, cachePath, fromCache: false);
        }

        (int[] tokens, int[] documentEnds) = Tokenise(path, Directory.Exists(path), contents, tokenizer, separatorId);
        return new TokenCorpus(path, tokens, documentEnds, heldOutFraction, null, fromCache: false);
    }

    /// <summary>
    /// Fills <paramref name="inputs"/> with <c>inputs.Length / length</c> windows drawn at uniformly random
    /// starts in the training part: each window is <paramref name="length"/> + 1 contiguous ids w, with
    /// inputs = w[0..length) and targets = w[1..length].
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is not positive, or the spans' lengths differ or are not a multiple of it.</exception>
    /// <exception cref="ArgumentException">The training part has fewer than <paramref name="length"/> + 1 ids (the message names the corpus and both sizes).</exception>
    public void SampleWindows(Random random, int length, Span<int> inputs, Span<int> targets)
    {
        ArgumentNullException.ThrowIfNull(random);
        CheckShapes(length, inputs, targets);
        RequireWindow("training", trainTokens, length);
        ReadOnlySpan<int> train = TrainIds;
        for (int w = 0; w < inputs.Length / length; w++)
        {
            int start = random.Next(trainTokens - length);
            train.Slice(start, length).CopyTo(inputs.Slice(w * length, length));
            train.Slice(start + 1, length).CopyTo(targets.Slice(w * length, length));
        }
    }

    /// <summary>Number of windows <see cref="HeldOutWindows"/> gives: min(<paramref name="maxWindows"/>, (HeldOutTokens − 1) / <paramref name="length"/>).</summary>
    public int HeldOutWindowCount(int length, int maxWindows)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        ArgumentOutOfRangeException.ThrowIfNegative(maxWindows);
        return HeldOutTokens == 0 ? 0 : Math.Min(maxWindows, (HeldOutTokens - 1) / length);
    }

    /// <summary>
    /// Writes the held-out part's first windows, the same every call: window k's inputs are held-out ids
    /// [k·length, (k+1)·length) and its targets those one further on, so inputs never overlap. Writes
    /// min(<see cref="HeldOutWindowCount"/>, inputs.Length / length) windows and returns that count.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is not positive, or the spans' lengths differ or are not a multiple of it.</exception>
    /// <exception cref="ArgumentException">The held-out part has fewer than <paramref name="length"/> + 1 ids (the message names the corpus and both sizes).</exception>
    public int HeldOutWindows(int length, int maxWindows, Span<int> inputs, Span<int> targets)
    {
        CheckShapes(length, inputs, targets);
        RequireWindow("held-out", HeldOutTokens, length);
        int count = Math.Min(HeldOutWindowCount(length, maxWindows), inputs.Length / length);
        ReadOnlySpan<int> heldOut = HeldOutIds;
        for (int w = 0; w < count; w++)
        {
            heldOut.Slice(w * length, length).CopyTo(inputs.Slice(w * length, length));
            heldOut.Slice(w * length + 1, length).CopyTo(targets.Slice(w * length, length));
        }

        return count;
    }

    private static void CheckShapes(int length, Span<int> inputs, Span<int> targets)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        if (inputs.Length != targets.Length || inputs.Length % length != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(inputs), $"inputs ({inputs.Length}) and targets ({targets.Length}) must be equally long and a multiple of the window length {length}.");
        }
    }

    private void RequireWindow(string part, int available, int length)
    {
        if (available < length + 1)
        {
            throw new ArgumentException($"Corpus {Source}: its {part} part has {available} tokens, too few for one window of {length} + 1 tokens ({Documents} documents, {HeldOutDocuments} held out).", nameof(length));
        }
    }

    private static (int[] Tokens, int[] DocumentEnds) Tokenise(string path, bool folder, byte[][] contents, ITextTokenizer tokenizer, int? separatorId)
    {
        var tokens = new List<int>();
        var ends = new List<int>();
        void Add(string document)
        {
            if (document.Length == 0)
            {
                return;
            }

            tokens.AddRange(tokenizer.Encode(document).Ids);
            if (separatorId is { } sep)
            {
                tokens.Add(sep);
            }

            ends.Add(tokens.Count);
        }

        var utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);
        foreach (byte[] bytes in contents)
        {
            string text = utf8.GetString(bytes).TrimStart('\uFEFF');
            if (folder)
            {
                Add(text.Trim('\r', '\n'));
            }
            else
            {
                foreach (string line in text.Split('\n'))
                {
                    Add(line.TrimEnd('\r'));
                }
            }
        }

        if (ends.Count == 0)
        {
            throw new ArgumentException($"The corpus {path} holds no non-empty document.", nameof(path));
        }

        return (tokens.ToArray(), ends.ToArray());
    }

    private static byte[] CacheKey(string[] files, byte[][] contents, ITextTokenizer tokenizer, int? separatorId)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string s)
        {
            byte[] b = Encoding.UTF8.GetBytes(s);
            hash.AppendData(BitConverter.GetBytes(b.Length));
            hash.AppendData(b);
        }

        Text($"headlight token corpus v{FormatVersion}; separator {separatorId?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}; {files.Length} files");
        for (int i = 0; i < files.Length; i++)
        {
            Text(Path.GetFileName(files[i]));
            hash.AppendData(BitConverter.GetBytes(contents[i].LongLength));
            hash.AppendData(contents[i]);
        }

        // A tokenizer read from a file is its file; any other is its type and vocabulary.
        if (tokenizer is HfTokenizer { Source: var source } && File.Exists(source))
        {
            Text("tokenizer.json");
            hash.AppendData(File.ReadAllBytes(source));
        }
        else
        {
            Text(tokenizer.GetType().FullName ?? "tokenizer");
            for (int id = 0; id < tokenizer.VocabularySize; id++)
            {
                Text(tokenizer.GetToken(id));
            }
        }

        return hash.GetHashAndReset();
    }

    // Layout: magic, version, key[32], documents, tokens (int32 little-endian), then the documents'
    // end offsets and the ids.
    private static void WriteCache(string cachePath, byte[] key, int[] tokens, int[] ends)
    {
        var bytes = new byte[HeaderBytes + 4L * (ends.Length + tokens.Length)];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(4), FormatVersion);
        key.CopyTo(bytes, 8);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(40), ends.Length);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(44), tokens.Length);
        Span<byte> body = bytes.AsSpan(HeaderBytes);
        WriteInts(ends, body);
        WriteInts(tokens, body[(4 * ends.Length)..]);

        // Written aside and moved, so that a reader never sees half a file.
        string temporary = $"{cachePath}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        File.WriteAllBytes(temporary, bytes);
        File.Move(temporary, cachePath, overwrite: true);
    }

    private static (int[] Tokens, int[] Ends)? TryReadCache(string cachePath, byte[] key, int vocabularySize)
    {
        if (!File.Exists(cachePath))
        {
            return null;
        }

        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(cachePath);
        }
        catch (IOException)
        {
            return null;
        }

        if (bytes.Length < HeaderBytes
            || BinaryPrimitives.ReadUInt32LittleEndian(bytes) != Magic
            || BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(4)) != FormatVersion
            || !bytes.AsSpan(8, 32).SequenceEqual(key))
        {
            return null;
        }

        int documents = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(40));
        int count = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(44));
        if (documents <= 0 || count < 0 || bytes.Length != HeaderBytes + 4L * ((long)documents + count))
        {
            return null;
        }

        int[] ends = ReadInts(bytes.AsSpan(HeaderBytes, 4 * documents));
        int[] tokens = ReadInts(bytes.AsSpan(HeaderBytes + (4 * documents)));
        int previous = 0;
        foreach (int end in ends)
        {
            if (end < previous || end > count)
            {
                return null;
            }

            previous = end;
        }

        if (previous != count || tokens.Any(t => (uint)t >= (uint)vocabularySize))
        {
            return null;
        }

        return (tokens, ends);
    }

    private static void WriteInts(int[] values, Span<byte> destination)
    {
        if (BitConverter.IsLittleEndian)
        {
            MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(destination);
            return;
        }

        for (int i = 0; i < values.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(destination[(4 * i)..], values[i]);
        }
    }

    private static int[] ReadInts(ReadOnlySpan<byte> source)
    {
        var values = new int[source.Length / 4];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = BinaryPrimitives.ReadInt32LittleEndian(source[(4 * i)..]);
        }

        return values;
    }
}
