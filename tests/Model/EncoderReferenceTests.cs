using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Tests.Model;

/// <summary>
/// The encoder forward pass on real weights (MiniLM-L6, ArcticXs) against ONNX Runtime running the
/// same ONNX file: hidden states, pooler, sentence embeddings and attention probabilities.
/// </summary>
public sealed class EncoderReferenceTests
{
    /// <summary>Relative L2 error allowed for hidden states, pooler and embeddings (the bar).</summary>
    private const double HiddenRelativeL2 = 1e-4;

    /// <summary>Absolute error allowed for attention probabilities.</summary>
    private const double ProbabilityAbsolute = 1e-5;

    /// <summary>Twenty-odd sentences of mixed lengths; with the 1-token and 128-token rows added by <see cref="Batches"/>.</summary>
    public static readonly string[] Corpus =
    [
        "Hi.",
        "The cat sat on the mat.",
        "Where is the nearest train station?",
        "Headlight runs transformer models as GPU kernels and explains what they do.",
        "Café au lait costs €4.50 at the corner shop — cheaper than in Zürich.",
        "def add(x, y): return x + y  # simple",
        "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
        "The quick brown fox jumps over the lazy dog while the farmer watches from the porch, wondering why foxes do that.",
        "Patients with type 2 diabetes were randomised to metformin or placebo for 24 weeks.",
        "What does the attention head in layer three actually look at?",
        "Stocks fell sharply on Tuesday after the central bank raised interest rates by half a point.",
        "I love it!",
        "This product is terrible and I want a refund.",
        "東京は日本の首都です。",
        "Emoji 😀 and symbols © ™ ± ° are rare in training data.",
        "To be, or not to be, that is the question.",
        "A list: apples; oranges; pears; and, finally, plums.",
        "https://example.com/search?q=transformers&page=2",
        "He said \"no\" three times before agreeing.",
        "The mitochondria is the powerhouse of the cell, as every biology student learns early on in school.",
        "Short one",
        "Résumé, naïve, Ångström and façade all carry accents that uncased BERT strips.",
    ];

    public static TheoryData<string> Models => new() { "minilm", "arcticxs" };

