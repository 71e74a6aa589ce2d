using Headlight.Models.Tokenization;

namespace Headlight.Tests.Tokenization;

/// <summary>GPT-2 tokens, spans, words, the optional leading &lt;|endoftext|&gt;, batching, truncation and decoding.</summary>
public sealed class Gpt2TokenizerTests
{
    private static Gpt2Tokenizer Tokenizer => Gpt2Fixture.Default;

    [Fact]
    public void Has_gpt2s_vocabulary_and_special_token()
    {
        Assert.Equal(50257, Tokenizer.VocabularySize);
        Assert.Equal(50256, Tokenizer.EndOfTextTokenId);
        Assert.Equal(50256, Tokenizer.PadTokenId);
        Assert.Equal("<|endoftext|>", Gpt2Tokenizer.EndOfTextToken);
        Assert.Equal("<|endoftext|>", Tokenizer.GetToken(50256));
        Assert.True(Tokenizer.IsSpecial(50256));
        Assert.False(Tokenizer.IsSpecial(220));
        Assert.True(Tokenizer.TryGetId("Ġworld", out int world));
        Assert.Equal(995, world);
        Assert.False(Tokenizer.TryGetId(" world", out _));
        Assert.Same(Gpt2TokenizerOptions.Default, Tokenizer.Options);
    }

    [Fact]
    public void Tokens_are_readable_text_with_a_real_leading_space()
    {
        TokenizedText text = Tokenizer.Encode("Hello, world!");
        Assert.Equal([15496, 11, 995, 0], text.Ids);
        Assert.Equal(["Hello", ",", " world", "!"], text.Tokens);
        Assert.Equal("Ġworld", Tokenizer.GetVocabularyToken(995));
        Assert.Equal(" world", Tokenizer.GetToken(995));
        Assert.Equal(["\r", "\n", "\t"], Tokenizer.DecodeTokens([201, 198, 197]));
        Assert.Equal([new TextSpan(0, 5), new TextSpan(5, 6), new TextSpan(6, 12), new TextSpan(12, 13)], text.Spans);
        Assert.Equal(string.Concat(text.Tokens), text.Text);
        Assert.False(text.IsPair);
        Assert.False(text.IsTruncated);
    }

    [Fact]
    public void Tokens_that_split_a_character_show_bytes_and_span_the_whole_character()
    {
        // " 🍕!" is one chunk; the pizza's four UTF-8 bytes F0 9F 8D 95 go to three tokens.
        TokenizedText text = Tokenizer.Encode("I love pizza 🍕!");
        Assert.Equal([40, 1842, 14256, 12520, 235, 243, 0], text.Ids);
        Assert.Equal(["I", " love", " pizza", " <0xF0><0x9F>", "<0x8D>", "<0x95>", "!"], text.Tokens);
        Assert.Equal(new TextSpan(12, 15), text.Spans[3]);
        Assert.Equal(new TextSpan(13, 15), text.Spans[4]);
        Assert.Equal(new TextSpan(13, 15), text.Spans[5]);
        Assert.Equal(new TextSpan(15, 16), text.Spans[6]);
        Gpt2FixtureTests.AssertSpansCover(text.Text, text);

        TokenizedWord pizza = text.Words[3];
        Assert.Equal("🍕!", pizza.Text);
        Assert.Equal(" 🍕!", pizza.Normalized);
        Assert.Equal(new TextSpan(13, 16), pizza.Span);
        Assert.Equal((3, 4), (pizza.FirstToken, pizza.TokenCount));

        // Decoding part of a character gives U+FFFD; all of it gives the character.
        Assert.Equal(" \uFFFD", Tokenizer.Decode([12520]));
        Assert.Equal(" 🍕", Tokenizer.Decode([12520, 235, 243]));
    }

