using System.Text;
using System.Text.Json;
using Headlight.Models.Tokenization;

namespace Headlight.Tests.Tokenization;

/// <summary>
/// <see cref="Gpt2Tokenizer.FromFiles"/> on BPE files other than GPT-2's: the merge-rank BPE on tiny
/// vocabularies written here, the choice between it and GPT-2's own encoding, and typed errors for
/// malformed vocab.json and merges.txt.
/// </summary>
public sealed class Gpt2FilesTests : IDisposable
{
    private readonly string folder = Directory.CreateTempSubdirectory("headlight-gpt2-files-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    /// <summary>GPT-2's byte alphabet, written out here from its definition: printable Latin-1 bytes keep their character, the others take U+0100 on in byte order.</summary>
    private static string Alphabet(int b)
    {
        int next = 256;
        for (int i = 0; i < 256; i++)
        {
            bool printable = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174 && i <= 255);
            int c = printable ? i : next++;
            if (i == b)
            {
                return ((char)c).ToString();
            }
        }

        throw new ArgumentOutOfRangeException(nameof(b));
    }

    // vocab.json with one entry per line: "{", the 256 byte tokens (ids 0-255, lines 2-257),
    // `extra` (ids 256 on), <|endoftext|> last, "}".
    private static string VocabJson(params string[] extra) => VocabJson(extra, endOfText: true);

    private static string VocabJson(string[] extra, bool endOfText)
    {
        var tokens = Enumerable.Range(0, 256).Select(Alphabet).Concat(extra).Concat(endOfText ? ["<|endoftext|>"] : Array.Empty<string>()).ToArray();
        return "{\n" + string.Join(",\n", tokens.Select((t, id) => $"  {JsonSerializer.Serialize(t)}: {id}")) + "\n}\n";
    }

    private static Gpt2Tokenizer Load(string vocab, string merges, string vocabName = "vocab.json", string mergesName = "merges.txt") =>
        Gpt2Tokenizer.FromStreams(new MemoryStream(Encoding.UTF8.GetBytes(vocab)), new MemoryStream(Encoding.UTF8.GetBytes(merges)), null, vocabName, mergesName);

    private static int Byte(char c) => c; // ids 0-255 are the bytes in order

    [Fact]
    public void Own_bpe_merges_by_rank_within_chunks()
    {
        // ids: lo 256, low 257, Ġlow 258, er 259, Ġlower 260, <|endoftext|> 261
        var tokenizer = Load(VocabJson("lo", "low", "Ġlow", "er", "Ġlower"), "#version: 0.2\nl o\nlo w\nĠ low\ne r\nĠlow er\n");
        Assert.False(tokenizer.UsesTiktoken);
        Assert.Equal(262, tokenizer.VocabularySize);
        Assert.Equal(261, tokenizer.EndOfTextTokenId);

        TokenizedText text = tokenizer.Encode("low lower lowest");
        Assert.Equal([257, 260, 258, Byte('e'), Byte('s'), Byte('t')], text.Ids);
        Assert.Equal(["low", " lower", " low", "e", "s", "t"], text.Tokens);
        Assert.Equal(["low", "lower", "lowest"], text.Words.Select(w => w.Text));
        Assert.Equal("Ġlower", tokenizer.GetVocabularyToken(260));
        Assert.Equal("low lower lowest", tokenizer.Decode([.. text.Ids]));
    }

    [Fact]
    public void Lower_rank_wins_over_position()
    {
        // "o w" ranks before "l o": low -> l ow, although "l o" comes first in the word.
        var tokenizer = Load(VocabJson("ow", "lo"), "o w\nl o\n");
        Assert.Equal([Byte('l'), 256], tokenizer.Encode("low").Ids);
        Assert.Equal([257], tokenizer.Encode("lo").Ids);
    }

    [Fact]
    public void Repeated_symbols_merge_left_to_right()
    {
        var tokenizer = Load(VocabJson("aa", "aaaa"), "a a\naa aa\n");
        Assert.Equal([256, Byte('a')], tokenizer.Encode("aaa").Ids);
        Assert.Equal([257], tokenizer.Encode("aaaa").Ids);
        Assert.Equal([257, Byte('a')], tokenizer.Encode("aaaaa").Ids);
        Assert.Equal([257, 257, 256], tokenizer.Encode(new string('a', 10)).Ids);
    }

