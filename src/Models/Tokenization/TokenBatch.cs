namespace Headlight.Models.Tokenization;

/// <summary>
/// Tokenised texts padded to one length, as model inputs. All arrays are row-major
/// [batch, sequence]: <see cref="InputIds"/> (padding filled with the pad id),
/// <see cref="AttentionMask"/> (1 for real tokens, 0 for padding) and <see cref="TokenTypeIds"/>
/// (0 for padding).
/// </summary>
public sealed class TokenBatch
{
    private readonly int[] inputIds;
    private readonly int[] attentionMask;
    private readonly int[] tokenTypeIds;

    private TokenBatch(TokenizedText[] texts, int sequenceLength, int[] inputIds, int[] attentionMask, int[] tokenTypeIds)
    {
        Texts = Array.AsReadOnly(texts);
        SequenceLength = sequenceLength;
        this.inputIds = inputIds;
        this.attentionMask = attentionMask;
        this.tokenTypeIds = tokenTypeIds;
        Lengths = Array.AsReadOnly(texts.Select(t => t.Count).ToArray());
    }

    /// <summary>Number of texts (rows).</summary>
    public int BatchSize => Texts.Count;

    /// <summary>Tokens per row: the longest text's token count.</summary>
    public int SequenceLength { get; }

    /// <summary>The texts as batched (truncated where that was asked for), for mapping positions back to words.</summary>
    public IReadOnlyList<TokenizedText> Texts { get; }

    /// <summary>Real (unpadded) tokens per row.</summary>
    public IReadOnlyList<int> Lengths { get; }

    /// <summary>Token ids [batch, sequence].</summary>
    public ReadOnlyMemory<int> InputIds => inputIds;

    /// <summary>1 for real tokens, 0 for padding [batch, sequence].</summary>
    public ReadOnlyMemory<int> AttentionMask => attentionMask;

    /// <summary>Token type ids [batch, sequence].</summary>
    public ReadOnlyMemory<int> TokenTypeIds => tokenTypeIds;

    /// <summary>
    /// Pads <paramref name="texts"/> with <paramref name="padId"/> to the longest one, first
    /// truncating each to <paramref name="maxLength"/> tokens when <paramref name="truncation"/> allows.
    /// </summary>
    /// <exception cref="InputTooLongException">A text is longer than <paramref name="maxLength"/> and may not (or cannot) be truncated.</exception>
    internal static TokenBatch Create(IReadOnlyList<TokenizedText> texts, int maxLength, TruncationMode truncation, int padId)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxLength);
        if (texts.Count == 0)
        {
            throw new ArgumentException("A batch needs at least one text.", nameof(texts));
        }

        var batched = new TokenizedText[texts.Count];
        for (int b = 0; b < texts.Count; b++)
        {
            TokenizedText text = texts[b] ?? throw new ArgumentException($"Text {b} of the batch is null.", nameof(texts));
            batched[b] = text.Truncate(maxLength, truncation, b, nameof(texts));
        }

        int sequence = batched.Max(t => t.Count);
        int total = checked(batched.Length * sequence);
        var ids = new int[total];
        var mask = new int[total];
        var types = new int[total];
        Array.Fill(ids, padId);
        for (int b = 0; b < batched.Length; b++)
        {
            // row b: ids [sequence], real tokens first, padding after
            TokenizedText text = batched[b];
            int row = b * sequence;
            for (int t = 0; t < text.Count; t++)
            {
                ids[row + t] = text.Ids[t];
                mask[row + t] = 1;
                types[row + t] = text.TypeIds[t];
            }
        }

        return new TokenBatch(batched, sequence, ids, mask, types);
    }
}
