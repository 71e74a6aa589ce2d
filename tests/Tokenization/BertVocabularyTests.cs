using System.Text;
using Headlight.Models.Tokenization;

namespace Headlight.Tests.Tokenization;

/// <summary>Loading vocab.txt: real files, line endings, and typed errors for bad files.</summary>
public sealed class BertVocabularyTests : IDisposable
{
    private const string Specials = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
    private readonly string folder = Directory.CreateTempSubdirectory("headlight-vocab-tests-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    [Fact]
    public void Loads_the_packaged_vocabulary_from_a_file()
    {
        string path = Write("vocab.txt", TestVocab.Bytes());
        var fromFile = BertWordPieceTokenizer.FromFile(path);
        Assert.Equal(30522, fromFile.VocabularySize);
        Assert.Equal(TestVocab.Tokenizer().Encode("Hello, world!").Ids, fromFile.Encode("Hello, world!").Ids);
    }

    [Fact]
    public void Missing_file_names_the_path()
    {
        string path = Path.Combine(folder, "absent", "vocab.txt");
        var e = Assert.Throws<FileNotFoundException>(() => BertWordPieceTokenizer.FromFile(path));
        Assert.Equal(path, e.FileName);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => BertWordPieceTokenizer.FromFile(""));
        Assert.Throws<ArgumentNullException>(() => BertWordPieceTokenizer.FromStream(null!));
    }

    [Theory]
    [InlineData("")]
    [InlineData("\n\n")]
    [InlineData("\uFEFF")]
    public void Empty_file_is_a_format_error_naming_the_file(string content)
    {
        string path = Write("empty.txt", content);
        var e = Assert.Throws<VocabularyFormatException>(() => BertWordPieceTokenizer.FromFile(path));
        Assert.Equal(path, e.VocabularySource);
        Assert.Equal($"Vocabulary '{path}' is empty.", e.Message);
    }

    [Fact]
    public void Duplicate_token_names_the_token_and_both_lines()
    {
        string path = Write("dup.txt", Specials + "hello\nworld\nhello\n");
        var e = Assert.Throws<VocabularyFormatException>(() => BertWordPieceTokenizer.FromFile(path));
        Assert.Equal(8, e.LineNumber);
        Assert.Equal("hello", e.Token);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Contains("token 'hello' on line 8 repeats line 6", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("[MASK]", "MaskToken")]
    [InlineData("[UNK]", "UnknownToken")]
    [InlineData("[CLS]", "ClsToken")]
    [InlineData("[SEP]", "SepToken")]
    [InlineData("[PAD]", "PadToken")]
    public void Missing_special_token_names_the_field_and_token(string missing, string field)
    {
        string content = Specials.Replace(missing + "\n", string.Empty, StringComparison.Ordinal) + "hello\n";
        var e = Assert.Throws<VocabularyFormatException>(() => Load(content, "model/vocab.txt"));
        Assert.Equal(missing, e.Token);
        Assert.Null(e.LineNumber);
        Assert.Equal($"Vocabulary 'model/vocab.txt' has no {field} '{missing}'.", e.Message);
    }

    [Fact]
    public void Empty_line_inside_the_file_is_an_error_but_trailing_ones_are_not()
    {
        var e = Assert.Throws<VocabularyFormatException>(() => Load(Specials + "a\n\nb\n"));
        Assert.Equal(7, e.LineNumber);
        Assert.Contains("line 7 is empty", e.Message, StringComparison.Ordinal);
        Assert.Equal(6, Load(Specials + "a\n\n\n").VocabularySize);
    }

    [Fact]
    public void Invalid_utf8_is_a_format_error()
    {
        byte[] bytes = [.. Encoding.UTF8.GetBytes(Specials + "ok\n"), 0xC3, 0x28, (byte)'\n'];
        var e = Assert.Throws<VocabularyFormatException>(() => BertWordPieceTokenizer.FromStream(new MemoryStream(bytes), null, "bad.txt"));
        Assert.Contains("'bad.txt' is not valid UTF-8", e.Message, StringComparison.Ordinal);
        Assert.IsType<DecoderFallbackException>(e.InnerException);
    }

    [Fact]
    public void Line_endings_and_byte_order_mark_do_not_change_ids()
    {
        string lf = Specials + "hello\nworld\n";
        var a = Load(lf);
        var b = Load(lf.Replace("\n", "\r\n", StringComparison.Ordinal));
        var c = Load("\uFEFF" + lf);
        foreach (var tokenizer in new[] { a, b, c })
        {
            Assert.Equal(7, tokenizer.VocabularySize);
            Assert.Equal(0, tokenizer.PadTokenId);
            Assert.Equal([2, 5, 6, 3], tokenizer.Encode("hello world").Ids);
        }
    }

    [Fact]
    public void Special_token_names_and_options_come_from_the_options()
    {
        var options = BertTokenizerOptions.Uncased with
        {
            UnknownToken = "<unk>", ClsToken = "<s>", SepToken = "</s>", PadToken = "<pad>", MaskToken = "<mask>",
        };
        var tokenizer = Load("<pad>\n<s>\n</s>\n<unk>\n<mask>\nhi\n", options: options);
        Assert.Equal([1, 5, 3, 2], tokenizer.Encode("hi there").Ids);
        Assert.Same(options, tokenizer.Options);

        Assert.Throws<ArgumentOutOfRangeException>(() => Load(Specials, options: BertTokenizerOptions.Uncased with { MaxInputCharsPerWord = 0 }));
        Assert.Throws<ArgumentException>(() => Load(Specials, options: BertTokenizerOptions.Uncased with { ContinuingSubwordPrefix = "" }));
    }

    private static BertWordPieceTokenizer Load(string content, string source = "test-vocab.txt", BertTokenizerOptions? options = null) =>
        BertWordPieceTokenizer.FromStream(new MemoryStream(Encoding.UTF8.GetBytes(content)), options, source);

    private string Write(string name, string content) => Write(name, Encoding.UTF8.GetBytes(content));

    private string Write(string name, byte[] content)
    {
        string path = Path.Combine(folder, name);
        File.WriteAllBytes(path, content);
        return path;
    }
}