    [Fact]
    public void Words_are_chunks_without_their_leading_space_and_whitespace_runs_are_words()
    {
        // A whitespace run before a word leaves its last character to the word: "\n\n" + " end".
        TokenizedText text = Tokenizer.Encode("word   next\n\n end");
        Assert.Equal(["word", "  ", " next", "\n\n", " end"], text.Words.Select(w => w.Normalized));
        Assert.Equal(["word", "  ", "next", "\n\n", "end"], text.Words.Select(w => w.Text));
        Assert.Equal([new TextSpan(0, 4), new TextSpan(4, 6), new TextSpan(7, 11), new TextSpan(11, 13), new TextSpan(14, 17)], text.Words.Select(w => w.Span));
        Assert.All(text.Words, w => Assert.Equal(0, w.Segment));
        Assert.Equal(text.Count, text.Words.Sum(w => w.TokenCount));
        Assert.DoesNotContain(-1, text.WordIndices);
        Assert.False(text.IsEmpty);
    }

    [Fact]
    public void Endoftext_written_in_the_text_is_ordinary_text()
    {
        // The reference encoder's ids; never the special id 50256.
        TokenizedText text = Tokenizer.Encode("Before<|endoftext|>After");
        Assert.Equal([8421, 27, 91, 437, 1659, 5239, 91, 29, 3260], text.Ids);
        Assert.DoesNotContain(50256, text.Ids);
        Assert.Equal("Before<|endoftext|>After", Tokenizer.Decode([.. text.Ids]));
    }

    [Fact]
    public void Prepend_end_of_text_adds_a_special_first_token()
    {
        var bos = Gpt2Tokenizer.CreateDefault(new Gpt2TokenizerOptions { PrependEndOfText = true });
        TokenizedText text = bos.Encode("Hello world");
        Assert.Equal([50256, 15496, 995], text.Ids);
        Assert.Equal(["<|endoftext|>", "Hello", " world"], text.Tokens);
        Assert.Equal([-1, 0, 1], text.WordIndices);
        Assert.Equal([default, new TextSpan(0, 5), new TextSpan(5, 11)], text.Spans);
        Assert.Equal([1, 2], text.Words.Select(w => w.FirstToken));
        Assert.Equal("<|endoftext|>Hello world", bos.Decode([.. text.Ids]));
        Assert.Equal("Hello world", bos.Decode([.. text.Ids], skipSpecialTokens: true));

        TokenizedText empty = bos.Encode("");
        Assert.Equal([50256], empty.Ids);
        Assert.True(empty.IsEmpty);
    }

    [Fact]
    public void Empty_text_has_no_tokens_and_null_is_rejected()
    {
        TokenizedText empty = Tokenizer.Encode("");
        Assert.Equal(0, empty.Count);
        Assert.True(empty.IsEmpty);
        Assert.Equal(string.Empty, Tokenizer.Decode([]));
        Assert.Throws<ArgumentNullException>(() => Tokenizer.Encode(null!));
    }

    [Fact]
    public void Batch_pads_on_the_right_with_end_of_text_and_mask_zero()
    {
        TokenizedText[] texts = [Tokenizer.Encode("short"), Tokenizer.Encode("a somewhat longer text here"), Tokenizer.Encode("")];
        TokenBatch batch = Tokenizer.Batch(texts, maxLength: 1024);

        Assert.Equal(3, batch.BatchSize);
        Assert.Equal(texts.Max(t => t.Count), batch.SequenceLength);
        Assert.Equal(texts.Select(t => t.Count), batch.Lengths);
        int[] ids = batch.InputIds.ToArray(), mask = batch.AttentionMask.ToArray(), types = batch.TokenTypeIds.ToArray();
        for (int b = 0; b < batch.BatchSize; b++)
        {
            for (int t = 0; t < batch.SequenceLength; t++)
            {
                int i = b * batch.SequenceLength + t;
                bool real = t < texts[b].Count;
                Assert.Equal(real ? texts[b].Ids[t] : 50256, ids[i]);
                Assert.Equal(real ? 1 : 0, mask[i]);
                Assert.Equal(0, types[i]);
            }
        }

        TokenBatch same = Tokenizer.EncodeBatch(["short", "a somewhat longer text here", ""], maxLength: 1024);
        Assert.Equal(ids, same.InputIds.ToArray());
        Assert.Throws<ArgumentException>(() => Tokenizer.EncodeBatch(["x", null!], 8));
    }

