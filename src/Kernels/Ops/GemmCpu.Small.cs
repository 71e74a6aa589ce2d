using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Headlight.Kernels;

/// <summary>
/// Small products on unpacked, strided operands (attention's blocks of at most 32 rows × 128 keys): no packing,
/// the rows of <c>a</c> broadcast one value at a time against 16- or 32-wide column strips of <c>b</c>.
/// </summary>
internal static unsafe partial class GemmCpu
{
    /// <summary>
    /// <c>c[r, 0..n) (+)= Σ_t a[r·aRow + t·aCol] · b[t·bRow + 0..n)</c> for <c>r &lt; rows</c>, <c>t &lt; depth</c>;
    /// <paramref name="n"/> is a multiple of 16. Strides let <c>a</c> be read transposed.
    /// </summary>
    internal static void SmallMultiplyAdd(float* c, int cRow, float* a, int aRow, int aCol, float* b, int bRow, int rows, int depth, int n, bool accumulate)
    {
        if (Vector512.IsHardwareAccelerated)
        {
            // Blocks of eight rows (16 accumulators: more multiply-adds per load), then fours for the rest.
            int eights = rows >= 8 ? rows & ~7 : 0;
            if (eights > 0)
            {
                SmallMultiplyAdd512x8(c, cRow, a, aRow, aCol, b, bRow, eights, depth, n, accumulate);
            }

            if (rows > eights)
            {
                SmallMultiplyAdd4<Lanes512, Vector512<float>>(c + (eights * cRow), cRow, a + (eights * aRow), aRow, aCol, b, bRow, rows - eights, depth, n, accumulate);
            }
        }
        else
        {
            // Without AVX-512: 8-float vectors, 16 columns per step.
            SmallMultiplyAdd4<Lanes256, Vector256<float>>(c, cRow, a, aRow, aCol, b, bRow, rows, depth, n, accumulate);
        }
    }

