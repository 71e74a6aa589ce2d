using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Headlight.Kernels;

/// <summary>The register-blocked micro-kernels (8×32 in Vector512, 6×16 in Vector256) and the epilogue applied as each row is stored.</summary>
internal static unsafe partial class GemmCpu
{
    /// <summary>Where the Vector512 kernel's b strip comes from (a type argument, so each case compiles to its own loop).</summary>
    private interface IStripSource
    {
        /// <summary>True when b is read from its source rows and each step's 32 values are stored to the packed strip as they go by.</summary>
        static abstract bool PacksAsRead { get; }
    }

    private struct ReadsPackedB : IStripSource
    {
        public static bool PacksAsRead => false;
    }

    private struct PacksB : IStripSource
    {
        public static bool PacksAsRead => true;
    }

    // dst [8, 32] (=|+=) alpha · a [8, kc] · b [kc, 32] (+ bias [32]): 16 accumulators, one broadcast of a per row.
    // a's element (r, p) is at a[r·rowStride + p·step]: a packed strip [kc][8] (rowStride 1, step 8) or eight rows of
    // a row-major a read in place (rowStride lda, step 1), which saves packing a when its rows are contiguous.
    // b's row p is at b + p·bStep: a packed strip (bStep 32) or b's own rows (bStep ldb), then copied to bCopy [kc][32].
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel8x32<TSource>(float* a, long rowStride, long step, float* b, long bStep, float* bCopy, int kc,
        float* dst, int ldd, bool add, float alpha, float* bias)
        where TSource : struct, IStripSource
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default;
        float* a0 = a;
        float* a1 = a + rowStride;
        float* a2 = a + (2 * rowStride);
        float* a3 = a + (3 * rowStride);
        float* a4 = a + (4 * rowStride);
        float* a5 = a + (5 * rowStride);
        float* a6 = a + (6 * rowStride);
        float* a7 = a + (7 * rowStride);
        long qEnd = kc * step;
        for (long q = 0; q < qEnd; q += step)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            if (TSource.PacksAsRead)
            {
                b0.Store(bCopy);
                b1.Store(bCopy + 16);
                bCopy += 32;
            }

