using BenchmarkDotNet.Attributes;
using Headlight.Kernels;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Bench;

/// <summary>
/// LayerNorm, softmax and embedding on the managed CPU backend at MiniLM's shapes for 8×128 tokens
/// (d = 384, 12 heads, vocab 30522). The baseline is the same LayerNorm written as single-threaded
/// TensorPrimitives calls per row, what one would write without a fused kernel.
/// </summary>
[MemoryDiagnoser]
[MinColumn]
public class LayerNormBenchmarks
{
    private const int Rows = 8 * 128;
    private const int D = 384;
    private const int Heads = 12;
    private const int Vocab = 30522;

    private CpuDevice device = null!;

    /// <summary>Workers the device uses (the baseline always runs on one).</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    private Tensor<float> x = null!;
    private Tensor<float> residual = null!;
    private Tensor<float> sum = null!;
    private Tensor<float> y = null!;
    private Tensor<float> gamma = null!;
    private Tensor<float> beta = null!;
    private Tensor<float> mean = null!;
    private Tensor<float> rstd = null!;
    private Tensor<float> dgamma = null!;
    private Tensor<float> dbeta = null!;
    private Tensor<float> scores = null!;
    private Tensor<float> probs = null!;
    private Tensor<float> dScores = null!;
    private Tensor<float> tokens = null!;
    private Tensor<float> dTable = null!;
    private Tensor<int> mask = null!;
    private Tensor<float> table = null!;
    private Tensor<int> ids = null!;
    private float[] composedScratch = null!;

    /// <summary>Allocates and fills the operands.</summary>
    [GlobalSetup]
    public void Setup()
    {
        device = new CpuDevice(Threads);
        var random = new Random(1);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
        x = device.FromHost<float>(Values(Rows * D), Rows, D);
        residual = device.FromHost<float>(Values(Rows * D), Rows, D);
        sum = device.Allocate(Rows, D);
        y = device.Allocate(Rows, D);
        gamma = device.FromHost<float>(Values(D), D);
        beta = device.FromHost<float>(Values(D), D);
        mean = device.Allocate(Rows);
        rstd = device.Allocate(Rows);
        dgamma = device.Allocate(D);
        dbeta = device.Allocate(D);
        scores = device.FromHost<float>(Values(8 * Heads * 128 * 128), 8, Heads, 128, 128);
        probs = device.Allocate(8, Heads, 128, 128);
        dScores = device.Allocate(8, Heads, 128, 128);
        mask = device.FromHost<int>(Enumerable.Range(0, 8 * 128).Select(i => i % 128 < 100 ? 1 : 0).ToArray(), 8, 128);
        table = device.FromHost<float>(Values(Vocab * D), Vocab, D);
        dTable = device.Allocate(Vocab, D);
        dTable.Fill(0f);
        tokens = y.Reshape(8, 128, D);
        ids = device.FromHost<int>(Enumerable.Range(0, Rows).Select(_ => random.Next(Vocab)).ToArray(), 8, 128);
        composedScratch = new float[D];
        LayerNorm.Forward(x, gamma, beta, y, 1e-12f, mean, rstd, residual, sum);
        Softmax.Forward(scores, probs, 0.17677669f, mask);
    }

    /// <summary>Frees the operands.</summary>
    [GlobalCleanup]
    public void Cleanup() => device.Dispose();

    /// <summary>The baseline: LN(x + residual) as TensorPrimitives calls per row, one thread.</summary>
    [Benchmark(Baseline = true)]
    public void LayerNormComposed()
    {
        var xs = x.HostSpan;
        var rs = residual.HostSpan;
        var ss = sum.HostSpan;
        var ys = y.HostSpan;
        var t = composedScratch.AsSpan();
        for (int r = 0; r < Rows; r++)
        {
            var v = ss.Slice(r * D, D);
            TensorPrimitives.Add(xs.Slice(r * D, D), rs.Slice(r * D, D), v);
            float m = TensorPrimitives.Sum(v) / D;
            TensorPrimitives.Subtract(v, m, t);
            float k = 1f / MathF.Sqrt((TensorPrimitives.SumOfSquares(t) / D) + 1e-12f);
            TensorPrimitives.Multiply(t, k, t);
            TensorPrimitives.FusedMultiplyAdd(t, gamma.HostSpan, beta.HostSpan, ys.Slice(r * D, D));
        }
    }

    /// <summary>LN(x + residual) fused, saving sum, mean and rstd.</summary>
    [Benchmark]
    public void LayerNormForward() => LayerNorm.Forward(x, gamma, beta, y, 1e-12f, mean, rstd, residual, sum);

    /// <summary>dx, dgamma and dbeta.</summary>
    [Benchmark]
    public void LayerNormBackward() => LayerNorm.Backward(x, sum, gamma, mean, rstd, y, dgamma, dbeta);

    /// <summary>Masked scaled softmax over [8, 12, 128, 128] scores.</summary>
    [Benchmark]
    public void SoftmaxForward() => Softmax.Forward(scores, probs, 0.17677669f, mask);

    /// <summary>Softmax backward over [8, 12, 128, 128].</summary>
    [Benchmark]
    public void SoftmaxBackward() => Softmax.Backward(probs, scores, dScores, 0.17677669f);

    /// <summary>Word-embedding lookup for 8×128 ids.</summary>
    [Benchmark]
    public void EmbeddingGather() => Embedding.Gather(table, ids, tokens);

    /// <summary>Word-embedding gradient for 8×128 ids.</summary>
    [Benchmark]
    public void EmbeddingScatterAdd() => Embedding.ScatterAdd(tokens, ids, dTable);
}
