using System.Buffers;
using System.Text;
using System.Text.Json;

namespace Headlight.Models.Tokenization;

/// <summary>
/// A byte-level BPE vocabulary (GPT-2's vocab.json / encoder.json): for every id its vocabulary
/// string in GPT-2's byte alphabet ("Ġhello"), the bytes that string stands for, and a readable
/// form of those bytes.
/// </summary>
/// <remarks>
/// The byte alphabet maps each byte to one printable character: the bytes of '!'..'~', '¡'..'¬'
/// and '®'..'ÿ' to themselves, the other 68 (controls, space, 0x7F–0xA0, 0xAD) in ascending order
/// to U+0100, U+0101, … — so a space is 'Ġ' (U+0120) and a newline 'Ċ'. A vocabulary string made
/// of other characters (an added special token) stands for its own UTF-8 bytes.
/// </remarks>
internal sealed class BpeVocabulary
{
    /// <summary>GPT-2's end-of-text token, also its padding and (optionally) beginning-of-sequence token.</summary>
    public const string EndOfText = "<|endoftext|>";

    private static readonly char[] ByteToChar = BuildByteAlphabet();
    private static readonly Dictionary<char, byte> CharToByte = ByteToChar.Select((c, b) => (c, b)).ToDictionary(p => p.c, p => (byte)p.b);

    private readonly string[] tokens;
    private readonly byte[][] bytes;
    private readonly string[] readable;
    private readonly Dictionary<string, int> ids;
    private readonly int[] byteIds;

    private BpeVocabulary(string[] tokens, Dictionary<string, int> ids, string source, string endOfText = EndOfText)
    {
        this.tokens = tokens;
        this.ids = ids;
        bytes = new byte[tokens.Length][];
        readable = new string[tokens.Length];
        for (int id = 0; id < tokens.Length; id++)
        {
            byte[]? alphabet = ToBytes(tokens[id]);
            bytes[id] = alphabet ?? Encoding.UTF8.GetBytes(tokens[id]);
            readable[id] = alphabet is null ? tokens[id] : Readable(alphabet);
        }

        // Every byte needs a token of its own, or some text could not be encoded.
        byteIds = new int[256];
        for (int b = 0; b < 256; b++)
        {
            string single = ByteToChar[b].ToString();
            byteIds[b] = ids.TryGetValue(single, out int id)
                ? id
                : throw new VocabularyFormatException(source, $"has no token '{single}' for byte 0x{b:X2} (a byte-level BPE vocabulary needs all 256)", null, single);
        }

        EndOfTextId = ids.TryGetValue(endOfText, out int eot)
            ? eot
            : throw new VocabularyFormatException(source, $"has no end-of-text token '{endOfText}'", null, endOfText);
    }

    /// <summary>Number of tokens (ids run from 0 to this minus one).</summary>
    public int Count => tokens.Length;

    /// <summary>Id of <see cref="EndOfText"/>.</summary>
    public int EndOfTextId { get; }

    /// <summary>The vocabulary string of <paramref name="id"/> (byte alphabet), which the caller has range-checked.</summary>
    public string Token(int id) => tokens[id];

    /// <summary>The bytes <paramref name="id"/> stands for.</summary>
    public ReadOnlySpan<byte> Bytes(int id) => bytes[id];

    /// <summary>The bytes of <paramref name="id"/> as text; bytes of an incomplete or invalid UTF-8 sequence appear as &lt;0xHH&gt;.</summary>
    public string Readable(int id) => readable[id];

    /// <summary>The id of the single-byte token for <paramref name="value"/>.</summary>
    public int ByteId(byte value) => byteIds[value];

    /// <summary>Looks up a vocabulary string (byte alphabet, exact).</summary>
    public bool TryGetId(string token, out int id) => ids.TryGetValue(token, out id);

    /// <summary>The byte-alphabet string of <paramref name="value"/> ("Ġhello" for " hello").</summary>
    public static string ToAlphabet(ReadOnlySpan<byte> value)
    {
        var chars = new char[value.Length];
        for (int i = 0; i < value.Length; i++)
        {
            chars[i] = ByteToChar[value[i]];
        }

        return new string(chars);
    }

    /// <summary>Builds a vocabulary from the bytes of each id (ids 0 to n−1), as tiktoken data gives them.</summary>
    public static BpeVocabulary FromBytes(IReadOnlyList<byte[]> tokenBytes, int endOfTextId, string source)
    {
        var tokens = new string[tokenBytes.Count];
        var ids = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (int id = 0; id < tokens.Length; id++)
        {
            tokens[id] = id == endOfTextId ? EndOfText : ToAlphabet(tokenBytes[id]);
            if (!ids.TryAdd(tokens[id], id))
            {
                throw new VocabularyFormatException(source, $"gives token '{tokens[id]}' to ids {ids[tokens[id]]} and {id}", null, tokens[id]);
            }
        }

        return new BpeVocabulary(tokens, ids, source);
    }

    /// <summary>
    /// Reads vocab.json: one JSON object mapping each token (byte alphabet) to its id, ids running
    /// from 0 to n−1 without gaps or repeats. Bad JSON, a value that is not a non-negative integer,
    /// a repeated token or id, a gap, a missing byte token or a missing &lt;|endoftext|&gt; throw
    /// <see cref="VocabularyFormatException"/> naming <paramref name="source"/>, the line and the token.
    /// </summary>
    public static BpeVocabulary Load(Stream stream, string source) => Load(stream, source, EndOfText);