    // Eight rows (a multiple of 8) at a time, 32 columns per step: 16 accumulators per pass over depth.
    [SkipLocalsInit]
    private static void SmallMultiplyAdd512x8(float* c, int cRow, float* a, int aRow, int aCol, float* b, int bRow, int rows, int depth, int n, bool accumulate)
    {
        for (int r = 0; r < rows; r += 8)
        {
            float* a0 = a + (r * aRow);
            float* c0 = c + (r * cRow);
            int j = 0;
            for (; j + 32 <= n; j += 32)
            {
                Vector512<float> x00, x01, x10, x11, x20, x21, x30, x31, x40, x41, x50, x51, x60, x61, x70, x71;
                if (accumulate)
                {
                    x00 = Vector512.Load(c0 + j);
                    x01 = Vector512.Load(c0 + j + 16);
                    x10 = Vector512.Load(c0 + cRow + j);
                    x11 = Vector512.Load(c0 + cRow + j + 16);
                    x20 = Vector512.Load(c0 + (2 * cRow) + j);
                    x21 = Vector512.Load(c0 + (2 * cRow) + j + 16);
                    x30 = Vector512.Load(c0 + (3 * cRow) + j);
                    x31 = Vector512.Load(c0 + (3 * cRow) + j + 16);
                    x40 = Vector512.Load(c0 + (4 * cRow) + j);
                    x41 = Vector512.Load(c0 + (4 * cRow) + j + 16);
                    x50 = Vector512.Load(c0 + (5 * cRow) + j);
                    x51 = Vector512.Load(c0 + (5 * cRow) + j + 16);
                    x60 = Vector512.Load(c0 + (6 * cRow) + j);
                    x61 = Vector512.Load(c0 + (6 * cRow) + j + 16);
                    x70 = Vector512.Load(c0 + (7 * cRow) + j);
                    x71 = Vector512.Load(c0 + (7 * cRow) + j + 16);
                }
                else
                {
                    x00 = x01 = x10 = x11 = x20 = x21 = x30 = x31 = Vector512<float>.Zero;
                    x40 = x41 = x50 = x51 = x60 = x61 = x70 = x71 = Vector512<float>.Zero;
                }

                float* bp = b + j;
                float* ap = a0;
                for (int t = 0; t < depth; t++, bp += bRow, ap += aCol)
                {
                    var b0 = Vector512.Load(bp);
                    var b1 = Vector512.Load(bp + 16);
                    var s = Vector512.Create(ap[0]);
                    x00 = Vector512.FusedMultiplyAdd(s, b0, x00);
                    x01 = Vector512.FusedMultiplyAdd(s, b1, x01);
                    s = Vector512.Create(ap[aRow]);
                    x10 = Vector512.FusedMultiplyAdd(s, b0, x10);
                    x11 = Vector512.FusedMultiplyAdd(s, b1, x11);
                    s = Vector512.Create(ap[2 * aRow]);
                    x20 = Vector512.FusedMultiplyAdd(s, b0, x20);
                    x21 = Vector512.FusedMultiplyAdd(s, b1, x21);
                    s = Vector512.Create(ap[3 * aRow]);
                    x30 = Vector512.FusedMultiplyAdd(s, b0, x30);
                    x31 = Vector512.FusedMultiplyAdd(s, b1, x31);
                    s = Vector512.Create(ap[4 * aRow]);
                    x40 = Vector512.FusedMultiplyAdd(s, b0, x40);
                    x41 = Vector512.FusedMultiplyAdd(s, b1, x41);
                    s = Vector512.Create(ap[5 * aRow]);
                    x50 = Vector512.FusedMultiplyAdd(s, b0, x50);
                    x51 = Vector512.FusedMultiplyAdd(s, b1, x51);
                    s = Vector512.Create(ap[6 * aRow]);
                    x60 = Vector512.FusedMultiplyAdd(s, b0, x60);
                    x61 = Vector512.FusedMultiplyAdd(s, b1, x61);
                    s = Vector512.Create(ap[7 * aRow]);
                    x70 = Vector512.FusedMultiplyAdd(s, b0, x70);
                    x71 = Vector512.FusedMultiplyAdd(s, b1, x71);
                }

                x00.Store(c0 + j);
                x01.Store(c0 + j + 16);
                x10.Store(c0 + cRow + j);
                x11.Store(c0 + cRow + j + 16);
                x20.Store(c0 + (2 * cRow) + j);
                x21.Store(c0 + (2 * cRow) + j + 16);
                x30.Store(c0 + (3 * cRow) + j);
                x31.Store(c0 + (3 * cRow) + j + 16);
                x40.Store(c0 + (4 * cRow) + j);
                x41.Store(c0 + (4 * cRow) + j + 16);
                x50.Store(c0 + (5 * cRow) + j);
                x51.Store(c0 + (5 * cRow) + j + 16);
                x60.Store(c0 + (6 * cRow) + j);
                x61.Store(c0 + (6 * cRow) + j + 16);
                x70.Store(c0 + (7 * cRow) + j);
                x71.Store(c0 + (7 * cRow) + j + 16);
            }

            if (j < n)
            {
                // A last 16 columns: the four-row kernel twice.
                SmallMultiplyAdd4<Lanes512, Vector512<float>>(c0 + j, cRow, a0, aRow, aCol, b + j, bRow, 8, depth, n - j, accumulate);
            }
        }
    }

