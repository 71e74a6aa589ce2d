using BenchmarkDotNet.Attributes;
using Headlight.Explain;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Loading;
using Headlight.Models.Tokenization;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Headlight.Bench;

/// <summary>
/// Kernel SHAP on MiniLM for a 20-word sentence (22 tokens) with 2,048 coalitions (similarity target, words masked
/// with [MASK]), against the same number of batched forward passes of that length through Headlight's
/// allocation-free forward (<c>Model.Forward(batch, lastHiddenState)</c>), and against ONNX Runtime running 2,048
/// masked inputs of that length in batches of the same size (the route a .NET user has today), all on the CPU in
/// the same run. The bar is SHAP ≤ 1.2 × the forwards.
/// </summary>
[MemoryDiagnoser]
[MinColumn]
[SimpleJob(launchCount: 1, warmupCount: 1, iterationCount: 5, invocationCount: 1)]
public class ShapBenchmarks
{
    private const int Coalitions = 2048;
    private const string Text = "The quick brown fox jumps over the lazy dog while the children watch from the old wooden bridge near town";

    private Device device = null!;
    private Model model = null!;
    private TokenBatch input = null!;
    private EmbeddingSimilarityTarget target = null!;
    private KernelShapOptions options = null!;
    private TokenBatch[] forwardBatches = [];
    private float[][] hidden = [];
    private InferenceSession? session;
    private (long[] Ids, long[] Mask, long[] Types, int Rows)[] ortBatches = [];

    /// <summary>Loads MiniLM, tokenises the sentence and prepares the forward batches.</summary>
    [GlobalSetup(Targets = [nameof(Forwards), nameof(KernelShap2048)])]
    public void Setup() => Setup(withOnnxRuntime: false);

    /// <summary>The same, plus an ONNX Runtime session and its masked batches (loaded only for its own rows: its idle threads spin).</summary>
    [GlobalSetup(Target = nameof(OnnxRuntimeForwards))]
    public void SetupOnnxRuntime() => Setup(withOnnxRuntime: true);

    /// <summary>Frees the model, the device and the session.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        session?.Dispose();
        model.Dispose();
        device.Dispose();
    }

    /// <summary>2,048 rows of 22 tokens through the forward pass to the last hidden state, in batches of the size SHAP uses.</summary>
    [Benchmark(Baseline = true)]
    public int Forwards()
    {
        int rows = 0;
        for (int b = 0; b < forwardBatches.Length; b++)
        {
            model.Forward(forwardBatches[b], hidden[b]);
            rows += forwardBatches[b].BatchSize;
        }

        return rows;
    }

    /// <summary>Kernel SHAP with 2,048 coalitions (plus the empty and the full one).</summary>
    [Benchmark]
    public AttributionResult KernelShap2048() => Explainer.Explain(model, input, target, options);

    /// <summary>ONNX Runtime: 2,048 masked rows in batches of the same size.</summary>
    [Benchmark]
    public int OnnxRuntimeForwards()
    {
        int rows = 0;
        int seq = input.SequenceLength;
        foreach (var (ids, mask, types, count) in ortBatches)
        {
            int[] dims = [count, seq];
            var feeds = new List<NamedOnnxValue>
            {
                NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(ids, dims)),
                NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(mask, dims)),
                NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor<long>(types, dims)),
            };
            using var results = session!.Run(feeds);
            rows += count;
        }

        return rows;
    }

    private void Setup(bool withOnnxRuntime)
    {
        device = Device.Open("cpu");
        model = Model.Load("minilm", device);
        input = model.Tokenize([Text]);
        var text = input.Texts[0];
        if (text.Words.Count != 20 || text.Count != 22)
        {
            throw new InvalidOperationException($"The benchmark sentence has {text.Words.Count} words in {text.Count} tokens, not 20 in 22.");
        }

        target = new EmbeddingSimilarityTarget("Who is watching the animals?");
        target.Prepare(model, input);
        options = new KernelShapOptions { Budget = Coalitions, Seed = 1 };

        // The batch size SHAP picks for 2,050 rows under the default memory budget.
        int seq = input.SequenceLength;
        int chunk = PassRunner.BatchRows(model, Coalitions + 2, new PassRequest { Rows = 1, SequenceLength = seq }, options.MemoryBudgetBytes, equalBatches: true);
        var tokenizer = (BertWordPieceTokenizer)model.Tokenizer!;
        var random = new Random(5);
        var masked = new List<int[]>();
        for (int r = 0; r < Coalitions; r++)
        {
            masked.Add(text.Ids.Select((id, t) => t == 0 || t == seq - 1 || random.Next(2) == 1 ? id : tokenizer.MaskTokenId).ToArray());
        }

        forwardBatches = masked.Chunk(chunk).Select(rows => model.FromIds(rows.Select(r => (IReadOnlyList<int>)r).ToArray())).ToArray();
        hidden = forwardBatches.Select(b => new float[b.BatchSize * b.SequenceLength * model.Config.Hidden]).ToArray();
        Console.WriteLine($"// {Coalitions} rows of {seq} tokens in {forwardBatches.Length} batches of up to {chunk}");
        if (!withOnnxRuntime)
        {
            return;
        }

        // Default session options, as in ForwardBenchmarks: ONNX Runtime picks its own thread count.
        session = new InferenceSession(ModelCatalog.Extract("minilm").ModelPath);
        ortBatches = masked.Chunk(chunk).Select(rows =>
        {
            long[] ids = rows.SelectMany(r => r.Select(id => (long)id)).ToArray();
            long[] mask = new long[ids.Length];
            Array.Fill(mask, 1L);
            return (ids, mask, new long[ids.Length], rows.Length);
        }).ToArray();
    }
}
