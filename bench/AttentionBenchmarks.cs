using System.Globalization;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using Headlight.Kernels;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Bench;

/// <summary>
/// Fused attention forward and backward at MiniLM sizes (12 heads × 32, T = 128, batch 1 and 8) and
/// GPT-2 small sizes (12 heads × 64, T = 256, causal), with the peer in the same run: a naive unfused
/// managed attention that materialises the <c>[T, T]</c> scores, applies TensorPrimitives.SoftMax per
/// row and multiplies by V. Q, K and V come from one packed QKV buffer, as a model produces them.
/// <c>dotnet run -c Release --project bench -- --filter '*AttentionBenchmarks*'</c>
/// </summary>
[Config(typeof(AttentionConfig))]
[MemoryDiagnoser]
[SimpleJob(launchCount: 1, warmupCount: 5, iterationCount: 15)]
public class AttentionBenchmarks
{
    private Device device = null!;
    private Tensor<float> qkv = null!;
    private Tensor<float> output = null!;
    private Tensor<float> logSumExp = null!;
    private Tensor<float> probabilities = null!;
    private Tensor<float> dOutput = null!;
    private Tensor<float> dqkv = null!;
    private Tensor<float> delta = null!;
    private float[] hostQkv = [];
    private float[] hostOutput = [];
    private float[] hostScores = [];
    private int batch;
    private int heads;
    private int length;
    private int dim;
    private bool causal;

    /// <summary>The problem: <c>minilm-b1</c>, <c>minilm-b8</c> or <c>gpt2-causal</c>.</summary>
    [Params("minilm-b1", "minilm-b8", "gpt2-causal")]
    public string Case { get; set; } = "minilm-b1";

    /// <summary>Where the fused op runs: <c>cpu</c>, and <c>cuda</c> when a CUDA device is present.</summary>
    [ParamsSource(nameof(Devices))]
    public string DeviceName { get; set; } = "cpu";

    /// <summary>The devices to measure; CUDA only where present, so its absence skips it cleanly.</summary>
    public static IEnumerable<string> Devices()
    {
        yield return "cpu";
        if (Device.List().Any(d => d.Kind == DeviceKind.OpenCL))
        {
            // PoCL's CPU OpenCL where present (the trixie root of scripts/opencl-root.sh): the ILGPU kernels' speed off a GPU.
            yield return "opencl";
        }

        if (Device.List().Any(d => d.Kind == DeviceKind.Cuda))
        {
            yield return "cuda";
        }
        else
        {
            Console.WriteLine("AttentionBenchmarks: no CUDA device on this machine; the cuda column is skipped.");
        }
    }

    /// <summary>Forward FLOPs of a case, <c>4·B·H·Tq·Tk·D</c> (halved for causal).</summary>
    public static double ForwardFlops(string name)
    {
        var (b, h, t, d, c) = Sizes(name);
        return 4.0 * b * h * t * t * d * (c ? 0.5 : 1.0);
    }

    private static (int Batch, int Heads, int Length, int Dim, bool Causal) Sizes(string name) => name switch
    {
        "minilm-b1" => (1, 12, 128, 32, false),
        "minilm-b8" => (8, 12, 128, 32, false),
        "gpt2-causal" => (1, 12, 256, 64, true),
        _ => throw new ArgumentException($"Unknown case '{name}'.", nameof(name)),
    };

    /// <summary>Allocates and fills the buffers.</summary>
    [GlobalSetup]
    public void Setup()
    {
        (batch, heads, length, dim, causal) = Sizes(Case);
        device = Device.Open(DeviceName);
        int hd = heads * dim;
        var random = new Random(7);
        hostQkv = new float[batch * length * 3 * hd];
        for (int i = 0; i < hostQkv.Length; i++)
        {
            hostQkv[i] = (float)((random.NextDouble() * 2) - 1);
        }

        qkv = device.FromHost<float>(hostQkv, batch, length, 3 * hd);
        output = device.Allocate(batch, length, hd);
        logSumExp = device.Allocate(batch, heads, length);
        probabilities = device.Allocate(batch, heads, length, length);
        dOutput = device.FromHost<float>(hostQkv.AsSpan(0, batch * length * hd), batch, length, hd);
        dqkv = device.Allocate(batch, length, 3 * hd);
        delta = device.Allocate(batch, heads, length);
        hostOutput = new float[batch * length * hd];
        hostScores = new float[batch * heads * length * length];
        FusedForward();
    }