    [Fact]
    public void Too_long_text_throws_unless_truncation_keeps_its_first_tokens()
    {
        TokenizedText text = Tokenizer.Encode("one two three four five six seven");
        Assert.Equal(7, text.Count);
        var e = Assert.Throws<InputTooLongException>(() => Tokenizer.Batch([Tokenizer.Encode("fits"), text], maxLength: 5));
        Assert.Equal((1, 7, 5), (e.TextIndex, e.TokenCount, e.Limit));
        Assert.Equal("texts", e.ParamName);

        TokenizedText cut = Tokenizer.Batch([text], maxLength: 5, TruncationMode.LongestFirst).Texts[0];
        Assert.True(cut.IsTruncated);
        Assert.Equal(text.Ids.Take(5), cut.Ids);
        Assert.Equal(["one", "two", "three", "four", "five"], cut.Words.Select(w => w.Text));

        var bos = Gpt2Tokenizer.CreateDefault(new Gpt2TokenizerOptions { PrependEndOfText = true });
        TokenizedText withBos = bos.Batch([bos.Encode("one two three four five six seven")], maxLength: 4, TruncationMode.LongestFirst).Texts[0];
        Assert.Equal([50256, .. text.Ids.Take(3)], withBos.Ids);
        Assert.Equal([-1, 0, 1, 2], withBos.WordIndices);
    }

    [Fact]
    public void Bad_ids_throw_naming_the_id_and_position()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.GetToken(-1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.GetVocabularyToken(50257));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Decode([15496, 50257]));
        Assert.Contains("Token id 50257 at position 1", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.DecodeTokens([0, -5]));
        Assert.Throws<ArgumentNullException>(() => Tokenizer.TryGetId(null!, out _));
    }

    [Fact]
    public void Lone_surrogates_are_encoded_as_the_replacement_character_by_both_paths()
    {
        string text = "a\uD800b \uDFFF\uD83D";
        TokenizedText encoded = Tokenizer.Encode(text);
        Assert.Equal(Tokenizer.Encode("a\uFFFDb \uFFFD\uFFFD").Ids, encoded.Ids);
        Assert.Equal(encoded.Ids, Gpt2Fixture.OwnBpe.Encode(text).Ids);
        Assert.Equal("a\uFFFDb \uFFFD\uFFFD", Tokenizer.Decode([.. encoded.Ids]));
        Gpt2FixtureTests.AssertSpansCover(text, encoded, tokensAreTheText: false);
    }

    [Theory]
    [InlineData("x \u0085y")] // NEL: Unicode White_Space (the original encoder's \s), not JavaScript's
    [InlineData("x \uFEFFy")] // BOM: JavaScript's \s, not Unicode White_Space
    [InlineData("𝐀𝐁 a𠀀b")] // letters outside the BMP stay in their word
    [InlineData("it'S 'LL ''s")]
    public void Pre_tokenisation_follows_gpt2s_pattern_by_code_point(string text)
    {
        string[] expected = text switch
        {
            "x \u0085y" => ["x", " ", "\u0085", "y"],
            "x \uFEFFy" => ["x", " \uFEFF", "y"],
            "𝐀𝐁 a𠀀b" => ["𝐀𝐁", " a𠀀b"],
            _ => ["it", "'", "S", " '", "LL", " ''", "s"],
        };
        Assert.Equal(expected, Tokenizer.Encode(text).Words.Select(w => w.Normalized));
        Assert.Equal(Tokenizer.Encode(text).Ids, Gpt2Fixture.OwnBpe.Encode(text).Ids);
    }

    [Fact]
    public void Encodes_from_many_threads_at_once()
    {
        string[] texts = [.. Gpt2Fixture.Cases.Values.Select(c => c.Text)];
        int[][] expected = [.. texts.Select(t => Gpt2Fixture.OwnBpe.Encode(t).Ids.ToArray())];
        Parallel.For(0, texts.Length * 4, i =>
        {
            int k = i % texts.Length;
            Assert.Equal(expected[k], Gpt2Fixture.OwnBpe.Encode(texts[k]).Ids);
            Assert.Equal(expected[k], Tokenizer.Encode(texts[k]).Ids);
        });
    }
}
