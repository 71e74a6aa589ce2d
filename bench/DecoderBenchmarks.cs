using System.Globalization;
using System.Text.Json.Nodes;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Tests.Model;

namespace Headlight.Bench;

/// <summary>
/// Decoders on the managed <c>cpu</c> device, each against its own bound measured in the same run. Two random models of
/// about 160 M parameters (written once as Hugging Face folders by <see cref="RandomDecoderFolder"/>): <c>pythia-160m</c>
/// (Pythia-160M's config: GPT-NeoX, hidden 768, 12 layers, 12 heads, MLP 3072, vocabulary 50,304, untied) and
/// <c>llama-160m</c> (<see cref="RandomDecoderFolder.Llama160M"/>: hidden 768, 12 layers, 12 heads / 4 kv heads, SwiGLU
/// 2048, vocabulary 50,304, untied).
/// <list type="bullet">
/// <item><c>Prefill</c>: the forward pass of <c>Batch</c> rows of 128 tokens (logits at every position), against
/// <c>Gemms</c>: the same matrix products alone (the four packed block matrices of every layer and the LM head, same
/// shapes, same operands' sizes). <c>Rate</c> is GFLOP/s, counting 2·(matrix parameters)·tokens plus causal attention
/// 2·T²·d per layer and row (QKᵀ and PV each 2·T²·d, halved by the mask).</item>
/// <item><c>Decode</c>: 32 greedy tokens from a one-token prompt with the key–value cache (every step runs one token), against
/// <c>Copy</c>: a 512 MiB parallel span copy. <c>Rate</c> is tokens/s for decode and GB/s (bytes read + written) for the
/// copy; <c>Read</c>: a 512 MiB parallel sum (read-only, as decoding reads its weights), GB/s. The bound is the larger
/// of the two bandwidths ÷ (4 bytes × matrix parameters incl. the LM head) per token.</item>
/// </list>
/// <code>dotnet run -c Release --project bench -- --filter '*Decoder*'</code>
/// </summary>
[Config(typeof(DecoderConfig))]
public class DecoderBenchmarks
{
    private const int Seq = 128, DecodeTokens = 32;
    private const long CopyBytes = 512L << 20;
    private string folder = "";
    private Device device = null!;
    private Model? model;
    private Headlight.Models.Tokenization.TokenBatch batch = null!;
    private readonly List<(Tensor<float> X, PackedWeight W, Tensor<float> Y)> products = [];
    private readonly List<IDisposable> owned = [];
    private (Tensor<float> X, Tensor<float> W, Tensor<float> Y) head;
    private float[] copyFrom = [];
    private float[] copyTo = [];

    /// <summary>Which model: <c>pythia-160m</c> or <c>llama-160m</c>.</summary>
    [Params("pythia-160m", "llama-160m")]
    public string Model { get; set; } = "pythia-160m";

    /// <summary>Rows of 128 tokens (prefill and its products; decode runs one row).</summary>
    [Params(1, 4)]
    public int Batch { get; set; } = 1;

    /// <summary>The config a model name stands for.</summary>
    public static JsonObject ConfigOf(string name) => name == "pythia-160m" ? RandomDecoderFolder.Pythia160M() : RandomDecoderFolder.Llama160M();

    /// <summary>The floating-point operations of one prefill of <paramref name="rows"/> × 128 tokens, or of its products alone.</summary>
    public static double PrefillFlops(string name, int rows, bool attention)
    {
        var c = ConfigOf(name);
        double tokens = (double)rows * Seq;
        double flops = 2.0 * RandomDecoderFolder.MatmulParameters(c) * tokens;
        if (attention)
        {
            int d = c["num_attention_heads"]!.GetValue<int>() * 64;
            flops += c["num_hidden_layers"]!.GetValue<int>() * rows * 2.0 * Seq * Seq * d;
        }

        return flops;
    }