    /// <summary>Frees the buffers and the device.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var tensor in new[] { qkv, output, logSumExp, probabilities, dOutput, dqkv, delta })
        {
            tensor.Dispose();
        }

        device.Dispose();
    }

    /// <summary>The peer: scores, row softmax, then P·V, all materialised, parallel over (batch, head).</summary>
    [Benchmark(Baseline = true)]
    public void NaiveForward()
    {
        int hd = heads * dim;
        int stride = 3 * hd;
        float scale = 1f / MathF.Sqrt(dim);
        Parallel.For(0, batch * heads, bh =>
        {
            int b = bh / heads;
            int h = bh % heads;
            var x = hostQkv.AsSpan(b * length * stride, length * stride);
            var scores = hostScores.AsSpan(bh * length * length, length * length);
            var o = hostOutput.AsSpan(b * length * hd, length * hd);
            for (int i = 0; i < length; i++)
            {
                int visible = causal ? i + 1 : length;
                var row = scores.Slice(i * length, visible);
                var q = x.Slice((i * stride) + (h * dim), dim);
                for (int j = 0; j < visible; j++)
                {
                    row[j] = scale * TensorPrimitives.Dot(q, x.Slice((j * stride) + hd + (h * dim), dim));
                }

                TensorPrimitives.SoftMax(row, row);
                var outRow = o.Slice((i * hd) + (h * dim), dim);
                outRow.Clear();
                for (int j = 0; j < visible; j++)
                {
                    TensorPrimitives.MultiplyAdd(x.Slice((j * stride) + (2 * hd) + (h * dim), dim), row[j], outRow, outRow);
                }
            }
        });
    }

    /// <summary>Fused forward: output and logsumexp.</summary>
    [Benchmark]
    public void FusedForward()
    {
        int hd = heads * dim;
        Attention.Forward(new(qkv, 0), new(qkv, hd), new(qkv, 2 * hd), new(output), logSumExp, Shape, 1f / MathF.Sqrt(dim), null, causal);
        device.Synchronize();
    }

    /// <summary>Fused forward that also captures the probabilities.</summary>
    [Benchmark]
    public void FusedForwardCapture()
    {
        int hd = heads * dim;
        Attention.Forward(new(qkv, 0), new(qkv, hd), new(qkv, 2 * hd), new(output), logSumExp, Shape, 1f / MathF.Sqrt(dim), null, causal, probabilities);
        device.Synchronize();
    }

    /// <summary>Fused backward into a packed dQKV buffer (2.5× the forward's FLOPs).</summary>
    [Benchmark]
    public void FusedBackward()
    {
        int hd = heads * dim;
        Attention.Backward(
            new(qkv, 0), new(qkv, hd), new(qkv, 2 * hd), new(output), new(dOutput), logSumExp, Shape, 1f / MathF.Sqrt(dim), null, causal,
            new(dqkv, 0), new(dqkv, hd), new(dqkv, 2 * hd), delta);
        device.Synchronize();
    }

    private AttentionShape Shape => new(batch, heads, length, length, dim);

    private sealed class AttentionConfig : ManualConfig
    {
        public AttentionConfig() => AddColumn(new GflopsColumn());
    }

    /// <summary>GFLOP/s from the mean time: forward FLOPs for the forward methods, 2.5× for the backward.</summary>
    private sealed class GflopsColumn : IColumn
    {
        public string Id => nameof(GflopsColumn);

        public string ColumnName => "GFLOP/s";

        public bool AlwaysShow => true;

        public ColumnCategory Category => ColumnCategory.Custom;

        public int PriorityInCategory => 0;

        public bool IsNumeric => true;

        public UnitType UnitType => UnitType.Dimensionless;

        public string Legend => "Forward 4·B·H·T²·D (halved when causal), backward 2.5× that, divided by the mean time";

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            var report = summary[benchmarkCase];
            if (report?.ResultStatistics is null)
            {
                return "-";
            }

            double flops = ForwardFlops((string)benchmarkCase.Parameters["Case"]) * (benchmarkCase.Descriptor.WorkloadMethod.Name == nameof(FusedBackward) ? 2.5 : 1.0);
            return (flops / report.ResultStatistics.Mean).ToString("F1", CultureInfo.InvariantCulture);
        }

        public bool IsAvailable(Summary summary) => true;

        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    }
}
