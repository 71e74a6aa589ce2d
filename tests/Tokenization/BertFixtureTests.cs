using System.Security.Cryptography;
using Headlight.Models.Tokenization;

namespace Headlight.Tests.Tokenization;

/// <summary>
/// Exact agreement with an outside referee: every text of the committed fixture must give Hugging
/// Face's ids, tokens, type ids, word ids and character offsets.
/// </summary>
public sealed class BertFixtureTests
{
    /// <summary>Keys of the encoding cases.</summary>
    public static TheoryData<string> CaseKeys => Keys(BertFixture.Cases);

    /// <summary>Keys of the truncation cases.</summary>
    public static TheoryData<string> TruncationKeys => Keys(BertFixture.Truncation);

    [Fact]
    public void Fixture_was_made_with_the_vocab_both_packaged_models_carry()
    {
        string expected = BertFixture.Header.GetProperty("vocab").GetProperty("sha256").GetString()!;
        Assert.Equal(expected, Convert.ToHexStringLower(SHA256.HashData(TestVocab.Bytes(TestVocab.MiniLM))));
        Assert.Equal(expected, Convert.ToHexStringLower(SHA256.HashData(TestVocab.Bytes(TestVocab.ArcticXs))));
        Assert.True(BertFixture.Cases.Count >= 60, $"The fixture has only {BertFixture.Cases.Count} cases.");
    }

    [Theory]
    [MemberData(nameof(CaseKeys))]
    public void Encodes_like_the_referee(string key)
    {
        BertFixtureCase c = BertFixture.Cases[key];
        var tokenizer = TestVocab.Tokenizer(Options(c.Config));
        TokenizedText encoded = c.Pair is null ? tokenizer.Encode(c.Text) : tokenizer.EncodePair(c.Text, c.Pair);
        AssertMatches(c, encoded);
    }

    [Theory]
    [MemberData(nameof(TruncationKeys))]
    public void Truncates_like_the_referee(string key)
    {
        BertFixtureCase c = BertFixture.Truncation[key];
        var tokenizer = TestVocab.Tokenizer(Options(c.Config));
        TokenizedText encoded = c.Pair is null ? tokenizer.Encode(c.Text) : tokenizer.EncodePair(c.Text, c.Pair);
        var mode = Enum.Parse<TruncationMode>(c.Strategy!);
        TokenBatch batch = tokenizer.Batch([encoded], c.MaxLength!.Value, mode);
        TokenizedText truncated = batch.Texts[0];
        Assert.True(truncated.IsTruncated);
        AssertMatches(c, truncated);
        Assert.Equal(c.Ids, batch.InputIds.ToArray());
    }

    internal static BertTokenizerOptions Options(string config) => config switch
    {
        "uncased" => BertTokenizerOptions.Uncased,
        "cased" => BertTokenizerOptions.Cased,
        "lowercase keep accents" => BertTokenizerOptions.Uncased with { StripAccents = false },
        _ => throw new ArgumentException($"Unknown fixture config '{config}'.", nameof(config)),
    };

    private static void AssertMatches(BertFixtureCase c, TokenizedText encoded)
    {
        Assert.Equal(c.Tokens, encoded.Tokens);
        Assert.Equal(c.Ids, encoded.Ids);
        Assert.Equal(c.TypeIds, encoded.TypeIds);
        Assert.Equal(c.Offsets.Select(o => new TextSpan(o[0], o[1])), encoded.Spans);

        // The referee numbers words per sequence; ours run on through the pair.
        int firstSegmentWords = encoded.Words.Count(w => w.Segment == 0);
        var wordIds = encoded.WordIndices.Select((w, i) => w < 0 ? -1 : encoded.TypeIds[i] == 1 ? w - firstSegmentWords : w);
        Assert.Equal(c.WordIds, wordIds);
    }

    private static TheoryData<string> Keys(IReadOnlyDictionary<string, BertFixtureCase> cases)
    {
        var data = new TheoryData<string>();
        foreach (string key in cases.Keys)
        {
            data.Add(key);
        }

        return data;
    }
}
