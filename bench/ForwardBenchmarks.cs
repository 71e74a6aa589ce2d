using System.Globalization;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Loading;
using Headlight.Models.Tokenization;
using Microsoft.ML.OnnxRuntime;

namespace Headlight.Bench;

/// <summary>
/// The MiniLM-L6 forward pass (last hidden state) at 1, 8 and 32 rows of 128 tokens: Headlight on the managed
/// <c>cpu</c> device, writing into a caller's buffer, against ONNX Runtime 1.31.1 running the same ONNX file with
/// default session options (two intra-op threads, every graph optimisation) and pre-allocated outputs, in the
/// same run. The Ratio column is Headlight's time over ONNX Runtime's. ONNX Runtime is loaded only for its own
/// rows: its idle threads spin and would take the CPU from Headlight's.
/// <code>dotnet run -c Release --project bench -- --filter '*ForwardBenchmarks*'</code>
/// </summary>
[Config(typeof(ForwardConfig))]
[SimpleJob(launchCount: 1, warmupCount: 6, iterationCount: 20)]
public class ForwardBenchmarks
{
    private const int Seq = 128;

    private Model? model;
    private TokenBatch? batch;
    private float[] hidden = [];
    private InferenceSession? session;
    private RunOptions? runOptions;
    private string[] inputNames = [];
    private OrtValue[] inputs = [];
    private string[] outputNames = [];
    private OrtValue[] outputs = [];

    /// <summary>Rows of 128 tokens.</summary>
    [Params(1, 8, 32)]
    public int Batch { get; set; } = 1;

    /// <summary>FLOPs of one MiniLM-L6 forward: six blocks of four GEMMs (2·m·k·n) and attention (4·B·H·T²·D).</summary>
    public static double ForwardFlops(int batch)
    {
        const int Layers = 6, D = 384, I = 1536, H = 12;
        double m = (double)batch * Seq;
        double gemms = 2 * m * D * ((3 * D) + D + I) + (2 * m * I * D);
        double attention = 4.0 * batch * H * Seq * Seq * (D / H);
        return Layers * (gemms + attention);
    }

    /// <summary>Loads MiniLM on the <c>cpu</c> device (weights packed once) and runs the first pass of this shape.</summary>
    [GlobalSetup(Target = nameof(Headlight))]
    public void SetupHeadlight()
    {
        model = Model.Load("minilm", new CpuDevice());
        batch = model.FromIds(Ids().Select(row => (IReadOnlyList<int>)row).ToList());
        hidden = new float[Batch * Seq * model.Config.Hidden];
        model.Forward(batch, hidden);
    }

    /// <summary>Opens the ONNX Runtime session and binds inputs and outputs once.</summary>
    [GlobalSetup(Target = nameof(OnnxRuntime))]
    public void SetupOnnxRuntime()
    {
        string path = ModelCatalog.Extract(ModelCatalog.MiniLM).ModelPath;
        using var options = new SessionOptions();
        session = new InferenceSession(path, options);
        runOptions = new RunOptions();
        long[] ids = Ids().SelectMany(row => row).Select(id => (long)id).ToArray();
        long[] shape = [Batch, Seq];
        inputNames = ["input_ids", "attention_mask", "token_type_ids"];
        inputs =
        [
            OrtValue.CreateTensorValueFromMemory(ids, shape),
            OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, Batch * Seq).ToArray(), shape),
            OrtValue.CreateTensorValueFromMemory(new long[Batch * Seq], shape),
        ];

        // Every graph output, pre-allocated: last_hidden_state [B, T, 384] and the pooler [B, 384].
        outputNames = session.OutputMetadata.Keys.ToArray();
        outputs = outputNames.Select(name =>
        {
            var dims = session.OutputMetadata[name].Dimensions;
            long[] outShape = dims.Length == 3 ? [Batch, Seq, dims[2]] : [Batch, dims[^1]];
            return OrtValue.CreateTensorValueFromMemory(new float[outShape.Aggregate(1L, (a, b) => a * b)], outShape);
        }).ToArray();
        session.Run(runOptions, inputNames, inputs, outputNames, outputs);
    }

    /// <summary>Frees the model, the session and the bound values.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var v in inputs.Concat(outputs))
        {
            v.Dispose();
        }

        session?.Dispose();
        runOptions?.Dispose();
        if (model is not null)
        {
            var device = model.Device;
            model.Dispose();
            device.Dispose();
        }
    }

    /// <summary>Headlight: <c>Model.Forward(batch, lastHiddenState)</c> on the <c>cpu</c> device.</summary>
    [Benchmark]
    public void Headlight() => model!.Forward(batch!, hidden);

    /// <summary>ONNX Runtime on the same ONNX file.</summary>
    [Benchmark(Baseline = true)]
    public void OnnxRuntime() => session!.Run(runOptions!, inputNames, inputs, outputNames, outputs);

    // Fixed pseudo-random ids: [CLS], 126 word pieces, [SEP] per row; no padding.
    private int[][] Ids()
    {
        var random = new Random(42);
        return Enumerable.Range(0, Batch)
            .Select(_ => Enumerable.Range(0, Seq).Select(i => i == 0 ? 101 : i == Seq - 1 ? 102 : random.Next(1000, 29000)).ToArray())
            .ToArray();
    }

    /// <summary>Adds the memory diagnoser and the GFLOP/s column.</summary>
    private sealed class ForwardConfig : ManualConfig
    {
        public ForwardConfig()
        {
            AddDiagnoser(MemoryDiagnoser.Default);
            AddColumn(new ForwardGflopsColumn());
        }
    }

    /// <summary>GFLOP/s of the mean time, from <see cref="ForwardFlops"/>.</summary>
    private sealed class ForwardGflopsColumn : IColumn
    {
        public string Id => nameof(ForwardGflopsColumn);

        public string ColumnName => "GFLOP/s";

        public bool AlwaysShow => true;

        public ColumnCategory Category => ColumnCategory.Custom;

        public int PriorityInCategory => 0;

        public bool IsNumeric => true;

        public UnitType UnitType => UnitType.Dimensionless;

        public string Legend => "Six blocks of four GEMMs (2·m·k·n) and attention (4·B·H·T²·D) divided by the mean time";

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            double? mean = summary[benchmarkCase]?.ResultStatistics?.Mean;
            if (mean is not > 0)
            {
                return "-";
            }

            int rows = (int)benchmarkCase.Parameters[nameof(Batch)];
            return (ForwardFlops(rows) / mean.Value).ToString("F1", CultureInfo.InvariantCulture);
        }

        public bool IsAvailable(Summary summary) => true;

        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    }
}