    /// <summary>The corpus in three padded batches, plus a 1-token row and a 128-token row.</summary>
    private static IEnumerable<TokenBatch> Batches(Headlight.Models.Model model)
    {
        var tokenizer = (BertWordPieceTokenizer)model.Tokenizer!;
        var texts = Corpus.Select(tokenizer.Encode).ToList();
        string longText = string.Join(" ", Enumerable.Repeat("Interpretability needs faithful, fast explanations for every prediction.", 20));
        texts.Add(tokenizer.Encode(longText).Truncate(128, TruncationMode.LongestFirst));
        Assert.Equal(128, texts[^1].Count);
        texts.Add(TokenizedText.FromIds([tokenizer.ClsTokenId], ["[CLS]"], tokenizer.IsControlToken));
        for (int start = 0; start < texts.Count; start += 8)
        {
            yield return tokenizer.Batch(texts.Skip(start).Take(8).ToList(), 512);
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Cpu_matches_onnx_runtime_on_hidden_states_pooler_embeddings_and_attention(string name)
    {
        using var model = Headlight.Models.Model.Load(name, Backends.Require("cpu"));
        int batches = 0;
        foreach (var batch in Batches(model))
        {
            CompareWithOrt(model, name, batch);
            batches++;
        }

        Assert.Equal(3, batches);
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void Ilgpu_cpu_matches_onnx_runtime_on_short_sentences(string name) => ShortSentences("ilgpu-cpu", name);

    [SkippableTheory]
    [Trait("Category", "OpenCL")]
    [MemberData(nameof(Models))]
    public void OpenCL_matches_onnx_runtime_on_short_sentences(string name) => ShortSentences("opencl", name);

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void Cuda_matches_onnx_runtime(string name)
    {
        var device = Backends.Require("cuda");
        using var model = Headlight.Models.Model.Load(name, device);
        foreach (var batch in Batches(model))
        {
            CompareWithOrt(model, name, batch);
        }
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void A_sentence_alone_equals_the_same_sentence_padded_in_a_batch(string name)
    {
        using var model = Headlight.Models.Model.Load(name, Backends.Require("cpu"));
        string sentence = "Where is the nearest train station?";
        var capture = Enumerable.Range(0, model.Config.Layers).Select(ActivationNames.AttentionProbs).ToArray();
        var alone = model.Forward(model.Tokenize([sentence]), capture);
        var padded = model.Forward(model.Tokenize([Corpus[7], sentence, "Hi."]), capture);
        int t = alone.SequenceLength;
        int tp = padded.SequenceLength;
        int d = model.Config.Hidden;
        Assert.True(tp > t);
        for (int pos = 0; pos < t; pos++)
        {
            for (int j = 0; j < d; j++)
            {
                Assert.Equal(alone.LastHiddenState[(pos * d) + j], padded.LastHiddenState[(((1 * tp) + pos) * d) + j], 5e-6f);
            }
        }

        int heads = model.Config.Heads;
        foreach (string c in capture)
        {
            var a = alone.Activations[c];
            var p = padded.Activations[c];
            for (int h = 0; h < heads; h++)
            {
                for (int q = 0; q < t; q++)
                {
                    for (int k = 0; k < tp; k++)
                    {
                        // Padded keys get exactly 0; real ones agree up to rounding (the GEMM takes other code paths for other row counts).
                        if (k >= t)
                        {
                            Assert.True(p[1, h, q, k] == 0f, $"padded key {k} has probability {p[1, h, q, k]}");
                        }
                        else
                        {
                            Assert.Equal(a[0, h, q, k], p[1, h, q, k], 1e-5f);
                        }
                    }
                }
            }
        }

        Assert.Equal(alone.SentenceEmbeddings![0], padded.SentenceEmbeddings![1], new FloatTolerance(2e-6f));
    }

    private static void ShortSentences(string backend, string name)
    {
        var device = Backends.Require(backend);
        using var model = Headlight.Models.Model.Load(name, device);
        var batch = model.Tokenize(["Hi.", "The cat sat on the mat.", "Where is it?"]);
        CompareWithOrt(model, name, batch);
    }

    private static void CompareWithOrt(Headlight.Models.Model model, string name, TokenBatch batch)
    {
        int layers = model.Config.Layers;
        var capture = Enumerable.Range(0, layers).Select(ActivationNames.AttentionProbs).ToArray();
        var ours = model.Forward(batch, capture);
        var reference = OrtReferee.Run(name, batch);
        int b = batch.BatchSize;
        int t = batch.SequenceLength;
        int d = model.Config.Hidden;
        string where = $"{name} on {model.Device.Name}, batch of {b} x {t}";

        for (int r = 0; r < b; r++)
        {
            AssertRelativeL2(reference.Hidden.AsSpan(r * t * d, t * d), ours.LastHiddenState.AsSpan(r * t * d, t * d), $"{where}: last_hidden_state row {r}");
        }

        if (reference.Pooler is not null)
        {
            Assert.NotNull(ours.Pooler);
            for (int r = 0; r < b; r++)
            {
                AssertRelativeL2(reference.Pooler.AsSpan(r * d, d), ours.Pooler.AsSpan(r * d, d), $"{where}: pooler row {r}");
            }
        }

        // Sentence embeddings pooled from ORT's hidden state the same way the model defines.
        var pooledReference = Pool(model, reference.Hidden, batch);
        for (int r = 0; r < b; r++)
        {
            AssertRelativeL2(pooledReference[r], ours.SentenceEmbeddings![r], $"{where}: sentence embedding row {r}");
        }

        var mask = batch.AttentionMask.Span;
        for (int l = 0; l < layers; l++)
        {
            var p = ours.Activations[ActivationNames.AttentionProbs(l)];
            Assert.Equal([b, model.Config.Heads, t, t], p.Shape);
            var expected = reference.Probabilities[l];
            for (int i = 0; i < expected.Length; i++)
            {
                int key = i % t;
                int row = i / (model.Config.Heads * t * t);
                if (mask[(row * t) + key] == 0)
                {
                    Assert.True(p.Data[i] == 0f, $"{where}: layer {l}: padded key {key} of row {row} has probability {p.Data[i]}, expected exactly 0.");
                }
                else if (Math.Abs(p.Data[i] - expected[i]) > ProbabilityAbsolute)
                {
                    Assert.Fail($"{where}: layer {l}: probability {i} is {p.Data[i]}, ORT {expected[i]} (allowed {ProbabilityAbsolute}).");
                }
            }
        }
    }

    private static float[][] Pool(Headlight.Models.Model model, float[] hidden, TokenBatch batch)
    {
        var mode = model.Config.Pooling!.Value;
        int b = batch.BatchSize;
        int t = batch.SequenceLength;
        int d = model.Config.Hidden;
        var mask = batch.AttentionMask.Span;
        var result = new float[b][];
        for (int r = 0; r < b; r++)
        {
            var v = new double[d];
            int count = 0;
            for (int pos = 0; pos < t; pos++)
            {
                if (mode == Headlight.Models.Loading.PoolingMode.Cls ? pos == 0 : mask[(r * t) + pos] != 0)
                {
                    count++;
                    for (int j = 0; j < d; j++)
                    {
                        v[j] += hidden[(((r * t) + pos) * d) + j];
                    }
                }
            }

            double norm = Math.Sqrt(v.Sum(x => (x / count) * (x / count)));
            result[r] = v.Select(x => (float)(x / count / norm)).ToArray();
        }

        return result;
    }

    private static void AssertRelativeL2(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double num = 0;
        double den = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.False(float.IsNaN(actual[i]), $"{what}: NaN at {i}");
            double diff = (double)actual[i] - expected[i];
            num += diff * diff;
            den += (double)expected[i] * expected[i];
        }

        double rel = Math.Sqrt(num / Math.Max(den, 1e-30));
        Assert.True(rel <= HiddenRelativeL2, $"{what}: relative L2 error {rel:E3} > {HiddenRelativeL2:E1}");
    }
}

/// <summary>Element-wise float equality within a tolerance, for Assert.Equal on sequences.</summary>
internal sealed class FloatTolerance(float tolerance) : IEqualityComparer<float>
{
    public bool Equals(float x, float y) => Math.Abs(x - y) <= tolerance;

    public int GetHashCode(float obj) => 0;
}