    // Four rows at a time, two vectors of columns per step and then one; rows past the end repeat the last
    // row, which computes and stores the same values twice. With 8-float vectors and n a multiple of 16 the
    // one-vector tail never runs.
    [SkipLocalsInit]
    private static void SmallMultiplyAdd4<TLanes, TVector>(
        float* c, int cRow, float* a, int aRow, int aCol, float* b, int bRow, int rows, int depth, int n, bool accumulate)
        where TLanes : struct, ILanes<TVector>
        where TVector : struct
    {
        int w = TLanes.Count;
        for (int r = 0; r < rows; r += 4)
        {
            int last = rows - 1;
            float* a0 = a + (r * aRow);
            float* a1 = a + (Math.Min(r + 1, last) * aRow);
            float* a2 = a + (Math.Min(r + 2, last) * aRow);
            float* a3 = a + (Math.Min(r + 3, last) * aRow);
            float* c0 = c + (r * cRow);
            float* c1 = c + (Math.Min(r + 1, last) * cRow);
            float* c2 = c + (Math.Min(r + 2, last) * cRow);
            float* c3 = c + (Math.Min(r + 3, last) * cRow);
            int j = 0;
            for (; j + (2 * w) <= n; j += 2 * w)
            {
                TVector x00, x01, x10, x11, x20, x21, x30, x31;
                if (accumulate)
                {
                    x00 = TLanes.Load(c0 + j);
                    x01 = TLanes.Load(c0 + j + w);
                    x10 = TLanes.Load(c1 + j);
                    x11 = TLanes.Load(c1 + j + w);
                    x20 = TLanes.Load(c2 + j);
                    x21 = TLanes.Load(c2 + j + w);
                    x30 = TLanes.Load(c3 + j);
                    x31 = TLanes.Load(c3 + j + w);
                }
                else
                {
                    x00 = x01 = x10 = x11 = x20 = x21 = x30 = x31 = TLanes.Zero;
                }

                float* bp = b + j;
                for (int t = 0; t < depth; t++, bp += bRow)
                {
                    var b0 = TLanes.Load(bp);
                    var b1 = TLanes.Load(bp + w);
                    int at = t * aCol;
                    var s0 = TLanes.Broadcast(a0[at]);
                    var s1 = TLanes.Broadcast(a1[at]);
                    var s2 = TLanes.Broadcast(a2[at]);
                    var s3 = TLanes.Broadcast(a3[at]);
                    x00 = TLanes.MultiplyAdd(s0, b0, x00);
                    x01 = TLanes.MultiplyAdd(s0, b1, x01);
                    x10 = TLanes.MultiplyAdd(s1, b0, x10);
                    x11 = TLanes.MultiplyAdd(s1, b1, x11);
                    x20 = TLanes.MultiplyAdd(s2, b0, x20);
                    x21 = TLanes.MultiplyAdd(s2, b1, x21);
                    x30 = TLanes.MultiplyAdd(s3, b0, x30);
                    x31 = TLanes.MultiplyAdd(s3, b1, x31);
                }

                TLanes.Store(x00, c0 + j);
                TLanes.Store(x01, c0 + j + w);
                TLanes.Store(x10, c1 + j);
                TLanes.Store(x11, c1 + j + w);
                TLanes.Store(x20, c2 + j);
                TLanes.Store(x21, c2 + j + w);
                TLanes.Store(x30, c3 + j);
                TLanes.Store(x31, c3 + j + w);
            }

            for (; j < n; j += w)
            {
                TVector x0, x1, x2, x3;
                if (accumulate)
                {
                    x0 = TLanes.Load(c0 + j);
                    x1 = TLanes.Load(c1 + j);
                    x2 = TLanes.Load(c2 + j);
                    x3 = TLanes.Load(c3 + j);
                }
                else
                {
                    x0 = x1 = x2 = x3 = TLanes.Zero;
                }

                float* bp = b + j;
                for (int t = 0; t < depth; t++, bp += bRow)
                {
                    var b0 = TLanes.Load(bp);
                    int at = t * aCol;
                    x0 = TLanes.MultiplyAdd(TLanes.Broadcast(a0[at]), b0, x0);
                    x1 = TLanes.MultiplyAdd(TLanes.Broadcast(a1[at]), b0, x1);
                    x2 = TLanes.MultiplyAdd(TLanes.Broadcast(a2[at]), b0, x2);
                    x3 = TLanes.MultiplyAdd(TLanes.Broadcast(a3[at]), b0, x3);
                }

                TLanes.Store(x0, c0 + j);
                TLanes.Store(x1, c1 + j);
                TLanes.Store(x2, c2 + j);
                TLanes.Store(x3, c3 + j);
            }
        }
    }

    /// <summary>One vector width for <see cref="SmallMultiplyAdd4{TLanes, TVector}"/>: the vector type's loads, stores and multiply-add.</summary>
    private interface ILanes<TVector>
        where TVector : struct
    {
        static abstract int Count { get; }

        static abstract TVector Zero { get; }

        static abstract TVector Load(float* source);

        static abstract void Store(TVector value, float* destination);

        static abstract TVector Broadcast(float value);

        /// <summary><c>a·b + c</c>.</summary>
        static abstract TVector MultiplyAdd(TVector a, TVector b, TVector c);
    }

    // AVX-512: FMA is always there, so the fused form.
    private readonly struct Lanes512 : ILanes<Vector512<float>>
    {
        public static int Count => Vector512<float>.Count;

        public static Vector512<float> Zero => Vector512<float>.Zero;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Load(float* source) => Vector512.Load(source);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Store(Vector512<float> value, float* destination) => value.Store(destination);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> Broadcast(float value) => Vector512.Create(value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector512<float> MultiplyAdd(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
    }

    // AVX2 machines: fused where FMA exists, multiply then add where it does not.
    private readonly struct Lanes256 : ILanes<Vector256<float>>
    {
        public static int Count => Vector256<float>.Count;

        public static Vector256<float> Zero => Vector256<float>.Zero;

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load(float* source) => Vector256.Load(source);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Store(Vector256<float> value, float* destination) => value.Store(destination);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Broadcast(float value) => Vector256.Create(value);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> MultiplyAdd(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.MultiplyAddEstimate(a, b, c);
    }
}
