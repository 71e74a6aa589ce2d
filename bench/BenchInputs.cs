using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Bench;

/// <summary>Inputs shared by the explanation benchmarks.</summary>
internal static class BenchInputs
{
    /// <summary>One row of exactly <paramref name="tokens"/> BERT tokens ([CLS] and [SEP] included) of a repeated English sentence.</summary>
    public static TokenBatch EnglishRow(Model model, int tokens)
    {
        var tokenizer = (BertWordPieceTokenizer)model.Tokenizer!;
        string text = string.Join(" ", Enumerable.Repeat("Interpretability needs faithful and fast explanations for every prediction a model makes.", 32));
        var batch = tokenizer.Batch([tokenizer.Encode(text).Truncate(tokens, TruncationMode.LongestFirst)], model.Config.MaxPositions);
        return batch.SequenceLength == tokens
            ? batch
            : throw new InvalidOperationException($"The benchmark input has {batch.SequenceLength} tokens, not {tokens}.");
    }
}
