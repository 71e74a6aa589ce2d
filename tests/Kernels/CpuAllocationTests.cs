using Headlight.Kernels;
using Headlight.Models.Tokenization;

namespace Headlight.Tests.Kernels;

/// <summary>Runs alone, so that the timing-sensitive rounds are not slowed by other tests.</summary>
[CollectionDefinition(nameof(AllocationCollection), DisableParallelization = true)]
public sealed class AllocationCollection;

/// <summary>
/// The steady state of the <c>cpu</c> backend allocates nothing: once warmed up, every op (validation,
/// parallel dispatch, scratch) and the model's forward pass into a caller's buffer run without a managed
/// allocation on any thread.
/// </summary>
[Collection(nameof(AllocationCollection))]
public sealed class CpuAllocationTests
{
    [Fact]
    public void Ops_on_the_cpu_device_allocate_nothing_once_warm()
    {
        using var device = new CpuDevice(2);
        const int B = 2, T = 128, H = 12, Dh = 32, D = H * Dh, I = 4 * D;
        Tensor<float> Filled(params int[] shape) => device.FromHost<float>(TestData.Uniform(shape.Sum(), shape.Aggregate(1, (a, b) => a * b)), shape);
        using var x = Filled(B, T, D);
        using var w = Filled(D, 3 * D);
        using var bias = Filled(3 * D);
        using var qkv = Filled(B, T, 3 * D);
        using var ctx = Filled(B, T, D);
        using var lse = Filled(B, H, T);
        using var wide = Filled(B, T, I);
        using var wIn = Filled(D, I);
        using var biasIn = Filled(I);
        using var gamma = Filled(D);
        using var beta = Filled(D);
        using var y = Filled(B, T, D);
        using var sum = Filled(B, T, D);
        using var mean = Filled(B * T);
        using var rstd = Filled(B * T);
        using var scores = Filled(B, H, T, T);
        using var dq = Filled(B, T, 3 * D);
        using var delta = Filled(B, H, T);
        using var rows = Filled(B * T);
        using var table = Filled(1000, D);
        using var ids = device.FromHost<int>(Enumerable.Range(0, B * T).Select(i => (i * 7) % 1000).ToArray(), B, T);
        using var mask = device.FromHost<int>(Enumerable.Range(0, B * T).Select(i => i % T < 100 ? 1 : 0).ToArray(), B, T);
        using var packed = Gemm.Prepack(wIn);
        using var qh = Filled(B * H, T, Dh);
        using var kh = Filled(B * H, T, Dh);
        using var heads = Filled(B * H, T, T);
        var shape = new AttentionShape(B, H, T, T, Dh);
        var ops = new (string Name, Action Run)[]
        {
            ("Gemm.Forward", () => Gemm.Forward(x, w, qkv, bias: bias)),
            ("Gemm.ForwardPacked+gelu", () => Gemm.ForwardPacked(x, packed, wide, biasIn, Epilogue.GeluErf)),
            ("Gemm.Forward batched", () => Gemm.Forward(qh, kh, heads, transposeB: true)),
            ("Gemm.Backward", () => Gemm.Backward(x, w, qkv, y, null, bias)),
            ("Attention.Forward", () => Attention.Forward(new(qkv, 0), new(qkv, D), new(qkv, 2 * D), new(ctx, 0), lse, shape, 0.17f, mask)),
            ("Attention.Forward+probabilities", () => Attention.Forward(new(qkv, 0), new(qkv, D), new(qkv, 2 * D), new(ctx, 0), lse, shape, 0.17f, mask, false, scores)),
            ("Attention.Backward", () => Attention.Backward(new(qkv, 0), new(qkv, D), new(qkv, 2 * D), new(ctx, 0), new(y, 0), lse, shape, 0.17f, mask, false, new(dq, 0), new(dq, D), new(dq, 2 * D), delta)),
            ("LayerNorm.Forward", () => LayerNorm.Forward(ctx, gamma, beta, y, 1e-12f, mean, rstd, residual: x, sum: sum)),
            ("LayerNorm.Backward", () => LayerNorm.Backward(y, sum, gamma, mean, rstd, ctx, gamma, beta)),
            ("Embedding.Gather", () => Embedding.Gather(table, ids, y, accumulate: true)),
            ("Embedding.ScatterAdd", () => Embedding.ScatterAdd(y, ids, table)),
            ("Softmax.Forward", () => Softmax.Forward(scores, scores, 0.5f, mask)),
            ("Softmax.Backward", () => Softmax.Backward(scores, scores, scores)),
            ("Reduce.RowSum", () => Reduce.RowSum(y, rows)),
            ("Reduce.ColumnSum", () => Reduce.ColumnSum(y, gamma)),
            ("Elementwise.Add", () => Elementwise.Add(x, y, y)),
        };

        foreach (var (_, run) in ops)
        {
            for (int i = 0; i < 20; i++)
            {
                run();
            }
        }

        var failures = new List<string>();
        foreach (var (name, run) in ops)
        {
            long bytes = SteadyAllocation(device, run);
            if (bytes > 0)
            {
                failures.Add($"{name}: {bytes} bytes in 10 calls");
            }
        }

        Assert.True(failures.Count == 0, string.Join("; ", failures));
    }

    // The fewest bytes the calling thread and the device's worker threads allocated in 10 calls, over three
    // rounds: one-off work (a scratch buffer growing on a thread that had not yet run the largest item) shows
    // in one round, an allocation per call in all. Threads of the test runner are not counted.
    private static long SteadyAllocation(CpuDevice device, Action run)
    {
        long least = long.MaxValue;
        for (int round = 0; round < 3; round++)
        {
            Thread.Sleep(10); // workers record their count just after a job ends
            long before = GC.GetAllocatedBytesForCurrentThread() + device.Workers.WorkerAllocatedBytes;
            for (int i = 0; i < 10; i++)
            {
                run();
            }

            Thread.Sleep(10);
            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() + device.Workers.WorkerAllocatedBytes - before);
        }

        return least;
    }

    [Fact]
    public void The_forward_pass_into_a_buffer_allocates_nothing_once_warm()
    {
        using var model = Headlight.Models.Model.Load("minilm", Backends.Require("cpu"));
        var random = new Random(3);
        var rows = Enumerable.Range(0, 2).Select(_ => (IReadOnlyList<int>)Enumerable.Range(0, 64).Select(_ => random.Next(1000, 20000)).ToArray()).ToList();
        TokenBatch batch = model.FromIds(rows);
        var hidden = new float[2 * 64 * model.Config.Hidden];
        for (int i = 0; i < 10; i++)
        {
            model.Forward(batch, hidden);
        }

        long bytes = SteadyAllocation((CpuDevice)model.Device, () => model.Forward(batch, hidden));
        Assert.True(bytes == 0, $"Model.Forward(batch, span) allocated {bytes} bytes in 10 calls.");

        // The same numbers as the allocating API.
        var full = model.Forward(batch);
        Assert.Equal(full.LastHiddenState, hidden);
    }
}
