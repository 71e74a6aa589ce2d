using System.Runtime.Intrinsics;

namespace Headlight.Kernels;

/// <summary>Rope on the managed SIMD backend: ranges of tokens over the device's workers, Vector256 over the pairs.</summary>
internal sealed partial class CpuBackend
{
    // The positions are host memory already: checked in place.
    internal override void RopeCheckPositions(in OpArgs args, Tensor<int> positions, int tableRows)
    {
        var span = positions.HostSpan;
        for (int i = 0; i < span.Length; i++)
        {
            if ((uint)span[i] >= (uint)tableRows)
            {
                int seq = positions.Shape[1];
                args.Fail($"positions[{i / seq}, {i % seq}] = {span[i]} is outside the table's rows [0, {tableRows})");
            }
        }
    }

    internal override unsafe void RopeApply(Tensor<float> src, Tensor<float> dst, Tensor<float>? z, Tensor<int> positions, Tensor<float> table,
        RopeLayout layout, RopeMode mode, float epsilon, bool accumulate)
    {
        fixed (float* ps = src.HostSpan, pd = dst.HostSpan, pt = table.HostSpan, pz = z is null ? default : z.HostSpan)
        fixed (int* pp = positions.HostSpan)
        {
            var job = new Rope.HostJob
            {
                Src = ps, Dst = pd, Z = pz, Positions = pp, Table = pt, Layout = layout, Mode = mode, Epsilon = epsilon, Accumulate = accumulate,
                RowsPerItem = LayerNorm.RowsPerItem(Workers, layout.Rows, layout.Columns),
            };
            Workers.Run(ref job, LayerNorm.DivUp(layout.Rows, job.RowsPerItem));
        }
    }
}

/// <summary>Rope's host code: a range of tokens, each head's pairs in Vector256 steps.</summary>
public static partial class Rope
{
    /// <summary>One Rope pass on the host; item = a range of tokens.</summary>
    internal unsafe struct HostJob : ICpuJob
    {
        public float* Src;
        public float* Dst;
        public float* Z;
        public int* Positions;
        public float* Table;
        public RopeLayout Layout;
        public RopeMode Mode;
        public float Epsilon;
        public bool Accumulate;
        public int RowsPerItem;

        public readonly void Execute(int item)
        {
            int end = Math.Min(Layout.Rows, (item + 1) * RowsPerItem);
            for (int row = item * RowsPerItem; row < end; row++)
            {
                Row(row);
            }
        }

        // src, z [tokens, width] -> dst [tokens, width′] for one token: every head rotated (or transposed) in place of its pairs.
        private readonly void Row(int row)
        {
            var p = Layout;
            int half = p.Half;
            float* cos = Table + ((long)(half == 0 ? 0 : Positions[row]) * 2 * half);
            float* sin = cos + half;
            float sign = Mode == RopeMode.Forward ? 1f : -1f;
            for (int h = 0; h < p.Heads; h++)
            {
                float* x = Src + ((long)row * p.InStride) + p.InColumn + (h * p.HeadDim);
                float* y = Dst + ((long)row * p.OutStride) + p.OutColumn + (h * p.HeadDim);
                float* zz = Mode == RopeMode.Relevance ? Z + ((long)row * p.ZStride) + p.ZColumn + (h * p.HeadDim) : null;
                int j = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    var vs = Vector256.Create(sign);
                    for (; j <= half - Vector256<float>.Count; j += Vector256<float>.Count)
                    {
                        var a = Vector256.Load(x + j);
                        var b = Vector256.Load(x + half + j);
                        if (zz != null)
                        {
                            a *= Ratio(Vector256.Load(zz + j), Epsilon);
                            b *= Ratio(Vector256.Load(zz + half + j), Epsilon);
                        }

                        var c = Vector256.Load(cos + j);
                        var s = Vector256.Load(sin + j) * vs;
                        var y1 = (a * c) - (b * s);
                        var y2 = (b * c) + (a * s);
                        if (Accumulate)
                        {
                            y1 += Vector256.Load(y + j);
                            y2 += Vector256.Load(y + half + j);
                        }

                        y1.Store(y + j);
                        y2.Store(y + half + j);
                    }
                }

                for (; j < half; j++)
                {
                    float a = x[j];
                    float b = x[half + j];
                    if (zz != null)
                    {
                        a *= Ratio(zz[j], Epsilon);
                        b *= Ratio(zz[half + j], Epsilon);
                    }

                    float s = sin[j] * sign;
                    float y1 = (a * cos[j]) - (b * s);
                    float y2 = (b * cos[j]) + (a * s);
                    y[j] = Accumulate ? y[j] + y1 : y1;
                    y[half + j] = Accumulate ? y[half + j] + y2 : y2;
                }

                // The dimensions past the rotated ones pass through (scaled by the ε ratio for relevance).
                for (j = 2 * half; j < p.HeadDim; j++)
                {
                    float v = zz != null ? x[j] * Ratio(zz[j], Epsilon) : x[j];
                    y[j] = Accumulate ? y[j] + v : v;
                }
            }
        }
    }

    private static Vector256<float> Ratio(Vector256<float> z, float epsilon)
    {
        var e = Vector256.Create(epsilon);
        var den = z + Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(z, Vector256<float>.Zero), e, -e);
        return Vector256.ConditionalSelect(Vector256.Equals(den, Vector256<float>.Zero), Vector256<float>.One, z / den);
    }
}