    /// <summary>Writes and loads the model (not for <c>Copy</c>), or builds the products alone (<c>Gemms</c>).</summary>
    [GlobalSetup(Targets = [nameof(Prefill), nameof(Decode)])]
    public void SetupModel()
    {
        folder = Path.Combine(Path.GetTempPath(), $"headlight-bench-{Model}-{Environment.ProcessId}");
        Directory.CreateDirectory(folder);
        RandomDecoderFolder.Write(folder, ConfigOf(Model), seed: 160);
        device = Device.Open("cpu");
        model = Headlight.Models.Model.Load(folder, device);
        var random = new Random(42);
        batch = model.FromIds(Enumerable.Range(0, Batch).Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, Seq).Select(_ => random.Next(50304)).ToArray()).ToList());
        model.Forward(batch);
        Decode();
    }

    /// <summary>Random operands of the model's shapes: per layer its four block matrices (packed, as the model packs them) and the LM head.</summary>
    [GlobalSetup(Target = nameof(Gemms))]
    public void SetupGemms()
    {
        device = Device.Open("cpu");
        var c = ConfigOf(Model);
        int d = c["hidden_size"]!.GetValue<int>(), inter = c["intermediate_size"]!.GetValue<int>(), layers = c["num_hidden_layers"]!.GetValue<int>();
        int heads = c["num_attention_heads"]!.GetValue<int>(), kvHeads = c["num_key_value_heads"]?.GetValue<int>() ?? heads;
        bool neox = c["model_type"]!.GetValue<string>() == "gpt_neox";
        int m = Batch * Seq;
        (int K, int N)[] shapes = neox
            ? [(d, 3 * d), (d, d), (d, inter), (inter, d)]
            : [(d, (heads + (2 * kvHeads)) * 64), (heads * 64, d), (d, 2 * inter), (inter, d)];
        var random = new Random(1);
        Tensor<float> Random(int rows, int columns)
        {
            var data = new float[rows * columns];
            for (int i = 0; i < data.Length; i++)
            {
                data[i] = (2 * random.NextSingle()) - 1;
            }

            var t = device.FromHost<float>(data, rows, columns);
            owned.Add(t);
            return t;
        }

        for (int l = 0; l < layers; l++)
        {
            foreach (var (k, n) in shapes)
            {
                var packed = Gemm.Prepack(Random(k, n));
                owned.Add(packed);
                products.Add((Random(m, k), packed, Random(m, n)));
            }
        }

        int vocab = c["vocab_size"]!.GetValue<int>();
        head = (Random(m, d), Random(vocab, d), Random(m, vocab));
        Gemms();
    }

    /// <summary>Two 512 MiB arrays.</summary>
    [GlobalSetup(Targets = [nameof(Copy), nameof(Read)])]
    public void SetupCopy()
    {
        copyFrom = new float[CopyBytes / 4];
        copyTo = new float[CopyBytes / 4];
        copyFrom.AsSpan().Fill(1);
        Copy();
    }

    /// <summary>Frees whatever the setup made.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        model?.Dispose();
        foreach (var o in owned)
        {
            o.Dispose();
        }

        device?.Dispose();
        if (folder.Length > 0)
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Logits [Batch, 128, 50304].</summary>
    [Benchmark]
    public ForwardResult Prefill() => model!.Forward(batch);

    /// <summary>The prefill's matrix products alone.</summary>
    [Benchmark]
    public void Gemms()
    {
        foreach (var (x, w, y) in products)
        {
            Gemm.ForwardPacked(x, w, y);
        }

        Gemm.Forward(head.X, head.W, head.Y, transposeB: true);
    }

    /// <summary>32 one-token steps with the key–value cache.</summary>
    [Benchmark]
    public IReadOnlyList<int> Decode() => model!.Generate([7], new GenerationOptions { MaxNewTokens = DecodeTokens, StopAtEndOfSequence = false }).Tokens;

    /// <summary>A 512 MiB copy on both cores.</summary>
    [Benchmark]
    public void Copy()
    {
        const int parts = 8;
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, p =>
        {
            int n = copyFrom.Length / parts;
            copyFrom.AsSpan(p * n, n).CopyTo(copyTo.AsSpan(p * n, n));
        });
    }

    /// <summary>A 512 MiB parallel sum: a read-only stream, as decoding reads its weights.</summary>
    [Benchmark]
    public float Read()
    {
        const int parts = 8;
        var sums = new float[parts];
        Parallel.For(0, parts, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, p =>
        {
            int n = copyFrom.Length / parts;
            sums[p] = System.Numerics.Tensors.TensorPrimitives.Sum(copyFrom.AsSpan(p * n, n));
        });
        return sums.Sum();
    }

    private sealed class DecoderConfig : ManualConfig
    {
        public DecoderConfig()
        {
            AddJob(Job.Default.WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(8));
            AddColumn(StatisticColumn.Median, StatisticColumn.Min, new RateColumn());
            AddFilter(new BenchmarkDotNet.Filters.SimpleFilter(b =>
            {
                // Decode and Copy do not depend on Batch: run them once (Batch = 1).
                string method = b.Descriptor.WorkloadMethod.Name;
                return method is nameof(Prefill) or nameof(Gemms) || (int)b.Parameters["Batch"] == 1;
            }));
            AddFilter(new BenchmarkDotNet.Filters.SimpleFilter(b =>
                b.Descriptor.WorkloadMethod.Name is not (nameof(Copy) or nameof(Read)) || (string)b.Parameters["Model"] == "pythia-160m"));
        }
    }

    /// <summary>GFLOP/s for prefill and its products, tokens/s for decode, GB/s for the copy.</summary>
    private sealed class RateColumn() : RateColumnBase("Rate", "Prefill, Gemms: GFLOP/s of the mean; Decode: tokens/s; Copy: GB/s (read + written); Read: GB/s")
    {
        protected override double Rate(BenchmarkCase benchmarkCase, double nanoseconds)
        {
            string name = (string)benchmarkCase.Parameters["Model"];
            int rows = (int)benchmarkCase.Parameters["Batch"];
            return benchmarkCase.Descriptor.WorkloadMethod.Name switch
            {
                nameof(Prefill) => PrefillFlops(name, rows, attention: true) / nanoseconds,
                nameof(Gemms) => PrefillFlops(name, rows, attention: false) / nanoseconds,
                nameof(Decode) => DecodeTokens / (nanoseconds * 1e-9),
                nameof(Read) => CopyBytes / nanoseconds,
                _ => 2.0 * CopyBytes / nanoseconds,
            };
        }
    }
}
