using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Headlight.Kernels;

/// <summary>The packed path: blocks of op(a) and op(b) packed into strips and multiplied strip pair by strip pair.</summary>
internal static unsafe partial class GemmCpu
{
    // c [m, n] block rows r0..r1, columns c0..c1 through packed strips; b's strips come from `prepacked`
    // (PackWhole's layout) when given, else are packed here block by block.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Packed(in Block blk, in GemmDims d, GemmIsa isa, int r0, int r1, int c0, int c1, float* prepacked)
    {
        var ws = Workspace.Get();
        float* packA = ws.PackA;
        float* packB = ws.PackB;
        float* tile = ws.Tile;
        bool wide = isa == GemmIsa.Vector512;
        int mr = wide ? Mr512 : Mr256;
        int nr = wide ? Nr512 : Nr256;
        int lda = d.TransA == 0 ? d.K : d.M;
        int ldb = d.TransB == 0 ? d.N : d.K;

        // Even splits avoid a thin last block: k = 600 becomes 300 + 300 rather than 512 + 88.
        int kc0 = KBlock(d.K);
        int nPad = Ceiling(d.N, nr) * nr;
        int nSteps = Ceiling(c1 - c0, NcMax);
        int nc0 = Ceiling(Ceiling(c1 - c0, nSteps), nr) * nr;

        // The Vector512 kernel reads full 8-row strips of a row-major a in place; only a ragged last strip is packed.
        // Not when a's rows are a multiple of 4 KB apart: all eight would then fall in the same L1 sets. Reading in
        // place needs no block of packed rows, so all rows form one block and each block of b is packed once.
        bool readsInPlace = wide && d.TransA == 0 && lda % 1024 != 0;
        int mSteps = readsInPlace ? 1 : Ceiling(r1 - r0, McMax);
        int mc0 = Ceiling(Ceiling(r1 - r0, mSteps), mr) * mr;

        for (int ic = r0; ic < r1; ic += mc0)
        {
            int mc = Math.Min(mc0, r1 - ic);
            int inPlaceRows = readsInPlace ? mc - (mc % mr) : 0;
            for (int rb = 0; rb < d.Reduce; rb++)
            {
                float* a = blk.A + ((long)rb * d.AReduceStride);
                float* b = blk.B + ((long)rb * d.BReduceStride);
                for (int pc = 0; pc < d.K; pc += kc0)
                {
                    int kc = Math.Min(kc0, d.K - pc);
                    bool first = rb == 0 && pc == 0;
                    bool last = rb == d.Reduce - 1 && pc + kc == d.K;
                    PackA(a, lda, d.TransA != 0, ic + inPlaceRows, mc - inPlaceRows, pc, kc, mr, packA);
                    for (int jc = c0; jc < c1; jc += nc0)
                    {
                        int nc = Math.Min(nc0, c1 - jc);
                        // A row-major b whose rows are close together is packed by the first strip of rows as the Vector512
                        // kernel reads it (the loads are needed anyway; the stores hide behind the FMAs); only a ragged last
                        // strip is packed first. With rows further apart each step of the strided read lands on a new page and
                        // the first strip stalls (measured 10–15% slower overall at 128×768×3072), so b is packed up front.
                        int packedAsRead = 0;
                        if (prepacked != null)
                        {
                            packB = prepacked + ((long)pc * nPad) + ((long)jc * kc);
                        }
                        else if (wide && d.TransB == 0 && ldb <= PackAsReadMaxRowLength)
                        {
                            packedAsRead = nc - (nc % nr);
                            PackB(b, ldb, false, pc, kc, jc + packedAsRead, nc - packedAsRead, nr, packB + ((long)packedAsRead * kc));
                        }
                        else
                        {
                            PackB(b, ldb, d.TransB != 0, pc, kc, jc, nc, nr, packB);
                        }

                        for (int ir = 0; ir < mc; ir += mr)
                        {
                            int rows = Math.Min(mr, mc - ir);
                            bool inPlace = ir < inPlaceRows;
                            float* aStrip = inPlace ? a + ((long)(ic + ir) * lda) + pc : packA + ((long)(ir - inPlaceRows) * kc);
                            long aRowStride = inPlace ? lda : 1;
                            long aStep = inPlace ? 1 : mr;
                            long rowOffset = (long)(ic + ir) * d.N;
                            for (int jr = 0; jr < nc; jr += nr)
                            {
                                int cols = Math.Min(nr, nc - jr);
                                int col = jc + jr;
                                float* bStrip = packB + ((long)jr * kc);
                                float* cTile = blk.C + rowOffset + col;
                                float* biasTile = blk.Bias == null ? null : blk.Bias + col;

                                // Full tiles without a beta term go straight from registers to c; on the last pass the
                                // Vector512 kernel also saves the pre-activation and applies GELU to the tile while in L1.
                                // Other tiles go through a scratch tile and the general epilogue.
                                bool plainLast = d.Activation == 0 && blk.Pre == null;
                                bool direct = rows == mr && cols == nr && (!first || d.Beta == 0f) && (!last || plainLast || wide);
                                float* dst = direct ? cTile : tile;
                                int ldd = direct ? d.N : nr;
                                bool add = direct && !first;
                                float alpha = direct ? d.Alpha : 1f;
                                float* tileBias = direct && last ? biasTile : null;
                                if (!wide)
                                {
                                    Kernel6x16(aStrip, bStrip, kc, dst, ldd, add, alpha, tileBias);
                                }
                                else if (ir == 0 && jr < packedAsRead)
                                {
                                    Kernel8x32<PacksB>(aStrip, aRowStride, aStep, b + ((long)pc * ldb) + col, ldb, bStrip, kc, dst, ldd, add, alpha, tileBias);
                                }
                                else
                                {
                                    Kernel8x32<ReadsPackedB>(aStrip, aRowStride, aStep, bStrip, nr, null, kc, dst, ldd, add, alpha, tileBias);
                                }

                                if (direct)
                                {
                                    if (wide && last && !plainLast)
                                    {
                                        FinishTile8x32(cTile, blk.Pre == null ? null : blk.Pre + rowOffset + col, d.N, d.Activation);
                                    }

                                    continue;
                                }

                                float* preTile = blk.Pre == null ? null : blk.Pre + rowOffset + col;
                                for (int r = 0; r < rows; r++)
                                {
                                    EpilogueRow(tile + (r * nr), cTile + ((long)r * d.N), preTile == null ? null : preTile + ((long)r * d.N),
                                        biasTile, cols, first, last, d);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    // op(a) rows row0..row0+rows, k0..k0+kc -> strips of mr rows, each [kc][mr], the last zero-padded.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackA(float* a, int lda, bool transposed, int row0, int rows, int k0, int kc, int mr, float* dst)
    {
        for (int s = 0; s < rows; s += mr)
        {
            int h = Math.Min(mr, rows - s);
            float* strip = dst + ((long)s * kc);
            if (!transposed)
            {
                // a [m, k]: each row is contiguous in k; 8×8 blocks are transposed in registers, the rest scattered.
                int p0 = 0;
                if (h == 8 && mr == 8 && Avx.IsSupported)
                {
                    float* src = a + ((long)(row0 + s) * lda) + k0;
                    for (; p0 + 8 <= kc; p0 += 8)
                    {
                        Transpose8x8(src + p0, lda, strip + (p0 * 8), 8);
                    }
                }

                for (int r = 0; r < h; r++)
                {
                    float* src = a + ((long)(row0 + s + r) * lda) + k0;
                    float* o = strip + r;
                    for (int p = p0; p < kc; p++)
                    {
                        o[p * mr] = src[p];
                    }
                }

                for (int r = h; r < mr; r++)
                {
                    for (int p = 0; p < kc; p++)
                    {
                        strip[(p * mr) + r] = 0f;
                    }
                }
            }
            else
            {
                // a [k, m]: the strip's mr values at each k are already contiguous.
                for (int p = 0; p < kc; p++)
                {
                    float* src = a + ((long)(k0 + p) * lda) + row0 + s;
                    float* o = strip + (p * mr);
                    int r = 0;
                    for (; r < h; r++)
                    {
                        o[r] = src[r];
                    }

                    for (; r < mr; r++)
                    {
                        o[r] = 0f;
                    }
                }
            }
        }
    }

    // op(b) k0..k0+kc, columns col0..col0+cols -> strips of nr columns, each [kc][nr], the last zero-padded.
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void PackB(float* b, int ldb, bool transposed, int k0, int kc, int col0, int cols, int nr, float* dst)
    {
        if (!transposed)
        {
            // b [k, n]: walk b's rows in memory order (prefetch-friendly), dealing each row out to the strips.
            int full = cols - (cols % nr);
            for (int p = 0; p < kc; p++)
            {
                float* src = b + ((long)(k0 + p) * ldb) + col0;
                float* o = dst + (p * nr);
                int s = 0;
                for (; s < full; s += nr)
                {
                    float* strip = o + ((long)s * kc);
                    if (Vector512.IsHardwareAccelerated)
                    {
                        for (int j = 0; j < nr; j += 16)
                        {
                            Vector512.Store(Vector512.Load(src + s + j), strip + j);
                        }
                    }
                    else
                    {
                        for (int j = 0; j < nr; j += 8)
                        {
                            Vector256.Store(Vector256.Load(src + s + j), strip + j);
                        }
                    }
                }

                if (s < cols)
                {
                    float* strip = o + ((long)s * kc);
                    int j = 0;
                    for (; s + j < cols; j++)
                    {
                        strip[j] = src[s + j];
                    }

                    for (; j < nr; j++)
                    {
                        strip[j] = 0f;
                    }
                }
            }

            return;
        }

        for (int s = 0; s < cols; s += nr)
        {
            int w = Math.Min(nr, cols - s);
            float* strip = dst + ((long)s * kc);

            // b [n, k]: each of the strip's columns is a contiguous row of b; transpose 8×8 blocks in registers.
            int j0 = 0;
            int p0 = kc & ~7;
            if (Avx.IsSupported)
            {
                for (; j0 + 8 <= w; j0 += 8)
                {
                    float* src = b + ((long)(col0 + s + j0) * ldb) + k0;
                    for (int p = 0; p < p0; p += 8)
                    {
                        Transpose8x8(src + p, ldb, strip + (p * nr) + j0, nr);
                    }
                }
            }

            for (int j = 0; j < w; j++)
            {
                float* src = b + ((long)(col0 + s + j) * ldb) + k0;
                float* o = strip + j;
                for (int p = j < j0 ? p0 : 0; p < kc; p++)
                {
                    o[p * nr] = src[p];
                }
            }

            for (int j = w; j < nr; j++)
            {
                for (int p = 0; p < kc; p++)
                {
                    strip[(p * nr) + j] = 0f;
                }
            }
        }
    }

    // dst[q * dstStride + r] = src[r * srcStride + q] for an 8×8 block.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(float* src, int srcStride, float* dst, int dstStride)
    {
        var r0 = Avx.LoadVector256(src);
        var r1 = Avx.LoadVector256(src + srcStride);
        var r2 = Avx.LoadVector256(src + (2 * srcStride));
        var r3 = Avx.LoadVector256(src + (3 * srcStride));
        var r4 = Avx.LoadVector256(src + (4 * srcStride));
        var r5 = Avx.LoadVector256(src + (5 * srcStride));
        var r6 = Avx.LoadVector256(src + (6 * srcStride));
        var r7 = Avx.LoadVector256(src + (7 * srcStride));

        // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var s0 = Avx.Shuffle(t0, t2, 0x44);
        var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44);
        var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44);
        var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44);
        var s7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(s0, s4, 0x20));
        Avx.Store(dst + dstStride, Avx.Permute2x128(s1, s5, 0x20));
        Avx.Store(dst + (2 * dstStride), Avx.Permute2x128(s2, s6, 0x20));
        Avx.Store(dst + (3 * dstStride), Avx.Permute2x128(s3, s7, 0x20));
        Avx.Store(dst + (4 * dstStride), Avx.Permute2x128(s0, s4, 0x31));
        Avx.Store(dst + (5 * dstStride), Avx.Permute2x128(s1, s5, 0x31));
        Avx.Store(dst + (6 * dstStride), Avx.Permute2x128(s2, s6, 0x31));
        Avx.Store(dst + (7 * dstStride), Avx.Permute2x128(s3, s7, 0x31));
    }
}
