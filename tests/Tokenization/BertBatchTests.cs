using Headlight.Models.Tokenization;

namespace Headlight.Tests.Tokenization;

/// <summary>Batching, padding, masks, type ids, truncation and the too-long error.</summary>
public sealed class BertBatchTests
{
    private static BertWordPieceTokenizer Tokenizer => TestVocab.Tokenizer();

    [Fact]
    public void Pads_to_the_longest_with_masks_type_ids_and_lengths()
    {
        var texts = new[] { Tokenizer.Encode("short"), Tokenizer.EncodePair("a query", "the document text"), Tokenizer.Encode("") };
        TokenBatch batch = Tokenizer.Batch(texts, maxLength: 512);

        Assert.Equal(3, batch.BatchSize);
        Assert.Equal(texts.Max(t => t.Count), batch.SequenceLength);
        Assert.Equal(texts.Select(t => t.Count), batch.Lengths);
        Assert.Equal(batch.BatchSize * batch.SequenceLength, batch.InputIds.Length);
        int[] ids = batch.InputIds.ToArray(), mask = batch.AttentionMask.ToArray(), types = batch.TokenTypeIds.ToArray();
        for (int b = 0; b < batch.BatchSize; b++)
        {
            for (int t = 0; t < batch.SequenceLength; t++)
            {
                int i = b * batch.SequenceLength + t;
                bool real = t < texts[b].Count;
                Assert.Equal(real ? texts[b].Ids[t] : Tokenizer.PadTokenId, ids[i]);
                Assert.Equal(real ? 1 : 0, mask[i]);
                Assert.Equal(real ? texts[b].TypeIds[t] : 0, types[i]);
            }
        }

        // The pair row: [CLS] a query [SEP] the document text [SEP], types 0 0 0 0 1 1 1 1.
        Assert.Equal([0, 0, 0, 0, 1, 1, 1, 1], types.AsSpan(batch.SequenceLength, 8).ToArray());
        Assert.Same(texts[0], batch.Texts[0]);
    }

    [Fact]
    public void Too_long_text_throws_naming_index_count_and_limit()
    {
        var texts = new[] { Tokenizer.Encode("fits"), Tokenizer.Encode("one two three four five six seven") };
        var e = Assert.Throws<InputTooLongException>(() => Tokenizer.Batch(texts, maxLength: 6));
        Assert.Equal(1, e.TextIndex);
        Assert.Equal(9, e.TokenCount);
        Assert.Equal(6, e.Limit);
        Assert.Equal("texts", e.ParamName);
        Assert.Contains("Text 1 has 9 tokens", e.Message, StringComparison.Ordinal);
        Assert.Contains("limit of 6", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Truncation_keeps_sep_at_the_end_and_maps_words()
    {
        TokenizedText text = Tokenizer.Encode("Tokenisation of supercalifragilisticexpialidocious words");
        TokenBatch batch = Tokenizer.Batch([text], maxLength: 6, TruncationMode.LongestFirst);
        TokenizedText cut = batch.Texts[0];

        Assert.True(cut.IsTruncated);
        Assert.False(text.IsTruncated);
        Assert.Equal(6, cut.Count);
        Assert.Equal(Tokenizer.ClsTokenId, cut.Ids[0]);
        Assert.Equal(Tokenizer.SepTokenId, cut.Ids[^1]);
        Assert.Equal(text.Ids.Take(5), cut.Ids.Take(5));
        Assert.Equal(6, batch.SequenceLength);
        AssertWordsConsistent(cut);

        // The last word kept lost some of its pieces; words after it are gone.
        TokenizedWord last = cut.Words[^1];
        TokenizedWord original = text.Words[text.WordIndices[last.FirstToken]];
        Assert.Equal(original.Text, last.Text);
        Assert.True(last.TokenCount <= original.TokenCount);
        Assert.Equal(cut.WordIndices[^2] + 1, cut.Words.Count);
    }

    [Fact]
    public void Only_second_cuts_the_document_and_keeps_the_query()
    {
        TokenizedText pair = Tokenizer.EncodePair("what is attention", "attention weighs every token against every other token");
        TokenizedText cut = pair.Truncate(10, TruncationMode.OnlySecond);
        Assert.Equal(pair.Ids.Take(5), cut.Ids.Take(5));
        Assert.Equal(10, cut.Count);
        Assert.Equal([Tokenizer.SepTokenId, Tokenizer.SepTokenId], cut.Ids.Where(id => id == Tokenizer.SepTokenId));
        Assert.Equal(Tokenizer.SepTokenId, cut.Ids[^1]);
        AssertWordsConsistent(cut);

        var e = Assert.Throws<InputTooLongException>(() => pair.Truncate(5, TruncationMode.OnlySecond));
        Assert.Contains("second text", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Fitting_text_is_not_copied_and_specials_alone_cannot_be_cut()
    {
        TokenizedText text = Tokenizer.Encode("hello world");
        Assert.Same(text, text.Truncate(4, TruncationMode.LongestFirst));
        Assert.Same(text, text.Truncate(4, TruncationMode.None));

        var e = Assert.Throws<InputTooLongException>(() => Tokenizer.EncodePair("a", "b").Truncate(2, TruncationMode.LongestFirst));
        Assert.Contains("3 special tokens", e.Message, StringComparison.Ordinal);
        Assert.Single(Tokenizer.Encode("a").Truncate(3, TruncationMode.LongestFirst).Words);
        Assert.True(Tokenizer.Encode("a b").Truncate(2, TruncationMode.LongestFirst).IsEmpty);
    }

    [Fact]
    public void Bad_batch_arguments_throw_before_any_work()
    {
        Assert.Throws<ArgumentNullException>(() => Tokenizer.Batch(null!, 8));
        Assert.Throws<ArgumentException>(() => Tokenizer.Batch([], 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Batch([Tokenizer.Encode("x")], 0));
        var e = Assert.Throws<ArgumentException>(() => Tokenizer.Batch([Tokenizer.Encode("x"), null!], 8));
        Assert.Contains("Text 1", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Batch([Tokenizer.Encode("x y z")], 3, (TruncationMode)42));
    }

    [Fact]
    public void EncodeBatch_encodes_then_batches()
    {
        TokenBatch batch = Tokenizer.EncodeBatch(["first text", "second"], 512);
        Assert.Equal(Tokenizer.Encode("first text").Ids, batch.Texts[0].Ids);
        Assert.Equal(2, batch.BatchSize);
        Assert.Throws<ArgumentException>(() => Tokenizer.EncodeBatch(["ok", null!], 512));
    }

    /// <summary>Words and tokens point at each other, in order, with no gaps.</summary>
    internal static void AssertWordsConsistent(TokenizedText text)
    {
        int expectedFirst = -1;
        for (int w = 0; w < text.Words.Count; w++)
        {
            TokenizedWord word = text.Words[w];
            Assert.True(word.TokenCount >= 1);
            Assert.True(word.FirstToken > expectedFirst);
            for (int t = word.FirstToken; t < word.EndToken; t++)
            {
                Assert.Equal(w, text.WordIndices[t]);
                Assert.Equal(word.Segment, text.TypeIds[t]);
            }

            expectedFirst = word.EndToken - 1;
        }

        Assert.Equal(text.Count - text.Words.Sum(w => w.TokenCount), text.WordIndices.Count(w => w < 0));
    }
}
