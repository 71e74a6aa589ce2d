using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>Problems without packing: k = 0, and few rows or few columns (dot products and row updates).</summary>
internal static unsafe partial class GemmCpu
{
    // k = 0 (or an empty sum over batches): c = act(beta·c + bias).
    private static void EpilogueOnly(in Block blk, in GemmDims d, int r0, int r1, int c0, int c1)
    {
        for (int i = r0; i < r1; i++)
        {
            long row = (long)i * d.N;
            EpilogueRow(null, blk.C + row + c0, blk.Pre == null ? null : blk.Pre + row + c0,
                blk.Bias == null ? null : blk.Bias + c0, c1 - c0, first: true, last: true, d);
        }
    }

    // Few rows or few columns: rows of c from dot products (b transposed, or few columns), or from up to
    // four rows of a at a time against b read in place (few rows), without packing the large operand.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Direct(in Block blk, in GemmDims d, int r0, int r1, int c0, int c1)
    {
        var ws = Workspace.Get();
        int k = d.K;
        int cols = c1 - c0;
        bool dots = d.TransB != 0 || cols <= DirectMaxColumns;
        if (!dots)
        {
            float* acc4 = ws.Rows((4 * cols) + (4 * k));
            float* rows4 = acc4 + (4 * cols);
            for (int i0 = r0; i0 < r1; i0 += 4)
            {
                int count = Math.Min(4, r1 - i0);
                float* x = blk.A + ((long)i0 * k);
                if (d.TransA != 0)
                {
                    for (int r = 0; r < count; r++)
                    {
                        for (int p = 0; p < k; p++)
                        {
                            rows4[(r * k) + p] = blk.A[((long)p * d.M) + i0 + r];
                        }
                    }

                    x = rows4;
                }

                RowsTimesB(x, k, count, blk.B + c0, d.N, k, acc4, cols);
                for (int r = 0; r < count; r++)
                {
                    long row = (long)(i0 + r) * d.N;
                    EpilogueRow(acc4 + (r * cols), blk.C + row + c0, blk.Pre == null ? null : blk.Pre + row + c0,
                        blk.Bias == null ? null : blk.Bias + c0, cols, first: true, last: true, d);
                }
            }

            return;
        }

        // Few rows: every row of b (a column of op(b)) is read once and meets all rows of a while in L1.
        int rowCount = r1 - r0;
        if (rowCount <= DirectMaxRows && d.TransB != 0)
        {
            float* accRows = ws.Rows((rowCount * cols) + (rowCount * k));
            float* xRows = accRows + (rowCount * cols);
            for (int r = 0; r < rowCount; r++)
            {
                for (int p = 0; p < k; p++)
                {
                    xRows[(r * k) + p] = d.TransA != 0 ? blk.A[((long)p * d.M) + r0 + r] : blk.A[((long)(r0 + r) * k) + p];
                }
            }

            RowsDotRowsOfB(xRows, rowCount, blk.B + ((long)c0 * k), cols, k, accRows);

            for (int r = 0; r < rowCount; r++)
            {
                long row = (long)(r0 + r) * d.N;
                EpilogueRow(accRows + (r * cols), blk.C + row + c0, blk.Pre == null ? null : blk.Pre + row + c0,
                    blk.Bias == null ? null : blk.Bias + c0, cols, first: true, last: true, d);
            }

            return;
        }

        // Few columns: gather them as rows (when b is [k, n]) and take one dot product per output.
        float* scratch = ws.Rows(cols + k + (d.TransB == 0 ? cols * k : 0));
        float* acc = scratch;
        float* aRow = scratch + cols;
        float* bT = aRow + k;
        if (d.TransB == 0)
        {
            for (int j = 0; j < cols; j++)
            {
                for (int p = 0; p < k; p++)
                {
                    bT[((long)j * k) + p] = blk.B[((long)p * d.N) + c0 + j];
                }
            }
        }

        float* rowsOfB = d.TransB != 0 ? blk.B + ((long)c0 * k) : bT;
        for (int i = r0; i < r1; i++)
        {
            float* x = blk.A + ((long)i * k);
            if (d.TransA != 0)
            {
                for (int p = 0; p < k; p++)
                {
                    aRow[p] = blk.A[((long)p * d.M) + i];
                }

                x = aRow;
            }

            var xs = new ReadOnlySpan<float>(x, k);
            for (int j = 0; j < cols; j++)
            {
                acc[j] = TensorPrimitives.Dot(xs, new ReadOnlySpan<float>(rowsOfB + ((long)j * k), k));
            }

            long row = (long)i * d.N;
            EpilogueRow(acc, blk.C + row + c0, blk.Pre == null ? null : blk.Pre + row + c0,
                blk.Bias == null ? null : blk.Bias + c0, cols, first: true, last: true, d);
        }
    }

