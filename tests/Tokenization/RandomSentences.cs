namespace Headlight.Tests.Tokenization;

/// <summary>
/// A thousand space-separated sentences of mixed words (accents, emoji, CJK, punctuation), from a
/// fixed seed. Shared by the tokenizer tests and benchmarks (bench links this file).
/// </summary>
internal static class RandomSentences
{
    /// <summary>The words the sentences are made of.</summary>
    public static readonly string[] Words = ["the", "model", "explains", "naïve", "Tokenisation", "of", "€4", "emoji😀", "東京", "attention,", "heads", "(really)", "supercalifragilistic"];

    /// <summary>Each sentence as the indices into <see cref="Words"/> of its 8–29 words.</summary>
    public static int[][] WordIndices()
    {
        var random = new Random(7);
        return [.. Enumerable.Range(0, 1000)
            .Select(_ => Enumerable.Range(0, random.Next(8, 30)).Select(_ => random.Next(Words.Length)).ToArray())];
    }

    /// <summary>The sentences, words joined by single spaces.</summary>
    public static string[] Texts() => [.. WordIndices().Select(s => string.Join(' ', s.Select(w => Words[w])))];
}
