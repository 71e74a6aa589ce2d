using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using Headlight.Kernels;
using Headlight.Models.Tokenization;
using Headlight.Models.Training;

namespace Headlight.Bench;

/// <summary>
/// Training on the managed <c>cpu</c> device against the GEMM's own rate in the same run. A Llama-style model of width
/// <c>Width</c> (4 layers, heads of 64, SwiGLU 8/3·width, vocabulary 4,096, tied head), 8 windows of 128 tokens per step.
/// <list type="bullet">
/// <item><c>Step</c>: one optimizer step (forward, fused-head cross-entropy, backward with every weight gradient, clipping,
/// AdamW). <c>Rate</c>: model GFLOP/s = 6·N·tokens / time, N = the matrix parameters a token passes through (blocks and the
/// LM head), attention's T² terms not counted (the usual model-FLOP convention).</item>
/// <item><c>Gemm</c>: one product [1024, width] · [width, 4·width] (the MLP's shape at the step's token count), GFLOP/s.</item>
/// </list>
/// Model FLOP utilisation = Step's Rate ÷ Gemm's Rate.
/// <code>dotnet run -c Release --project bench -- --filter '*TrainingBenchmarks*'</code>
/// </summary>
[Config(typeof(TrainingConfig))]
public class TrainingBenchmarks
{
    private const int Layers = 4, Context = 128, Batch = 8, Vocab = 4096;
    private string folder = "";
    private Device device = null!;
    private Trainer? trainer;
    private Tensor<float> a = null!, b = null!, c = null!;

    /// <summary>Width of the residual stream.</summary>
    [Params(128, 256, 512)]
    public int Width { get; set; } = 128;

    /// <summary>Matrix parameters a token passes through: per layer q, k, v, o (4·d²) and the SwiGLU MLP (3·d·i), plus the LM head.</summary>
    public static double MatrixParameters(int width)
    {
        int inner = new TrainingOptions { Width = width }.IntermediateWidth;
        return (Layers * ((4.0 * width * width) + (3.0 * width * inner))) + ((double)Vocab * width);
    }

    /// <summary>Writes a corpus of random sentences, learns its vocabulary and makes the trainer.</summary>
    [GlobalSetup(Target = nameof(Step))]
    public void SetupTrainer()
    {
        device = Device.Open("cpu");
        folder = Path.Combine(Path.GetTempPath(), $"headlight-bench-train-{Environment.ProcessId}");
        Directory.CreateDirectory(folder);
        var random = new Random(7);
        string[] words = ["the", "model", "reads", "a", "token", "and", "then", "another", "one", "while", "heads", "attend", "to", "earlier", "words",
            "of", "each", "sentence", "in", "order", "learning", "which", "comes", "next", "from", "many", "examples"];
        var lines = Enumerable.Range(0, 20_000).Select(_ => string.Join(' ', Enumerable.Range(0, 12).Select(_ => words[random.Next(words.Length)]))).ToArray();
        string corpusPath = Path.Combine(folder, "corpus.txt");
        File.WriteAllLines(corpusPath, lines);
        string tokenizerPath = Path.Combine(folder, "tokenizer.json");
        ByteLevelBpeTrainer.Train(lines, Vocab, tokenizerPath, new ByteLevelBpeOptions { MinPairFrequency = 1 });
        var corpus = TokenCorpus.Load(corpusPath, HfTokenizer.FromFile(tokenizerPath), null, separatorId: 0);
        var options = new TrainingOptions
        {
            Layers = Layers, Width = Width, Heads = Width / 64, Context = Context, BatchSize = Batch, Tokens = long.MaxValue / 2, WarmupSteps = 10,
        };
        trainer = Trainer.Create(options, corpus, tokenizerPath, Path.Combine(folder, "out"), device);
    }

    /// <summary>The product alone.</summary>
    [GlobalSetup(Target = nameof(Gemm))]
    public void SetupGemm()
    {
        device = Device.Open("cpu");
        var random = new Random(3);
        a = device.FromHost(Enumerable.Range(0, Batch * Context * Width).Select(_ => (float)random.NextDouble()).ToArray(), Batch * Context, Width);
        b = device.FromHost(Enumerable.Range(0, Width * 4 * Width).Select(_ => (float)random.NextDouble()).ToArray(), Width, 4 * Width);
        c = device.Allocate<float>(Batch * Context, 4 * Width);
    }

    /// <summary>Frees everything.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        trainer?.Dispose();
        trainer = null;
        a?.Dispose();
        b?.Dispose();
        c?.Dispose();
        device.Dispose();
        if (folder.Length > 0 && Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>One optimizer step.</summary>
    [Benchmark]
    public double Step() => trainer!.RunStep().Loss;

    /// <summary>The MLP-shaped product at the step's token count.</summary>
    [Benchmark(Baseline = true)]
    public void Gemm() => Headlight.Kernels.Gemm.Forward(a, b, c);

    private sealed class TrainingConfig : ManualConfig
    {
        public TrainingConfig()
        {
            AddJob(Job.Default.WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(10));
            AddColumn(StatisticColumn.Median, StatisticColumn.Min, new RateColumn());
        }
    }

    /// <summary>Model GFLOP/s for Step, GFLOP/s for Gemm.</summary>
    private sealed class RateColumn() : RateColumnBase("GFLOP/s", "Step: 6·N·tokens per second of the mean (model FLOPs); Gemm: 2·m·k·n per second of the mean")
    {
        protected override double Rate(BenchmarkCase benchmarkCase, double nanoseconds)
        {
            int width = (int)benchmarkCase.Parameters["Width"];
            double flops = benchmarkCase.Descriptor.WorkloadMethod.Name == nameof(Step)
                ? 6.0 * MatrixParameters(width) * Batch * Context
                : 2.0 * Batch * Context * width * 4.0 * width;
            return flops / nanoseconds;
        }
    }
}