    [Fact]
    public void Runs_of_spaces_are_cut_by_pre_tokenisation_before_merging()
    {
        // A merge of two spaces exists, but "a   b" pre-tokenises to "a", "  ", " b": the last
        // space goes to the word, so only the first two merge (CodeGen's tokenizer gets this wrong).
        var tokenizer = Load(VocabJson("ĠĠ", "Ġb"), "Ġ Ġ\nĠ b\n");
        Assert.Equal([Byte('a'), 256, 257], tokenizer.Encode("a   b").Ids);
        Assert.Equal([Byte('a'), Byte(' '), 257], tokenizer.Encode("a  b").Ids);
        Assert.Equal([256, 256], tokenizer.Encode("    ").Ids);
    }

    [Fact]
    public void Multi_byte_characters_start_as_bytes()
    {
        // é is C3 A9: alphabet "Ã©"; a merge joins it into one token.
        var tokenizer = Load(VocabJson("Ã©"), "Ã ©\n");
        TokenizedText text = tokenizer.Encode("é€");
        Assert.Equal([256, 0xE2, 0x82, 0xAC], text.Ids);
        Assert.Equal(["é", "<0xE2>", "<0x82>", "<0xAC>"], text.Tokens);
        Assert.Equal([new TextSpan(0, 1), new TextSpan(1, 2), new TextSpan(1, 2), new TextSpan(1, 2)], text.Spans);
        Assert.Equal("é€", tokenizer.Decode([.. text.Ids]));
    }

    [Fact]
    public void No_merges_encodes_bytes()
    {
        var tokenizer = Load(VocabJson(), "#version: 0.2\n");
        Assert.Equal([Byte('h'), Byte('i'), 0x20, Byte('x')], tokenizer.Encode("hi x").Ids);
    }

    [Fact]
    public void From_files_reads_both_files_and_names_a_missing_one()
    {
        string vocab = Write("vocab.json", VocabJson("lo")), merges = Write("merges.txt", "l o\n");
        Assert.Equal([256, Byte('w')], Gpt2Tokenizer.FromFiles(vocab, merges).Encode("low").Ids);

        string absent = Path.Combine(folder, "absent.txt");
        var e = Assert.Throws<FileNotFoundException>(() => Gpt2Tokenizer.FromFiles(vocab, absent));
        Assert.Equal(absent, e.FileName);
        Assert.Contains(absent, e.Message, StringComparison.Ordinal);
        Assert.Throws<FileNotFoundException>(() => Gpt2Tokenizer.FromFiles(absent, merges));
        Assert.Throws<ArgumentException>(() => Gpt2Tokenizer.FromFiles("", merges));
        Assert.Throws<ArgumentNullException>(() => Gpt2Tokenizer.FromStreams(null!, new MemoryStream()));
        Assert.Throws<ArgumentNullException>(() => Gpt2Tokenizer.FromStreams(new MemoryStream(), null!));
    }

    [Fact]
    public void Gpt2s_files_select_gpt2s_encoding_whatever_the_line_ends_but_changed_merges_do_not()
    {
        byte[] vocab = File.ReadAllBytes(Gpt2Fixture.EncoderJson);
        string merges = File.ReadAllText(Gpt2Fixture.VocabBpe);
        string[] lines = merges.Split('\n');

        string crlfWithoutHeader = string.Join("\r\n", lines[1..]);
        Assert.True(Gpt2Tokenizer.FromStreams(new MemoryStream(vocab), new MemoryStream(Encoding.UTF8.GetBytes(crlfWithoutHeader))).UsesTiktoken);

        // Swap two merges: still a valid file, no longer GPT-2's.
        (lines[100], lines[101]) = (lines[101], lines[100]);
        var changed = Gpt2Tokenizer.FromStreams(new MemoryStream(vocab), new MemoryStream(Encoding.UTF8.GetBytes(string.Join('\n', lines))));
        Assert.False(changed.UsesTiktoken);
        Assert.Equal(Gpt2Fixture.Default.Encode("Hello, world!").Ids, changed.Encode("Hello, world!").Ids);
    }