    /// <summary>As <see cref="Load(Stream, string)"/>, with another family's end-of-text token (RoBERTa's &lt;/s&gt;).</summary>
    public static BpeVocabulary Load(Stream stream, string source, string endOfText)
    {
        byte[] json = ReadAll(stream);
        int bom = json.AsSpan().StartsWith("\uFEFF"u8) ? 3 : 0;
        if (json.AsSpan(bom).Trim(" \t\r\n"u8).IsEmpty)
        {
            throw new VocabularyFormatException(source, "is empty", null, null);
        }

        var ids = new Dictionary<string, int>(json.Length / 16, StringComparer.Ordinal);
        var byId = new Dictionary<int, string>(json.Length / 16);
        var reader = new Utf8JsonReader(json.AsSpan(bom), new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            reader.Read();
            if (reader.TokenType != JsonTokenType.StartObject)
            {
                throw Error(json, bom, ref reader, $"is not a JSON object of token → id (it starts with {reader.TokenType})", null);
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                string token = reader.GetString()!;
                reader.Read();
                if (reader.TokenType != JsonTokenType.Number || !reader.TryGetInt32(out int id) || id < 0)
                {
                    throw Error(json, bom, ref reader, $"gives token '{token}' the value {ValueText(ref reader)}, not a non-negative 32-bit integer id", token);
                }

                if (!ids.TryAdd(token, id))
                {
                    throw Error(json, bom, ref reader, $"has token '{token}' twice", token);
                }

                if (!byId.TryAdd(id, token))
                {
                    throw Error(json, bom, ref reader, $"gives id {id} to both '{byId[id]}' and '{token}'", token);
                }
            }

            // The reader checks that the object is closed and that nothing follows it.
            while (reader.Read())
            {
            }
        }
        catch (InvalidOperationException e)
        {
            // A string that is not valid UTF-8.
            int line = LineOf(json, bom + (int)reader.TokenStartIndex);
            throw new VocabularyFormatException(source, $"line {line} is not valid UTF-8", line, null, e);
        }
        catch (JsonException e)
        {
            // The reader's message ends with its own 0-based "LineNumber: …"; keep only the reason.
            string reason = e.Message;
            int position = reason.IndexOf(" LineNumber:", StringComparison.Ordinal);
            reason = (position > 0 ? reason[..position] : reason).TrimEnd('.', ' ');
            throw new VocabularyFormatException(source, $"is not valid JSON at line {e.LineNumber + 1}: {reason}", (int?)e.LineNumber + 1, null, e);
        }

        if (ids.Count == 0)
        {
            throw new VocabularyFormatException(source, "has no tokens", null, null);
        }

        var tokens = new string[ids.Count];
        for (int id = 0; id < tokens.Length; id++)
        {
            tokens[id] = byId.TryGetValue(id, out string? token)
                ? token
                : throw new VocabularyFormatException(source, $"has no token with id {id} (ids must run from 0 to {tokens.Length - 1} without gaps)", null, null);
        }

        return new BpeVocabulary(tokens, ids, source, endOfText);

        VocabularyFormatException Error(byte[] json, int bom, ref Utf8JsonReader reader, string problem, string? token)
        {
            int line = LineOf(json, bom + (int)reader.TokenStartIndex);
            return new VocabularyFormatException(source, $"line {line} {problem}", line, token);
        }
    }

    private static string ValueText(ref Utf8JsonReader reader) => reader.TokenType switch
    {
        JsonTokenType.Number or JsonTokenType.True or JsonTokenType.False or JsonTokenType.Null => Encoding.UTF8.GetString(reader.ValueSpan),
        JsonTokenType.String => $"\"{reader.GetString()}\"",
        JsonTokenType.StartArray => "an array",
        JsonTokenType.StartObject => "an object",
        _ => reader.TokenType.ToString(),
    };

    private static int LineOf(ReadOnlySpan<byte> json, int offset) => json[..Math.Min(offset, json.Length)].Count((byte)'\n') + 1;

    private static byte[] ReadAll(Stream stream)
    {
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return buffer.ToArray();
    }

    // The bytes a byte-alphabet string stands for; null when it has a character outside the alphabet.
    private static byte[]? ToBytes(string token)
    {
        var result = new byte[token.Length];
        for (int i = 0; i < token.Length; i++)
        {
            if (!CharToByte.TryGetValue(token[i], out result[i]))
            {
                return null;
            }
        }

        return result;
    }

    private static string Readable(ReadOnlySpan<byte> value)
    {
        var text = new StringBuilder(value.Length);
        while (!value.IsEmpty)
        {
            OperationStatus status = Rune.DecodeFromUtf8(value, out Rune rune, out int consumed);
            if (status == OperationStatus.Done)
            {
                text.Append(rune.ToString());
            }
            else
            {
                // Part of a character (the rest is in a neighbouring token) or not UTF-8 at all.
                foreach (byte b in value[..consumed])
                {
                    text.Append("<0x").Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture)).Append('>');
                }
            }

            value = value[consumed..];
        }

        return text.ToString();
    }

    // GPT-2's bytes_to_unicode: printable Latin-1 bytes keep their character, the rest go to U+0100 on.
    private static char[] BuildByteAlphabet()
    {
        var table = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            table[b] = (char)(printable ? b : next++);
        }

        return table;
    }
}