    // acc [count, cols] = x [count, k] · b [k, cols] for count ≤ 4 rows of x (row stride ldx), b read in place
    // (row stride ldb) in memory order. Columns go in chunks of 512 so that the four rows of b in use and the
    // rows of acc stay in L1 while every row of x passes over them.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsTimesB(float* x, int ldx, int count, float* b, int ldb, int k, float* acc, int cols)
    {
        const int Chunk = 512;
        new Span<float>(acc, count * cols).Clear();
        for (int jc = 0; jc < cols; jc += Chunk)
        {
            int w = Math.Min(Chunk, cols - jc);
            int p = 0;
            for (; p + 4 <= k; p += 4)
            {
                float* bp = b + ((long)p * ldb) + jc;
                for (int r = 0; r < count; r++)
                {
                    float* xr = x + ((long)r * ldx) + p;
                    Axpy4(acc + (r * cols) + jc, bp, ldb, xr[0], xr[1], xr[2], xr[3], w);
                }
            }

            for (; p < k; p++)
            {
                for (int r = 0; r < count; r++)
                {
                    var row = new Span<float>(acc + (r * cols) + jc, w);
                    TensorPrimitives.MultiplyAdd(new ReadOnlySpan<float>(b + ((long)p * ldb) + jc, w), x[((long)r * ldx) + p], row, row);
                }
            }
        }
    }

    // acc [count, cols] = x [count, k] · b [cols, k]ᵀ (a one-row product against an [out, in] weight, the LM head):
    // four rows of b at a time, each read once in memory order while every row of x meets them from L1. Four
    // independent sums per row of x, then one fixed reduction, so the result does not depend on the split.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void RowsDotRowsOfB(float* x, int count, float* b, int cols, int k, float* acc)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; j + 4 <= cols; j += 4)
            {
                float* b0 = b + ((long)j * k);
                float* b1 = b0 + k;
                float* b2 = b1 + k;
                float* b3 = b2 + k;
                for (int r = 0; r < count; r++)
                {
                    float* xr = x + ((long)r * k);
                    var s0 = Vector512<float>.Zero;
                    var s1 = Vector512<float>.Zero;
                    var s2 = Vector512<float>.Zero;
                    var s3 = Vector512<float>.Zero;
                    int p = 0;
                    for (; p + 16 <= k; p += 16)
                    {
                        var xv = Vector512.Load(xr + p);
                        s0 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b0 + p), s0);
                        s1 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b1 + p), s1);
                        s2 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b2 + p), s2);
                        s3 = Vector512.FusedMultiplyAdd(xv, Vector512.Load(b3 + p), s3);
                    }

                    float t0 = Vector512.Sum(s0), t1 = Vector512.Sum(s1), t2 = Vector512.Sum(s2), t3 = Vector512.Sum(s3);
                    for (; p < k; p++)
                    {
                        float xp = xr[p];
                        t0 += xp * b0[p];
                        t1 += xp * b1[p];
                        t2 += xp * b2[p];
                        t3 += xp * b3[p];
                    }

                    float* ar = acc + ((long)r * cols) + j;
                    ar[0] = t0;
                    ar[1] = t1;
                    ar[2] = t2;
                    ar[3] = t3;
                }
            }
        }

        for (; j < cols; j++)
        {
            var bj = new ReadOnlySpan<float>(b + ((long)j * k), k);
            for (int r = 0; r < count; r++)
            {
                acc[((long)r * cols) + j] = TensorPrimitives.Dot(new ReadOnlySpan<float>(x + ((long)r * k), k), bj);
            }
        }
    }

    // acc [w] += x0·b[0, :] + x1·b[1, :] + x2·b[2, :] + x3·b[3, :] for four rows of b (row stride ldb).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Axpy4(float* acc, float* b, int ldb, float x0, float x1, float x2, float x3, int w)
    {
        float* b1 = b + ldb;
        float* b2 = b1 + ldb;
        float* b3 = b2 + ldb;
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var v0 = Vector512.Create(x0);
            var v1 = Vector512.Create(x1);
            var v2 = Vector512.Create(x2);
            var v3 = Vector512.Create(x3);
            for (; j + 16 <= w; j += 16)
            {
                var s = Vector512.Load(acc + j);
                s = Vector512.FusedMultiplyAdd(v0, Vector512.Load(b + j), s);
                s = Vector512.FusedMultiplyAdd(v1, Vector512.Load(b1 + j), s);
                s = Vector512.FusedMultiplyAdd(v2, Vector512.Load(b2 + j), s);
                s = Vector512.FusedMultiplyAdd(v3, Vector512.Load(b3 + j), s);
                s.Store(acc + j);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var v0 = Vector256.Create(x0);
            var v1 = Vector256.Create(x1);
            var v2 = Vector256.Create(x2);
            var v3 = Vector256.Create(x3);
            for (; j + 8 <= w; j += 8)
            {
                var s = Vector256.Load(acc + j);
                s = Vector256.FusedMultiplyAdd(v0, Vector256.Load(b + j), s);
                s = Vector256.FusedMultiplyAdd(v1, Vector256.Load(b1 + j), s);
                s = Vector256.FusedMultiplyAdd(v2, Vector256.Load(b2 + j), s);
                s = Vector256.FusedMultiplyAdd(v3, Vector256.Load(b3 + j), s);
                s.Store(acc + j);
            }
        }

        for (; j < w; j++)
        {
            acc[j] += (x0 * b[j]) + (x1 * b1[j]) + (x2 * b2[j]) + (x3 * b3[j]);
        }
    }
}
