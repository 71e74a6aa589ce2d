using System.Runtime.Intrinsics;

namespace Headlight.Kernels;

/// <summary>SwiGLU on the managed SIMD backend: ranges of rows over the device's workers, Vector256 along each row.</summary>
internal sealed partial class CpuBackend
{
    internal override unsafe void SwiGluForward(Tensor<float> gateUp, Tensor<float> y, int rows, int n)
    {
        fixed (float* pgu = gateUp.HostSpan, py = y.HostSpan)
        {
            var job = new SwiGlu.HostJob { GateUp = pgu, Out = py, N = n, Rows = rows, Pass = 0, RowsPerItem = LayerNorm.RowsPerItem(Workers, rows, 2 * n) };
            Workers.Run(ref job, LayerNorm.DivUp(rows, job.RowsPerItem));
        }
    }

    internal override unsafe void SwiGluBackward(Tensor<float> gateUp, Tensor<float> dy, Tensor<float> dGateUp, int rows, int n, bool relevance)
    {
        fixed (float* pgu = gateUp.HostSpan, pdy = dy.HostSpan, pd = dGateUp.HostSpan)
        {
            var job = new SwiGlu.HostJob
            {
                GateUp = pgu, Dy = pdy, Out = pd, N = n, Rows = rows, Pass = relevance ? 2 : 1, RowsPerItem = LayerNorm.RowsPerItem(Workers, rows, 2 * n),
            };
            Workers.Run(ref job, LayerNorm.DivUp(rows, job.RowsPerItem));
        }
    }
}

/// <summary>SwiGLU's host SIMD code.</summary>
public static partial class SwiGlu
{
    /// <summary>One SwiGLU pass on the host (0 forward, 1 backward, 2 relevance); item = a range of rows.</summary>
    internal unsafe struct HostJob : ICpuJob
    {
        public float* GateUp;
        public float* Dy;
        public float* Out; // y [rows, n] or dGateUp [rows, 2n]
        public int N;
        public int Rows;
        public int RowsPerItem;
        public int Pass;

        public readonly void Execute(int item)
        {
            int end = Math.Min(Rows, (item + 1) * RowsPerItem);
            for (int r = item * RowsPerItem; r < end; r++)
            {
                float* gate = GateUp + ((long)r * 2 * N);
                float* up = gate + N;
                if (Pass == 0)
                {
                    ForwardRow(gate, up, Out + ((long)r * N), N);
                }
                else
                {
                    float* dGate = Out + ((long)r * 2 * N);
                    BackwardRow(gate, up, Dy + ((long)r * N), dGate, dGate + N, N, Pass == 2);
                }
            }
        }
    }

    // gate, up [n] -> y [n]
    private static unsafe void ForwardRow(float* gate, float* up, float* y, int n)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var g = Vector256.Load(gate + i);
                (g * Sigmoid(g) * Vector256.Load(up + i)).Store(y + i);
            }
        }

        for (; i < n; i++)
        {
            y[i] = gate[i] * Sigmoid(gate[i]) * up[i];
        }
    }

    // gate, up, dy [n] -> dGate, dUp [n]; dGate and dUp may be gate and up (each lane reads before it writes).
    private static unsafe void BackwardRow(float* gate, float* up, float* dy, float* dGate, float* dUp, int n, bool relevance)
    {
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var half = Vector256.Create(0.5f);
            for (; i <= n - Vector256<float>.Count; i += Vector256<float>.Count)
            {
                var g = Vector256.Load(gate + i);
                var u = Vector256.Load(up + i);
                var d = Vector256.Load(dy + i);
                var s = Sigmoid(g);
                var silu = g * s;
                var slope = relevance ? s * half : s * (Vector256<float>.One + (g * (Vector256<float>.One - s)));
                (d * u * slope).Store(dGate + i);
                (relevance ? d * silu * half : d * silu).Store(dUp + i);
            }
        }

        for (; i < n; i++)
        {
            float g = gate[i];
            float u = up[i];
            float d = dy[i];
            float s = Sigmoid(g);
            dGate[i] = d * u * (relevance ? 0.5f * s : s * (1f + (g * (1f - s))));
            dUp[i] = relevance ? 0.5f * d * g * s : d * g * s;
        }
    }

    // sigmoid without exp of a large positive argument: e = exp(−|u|), 1/(1 + e) or e/(1 + e).
    private static Vector256<float> Sigmoid(Vector256<float> u)
    {
        var e = Vector256.Exp(-Vector256.Abs(u));
        var r = Vector256<float>.One / (Vector256<float>.One + e);
        return Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(u, Vector256<float>.Zero), r, e * r);
    }
}
