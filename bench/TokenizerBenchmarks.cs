using BenchmarkDotNet.Attributes;
using Headlight.Models.Loading;
using Headlight.Models.Tokenization;
using Headlight.Tests.Tokenization;
using Microsoft.ML.Tokenizers;

namespace Headlight.Bench;

/// <summary>
/// Tokenising the tests' 1,000 random sentences of 8–29 mixed words (accents, emoji, CJK, punctuation) on
/// MiniLM's uncased vocabulary: Headlight's WordPiece tokenizer, which also keeps word spans,
/// against Microsoft.ML.Tokenizers' BertTokenizer on the same vocabulary in the same run.
/// <code>dotnet run -c Release --project bench -- --filter '*TokenizerBenchmarks*'</code>
/// </summary>
[MemoryDiagnoser]
[MinColumn]
public class TokenizerBenchmarks
{
    private string[] sentences = [];
    private BertWordPieceTokenizer headlight = null!;
    private BertTokenizer peer = null!;

    /// <summary>Reads MiniLM's vocab.txt into both tokenizers.</summary>
    [GlobalSetup]
    public void Setup()
    {
        sentences = RandomSentences.Texts();
        string vocab = ModelCatalog.Extract(ModelCatalog.MiniLM).VocabPath;
        headlight = BertWordPieceTokenizer.FromFile(vocab);
        peer = BertTokenizer.Create(vocab);
    }

    /// <summary>Headlight: ids, spans and words for every sentence.</summary>
    [Benchmark(Baseline = true)]
    public long Headlight()
    {
        long tokens = 0;
        foreach (string sentence in sentences)
        {
            tokens += headlight.Encode(sentence).Count;
        }

        return tokens;
    }

    /// <summary>Microsoft.ML.Tokenizers: ids with [CLS] and [SEP].</summary>
    [Benchmark]
    public long MicrosoftMl()
    {
        long tokens = 0;
        foreach (string sentence in sentences)
        {
            tokens += peer.EncodeToIds(sentence).Count;
        }

        return tokens;
    }
}