            var x = Vector512.Create(a0[q]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00);
            c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a1[q]);
            c10 = Vector512.FusedMultiplyAdd(x, b0, c10);
            c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a2[q]);
            c20 = Vector512.FusedMultiplyAdd(x, b0, c20);
            c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a3[q]);
            c30 = Vector512.FusedMultiplyAdd(x, b0, c30);
            c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a4[q]);
            c40 = Vector512.FusedMultiplyAdd(x, b0, c40);
            c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a5[q]);
            c50 = Vector512.FusedMultiplyAdd(x, b0, c50);
            c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a6[q]);
            c60 = Vector512.FusedMultiplyAdd(x, b0, c60);
            c61 = Vector512.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a7[q]);
            c70 = Vector512.FusedMultiplyAdd(x, b0, c70);
            c71 = Vector512.FusedMultiplyAdd(x, b1, c71);
            b += bStep;
        }

        var va = Vector512.Create(alpha);
        var z0 = bias == null ? Vector512<float>.Zero : Vector512.Load(bias);
        var z1 = bias == null ? Vector512<float>.Zero : Vector512.Load(bias + 16);
        StoreRow(dst, c00, c01, va, z0, z1, add);
        StoreRow(dst + ldd, c10, c11, va, z0, z1, add);
        StoreRow(dst + (2 * ldd), c20, c21, va, z0, z1, add);
        StoreRow(dst + (3 * ldd), c30, c31, va, z0, z1, add);
        StoreRow(dst + (4 * ldd), c40, c41, va, z0, z1, add);
        StoreRow(dst + (5 * ldd), c50, c51, va, z0, z1, add);
        StoreRow(dst + (6 * ldd), c60, c61, va, z0, z1, add);
        StoreRow(dst + (7 * ldd), c70, c71, va, z0, z1, add);
    }

    // The last pass's tail for a full 8×32 tile already in c (and in L1): pre = c, then c = GELU(c).
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FinishTile8x32(float* c, float* pre, int ldc, int activation)
    {
        var form = (GeluForm)(activation - 1);
        for (int r = 0; r < Mr512; r++)
        {
            float* row = c + ((long)r * ldc);
            var v0 = Vector512.Load(row);
            var v1 = Vector512.Load(row + 16);
            if (pre != null)
            {
                float* preRow = pre + ((long)r * ldc);
                v0.Store(preRow);
                v1.Store(preRow + 16);
            }

            if (activation != 0)
            {
                Gelu.ValueVector(v0, form).Store(row);
                Gelu.ValueVector(v1, form).Store(row + 16);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* dst, Vector512<float> x0, Vector512<float> x1, Vector512<float> alpha, Vector512<float> z0, Vector512<float> z1, bool add)
    {
        if (add)
        {
            z0 += Vector512.Load(dst);
            z1 += Vector512.Load(dst + 16);
        }

        Vector512.FusedMultiplyAdd(x0, alpha, z0).Store(dst);
        Vector512.FusedMultiplyAdd(x1, alpha, z1).Store(dst + 16);
    }

    // dst [6, 16] (=|+=) alpha · a strip [kc][6] · b strip [kc][16] (+ bias [16]): 12 of the 16 ymm registers hold accumulators.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel6x16(float* a, float* b, int kc, float* dst, int ldd, bool add, float alpha, float* bias)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector256<float> c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var x = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00);
            c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(x, b0, c10);
            c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(x, b0, c20);
            c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(x, b0, c30);
            c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            x = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(x, b0, c40);
            c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
            x = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(x, b0, c50);
            c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
            a += 6;
            b += 16;
        }

        var va = Vector256.Create(alpha);
        var z0 = bias == null ? Vector256<float>.Zero : Vector256.Load(bias);
        var z1 = bias == null ? Vector256<float>.Zero : Vector256.Load(bias + 8);
        StoreRow(dst, c00, c01, va, z0, z1, add);
        StoreRow(dst + ldd, c10, c11, va, z0, z1, add);
        StoreRow(dst + (2 * ldd), c20, c21, va, z0, z1, add);
        StoreRow(dst + (3 * ldd), c30, c31, va, z0, z1, add);
        StoreRow(dst + (4 * ldd), c40, c41, va, z0, z1, add);
        StoreRow(dst + (5 * ldd), c50, c51, va, z0, z1, add);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(float* dst, Vector256<float> x0, Vector256<float> x1, Vector256<float> alpha, Vector256<float> z0, Vector256<float> z1, bool add)
    {
        if (add)
        {
            z0 += Vector256.Load(dst);
            z1 += Vector256.Load(dst + 8);
        }

        Vector256.FusedMultiplyAdd(x0, alpha, z0).Store(dst);
        Vector256.FusedMultiplyAdd(x1, alpha, z1).Store(dst + 8);
    }

    /// <summary>
    /// Stores one row of results: on the first pass over k, <c>c = alpha·acc (+ beta·c)</c>; on later passes
    /// <c>c += alpha·acc</c>; on the last pass, then bias, pre-activation and the activation. <paramref name="acc"/>
    /// null means zeros (k = 0).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void EpilogueRow(float* acc, float* c, float* pre, float* bias, int count, bool first, bool last, in GemmDims d)
    {
        float alpha = d.Alpha;
        float beta = d.Beta;
        bool useBeta = first && beta != 0f;
        int act = last ? d.Activation : 0;
        var form = (GeluForm)(act - 1);
        if (!last)
        {
            bias = null;
            pre = null;
        }

        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var va = Vector512.Create(alpha);
            var vb = Vector512.Create(beta);
            for (; j <= count - 16; j += 16)
            {
                var v = acc == null ? Vector512<float>.Zero : Vector512.Load(acc + j) * va;
                if (!first)
                {
                    v += Vector512.Load(c + j);
                }
                else if (useBeta)
                {
                    v = Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + j), v);
                }

                if (bias != null)
                {
                    v += Vector512.Load(bias + j);
                }

                if (pre != null)
                {
                    v.Store(pre + j);
                }

                if (act != 0)
                {
                    v = Gelu.ValueVector(v, form);
                }

                v.Store(c + j);
            }
        }

        if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(alpha);
            var vb = Vector256.Create(beta);
            for (; j <= count - 8; j += 8)
            {
                var v = acc == null ? Vector256<float>.Zero : Vector256.Load(acc + j) * va;
                if (!first)
                {
                    v += Vector256.Load(c + j);
                }
                else if (useBeta)
                {
                    v = Vector256.FusedMultiplyAdd(vb, Vector256.Load(c + j), v);
                }

                if (bias != null)
                {
                    v += Vector256.Load(bias + j);
                }

                if (pre != null)
                {
                    v.Store(pre + j);
                }

                if (act != 0)
                {
                    v = Gelu.ValueVector256(v, form);
                }

                v.Store(c + j);
            }
        }

        for (; j < count; j++)
        {
            float v = acc == null ? 0f : acc[j] * alpha;
            if (!first)
            {
                v += c[j];
            }
            else if (useBeta)
            {
                v += beta * c[j];
            }

            if (bias != null)
            {
                v += bias[j];
            }

            if (pre != null)
            {
                pre[j] = v;
            }

            if (act != 0)
            {
                v = Gelu.Value(v, (int)form);
            }

            c[j] = v;
        }
    }
}
