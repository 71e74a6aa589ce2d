namespace Headlight.Models.Tokenization;

/// <summary>
/// Turns text into the token ids a model expects, remembering which word and which characters
/// every token came from, and batches tokenised texts into padded model inputs.
/// </summary>
public interface ITextTokenizer
{
    /// <summary>Number of ids the vocabulary has (valid ids are 0 to this minus one).</summary>
    int VocabularySize { get; }

    /// <summary>The id padding positions are filled with.</summary>
    int PadTokenId { get; }

    /// <summary>The mask token ([MASK], RoBERTa's &lt;mask&gt;) masking baselines use, or null when the vocabulary has none.</summary>
    int? MaskToken => null;

    /// <summary>True for the tokens the tokenizer adds itself and that stand for no text ([CLS], [SEP], [PAD], &lt;|endoftext|&gt;).</summary>
    bool IsControlToken(int id);

    /// <summary>Tokenises one text, adding the model's special tokens.</summary>
    /// <exception cref="ArgumentNullException"><paramref name="text"/> is null.</exception>
    TokenizedText Encode(string text);

    /// <summary>
    /// Pads tokenised texts to the longest into [batch, sequence] inputs. A text longer than
    /// <paramref name="maxLength"/> (the model's positions) throws <see cref="InputTooLongException"/>
    /// unless <paramref name="truncation"/> allows cutting it.
    /// </summary>
    TokenBatch Batch(IReadOnlyList<TokenizedText> texts, int maxLength, TruncationMode truncation = TruncationMode.None);

    /// <summary>The vocabulary's token for <paramref name="id"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="id"/> is not in the vocabulary.</exception>
    string GetToken(int id);

    /// <summary>The vocabulary's token for each id.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is not in the vocabulary (the message names it and its position).</exception>
    IReadOnlyList<string> DecodeTokens(ReadOnlySpan<int> ids);

    /// <summary>Readable text for <paramref name="ids"/>: pieces joined into words, words separated by spaces.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is not in the vocabulary.</exception>
    string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false);
}