    // ---- vocab.json errors ---------------------------------------------------------------------

    [Theory]
    [InlineData("", null, "is empty")]
    [InlineData(" \n\t", null, "is empty")]
    [InlineData("{\n  \"a\": 1,\n", 3, "is not valid JSON at line 3")]
    [InlineData("[1, 2]", 1, "line 1 is not a JSON object of token → id (it starts with StartArray)")]
    [InlineData("{}", null, "has no tokens")]
    [InlineData("{\"a\": 0} x", 1, "is not valid JSON at line 1")]
    public void Malformed_json_names_the_file_and_line(string json, int? line, string problem)
    {
        var e = Assert.Throws<VocabularyFormatException>(() => Load(json, "", "model/vocab.json"));
        Assert.Equal("model/vocab.json", e.VocabularySource);
        Assert.Equal(line, e.LineNumber);
        Assert.StartsWith($"Vocabulary 'model/vocab.json' {problem}", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("LineNumber", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("1.5")]
    [InlineData("-1")]
    [InlineData("3000000000")]
    [InlineData("\"7\"")]
    [InlineData("null")]
    [InlineData("[7]")]
    public void Id_that_is_not_a_non_negative_integer_names_token_and_line(string value)
    {
        string json = VocabJson("ab").Replace("\"ab\": 256", $"\"ab\": {value}", StringComparison.Ordinal);
        var e = Assert.Throws<VocabularyFormatException>(() => Load(json, ""));
        Assert.Equal(258, e.LineNumber);
        Assert.Equal("ab", e.Token);
        Assert.Contains($"line 258 gives token 'ab' the value", e.Message, StringComparison.Ordinal);
        Assert.Contains("not a non-negative 32-bit integer id", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Array_value_and_invalid_utf8_are_named()
    {
        string json = VocabJson("ab").Replace("\"ab\": 256", "\"ab\": [256]", StringComparison.Ordinal);
        var array = Assert.Throws<VocabularyFormatException>(() => Load(json, ""));
        Assert.Equal("Vocabulary 'vocab.json' line 258 gives token 'ab' the value an array, not a non-negative 32-bit integer id.", array.Message);

        byte[] bad = [.. "{\n\"a\": 0,\n\""u8, 0xC3, 0x28, .. "\": 1}"u8];
        var utf8 = Assert.Throws<VocabularyFormatException>(() => Gpt2Tokenizer.FromStreams(new MemoryStream(bad), new MemoryStream()));
        Assert.Equal(3, utf8.LineNumber);
        Assert.Contains("line 3", utf8.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Repeated_token_or_id_and_gaps_are_errors()
    {
        string repeatedToken = VocabJson("ab", "cd").Replace("\"cd\": 257", "\"ab\": 257", StringComparison.Ordinal);
        var token = Assert.Throws<VocabularyFormatException>(() => Load(repeatedToken, ""));
        Assert.Equal((259, "ab"), (token.LineNumber!.Value, token.Token));
        Assert.Contains("line 259 has token 'ab' twice", token.Message, StringComparison.Ordinal);

        string repeatedId = VocabJson("ab", "cd").Replace("\"cd\": 257", "\"cd\": 256", StringComparison.Ordinal);
        var id = Assert.Throws<VocabularyFormatException>(() => Load(repeatedId, ""));
        Assert.Equal((259, "cd"), (id.LineNumber!.Value, id.Token));
        Assert.Contains("line 259 gives id 256 to both 'ab' and 'cd'", id.Message, StringComparison.Ordinal);

        string gap = VocabJson("ab").Replace("\"ab\": 256", "\"ab\": 300", StringComparison.Ordinal);
        var missing = Assert.Throws<VocabularyFormatException>(() => Load(gap, ""));
        Assert.Contains("has no token with id 256 (ids must run from 0 to 257 without gaps)", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Missing_end_of_text_or_byte_token_is_named()
    {
        var eot = Assert.Throws<VocabularyFormatException>(() => Load(VocabJson(["ab"], endOfText: false), ""));
        Assert.Equal("<|endoftext|>", eot.Token);
        Assert.Equal("Vocabulary 'vocab.json' has no end-of-text token '<|endoftext|>'.", eot.Message);

        // Drop the token of byte 0x41 ('A') and renumber the rest.
        string[] tokens = [.. Enumerable.Range(0, 256).Where(b => b != 'A').Select(Alphabet), "<|endoftext|>"];
        string json = "{" + string.Join(",", tokens.Select((t, i) => $"{JsonSerializer.Serialize(t)}: {i}")) + "}";
        var byteToken = Assert.Throws<VocabularyFormatException>(() => Load(json, ""));
        Assert.Equal("A", byteToken.Token);
        Assert.Contains("has no token 'A' for byte 0x41", byteToken.Message, StringComparison.Ordinal);
    }

    // ---- merges.txt errors ---------------------------------------------------------------------

    [Theory]
    [InlineData("#version: 0.2\nl o\nlo\n", 3, "lo")]
    [InlineData("l o w\n", 1, "l o w")]
    [InlineData("l  o\n", 1, "l  o")]
    [InlineData(" lo\n", 1, " lo")]
    [InlineData("l \n", 1, "l ")]
    [InlineData("l o\nl\to\n", 2, "l\to")]
    public void Malformed_merge_line_names_file_line_and_text(string merges, int line, string text)
    {
        var e = Assert.Throws<VocabularyFormatException>(() => Load(VocabJson("lo"), merges, mergesName: "model/merges.txt"));
        Assert.Equal("model/merges.txt", e.VocabularySource);
        Assert.Equal(line, e.LineNumber);
        Assert.Equal(text, e.Token);
        Assert.Equal($"Vocabulary 'model/merges.txt' line {line} '{text}' is not a merge: two tokens separated by one space.", e.Message);
    }

    [Theory]
    [InlineData("l o\nzz o\n", 2, "zz")]
    [InlineData("l o\nlo w\n", 2, "low")]
    public void Merge_of_unknown_tokens_names_the_token(string merges, int line, string token)
    {
        var e = Assert.Throws<VocabularyFormatException>(() => Load(VocabJson("lo"), merges));
        Assert.Equal((line, token), (e.LineNumber!.Value, e.Token));
        Assert.Contains($"line {line} uses '{token}', which the vocabulary does not have", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Repeated_merge_empty_line_and_bad_utf8_are_errors()
    {
        var repeated = Assert.Throws<VocabularyFormatException>(() => Load(VocabJson("lo"), "#version: 0.2\nl o\nl o\n"));
        Assert.Equal(3, repeated.LineNumber);
        Assert.Contains("line 3 repeats the merge 'l o' of line 2", repeated.Message, StringComparison.Ordinal);

        var empty = Assert.Throws<VocabularyFormatException>(() => Load(VocabJson("lo", "ow"), "l o\n\no w\n"));
        Assert.Equal(2, empty.LineNumber);
        Assert.Contains("line 2 is empty", empty.Message, StringComparison.Ordinal);
        Assert.False(Load(VocabJson("lo"), "l o\n\n\n").UsesTiktoken); // trailing empty lines are fine

        byte[] badUtf8 = [.. "l o\n"u8, 0xC3, 0x28, (byte)'\n'];
        var utf8 = Assert.Throws<VocabularyFormatException>(() =>
            Gpt2Tokenizer.FromStreams(new MemoryStream(Encoding.UTF8.GetBytes(VocabJson("lo"))), new MemoryStream(badUtf8)));
        Assert.Equal(2, utf8.LineNumber);
        Assert.Equal("Vocabulary 'merges.txt' line 2 is not valid UTF-8.", utf8.Message);
    }

    private string Write(string name, string content)
    {
        string path = Path.Combine(folder, name);
        File.WriteAllText(path, content);
        return path;
    }
}
