using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;

namespace Headlight.Kernels;

/// <summary>
/// Attention's register-tiled ILGPU kernels. A group of 128 threads, laid out 16 × 8 as (ty, tx), owns 32 rows
/// (queries, or keys for dK and dV): thread (ty, tx) holds rows ty and ty + 16. Tiles of 32 keys (or queries) are
/// staged transposed in shared memory, <c>tile[d·33 + row]</c>, so that both the score micro-tile (thread: 2 rows ×
/// keys tx + 8c) and the accumulator update (thread: 2 rows × dims tx + 8u) read it without bank conflicts. Each
/// thread keeps its scores and its slice of the output in registers (<see cref="Quad"/>s, one per 32 head dims),
/// so the head dimension picks the kernel: 32, 64, 96 or 128 dims padded with zeros.
/// </summary>
public static partial class Attention
{
    // Threads per group, rows per group and keys (or queries) per tile of the register-tiled kernels.
    internal const int TileThreads = 128;
    internal const int TileSize = 32;

    // The largest head dimension the 32-row backward kernels take (their four staged tiles fit 48 KB up to here);
    // wider heads take the 16-row ones.
    internal const int TiledBackwardMaxDim = 64;

    // Row pitch of a transposed tile [dim][TileSize + 1]: the extra column spreads a dimension's rows over all banks.
    private const int TileStride = TileSize + 1;

    // Shared floats of one transposed tile for 32, 64, 96 or 128 (padded) head dims.
    private const int Tile32 = 32 * TileStride;
    private const int Tile64 = 64 * TileStride;
    private const int Tile96 = 96 * TileStride;
    private const int Tile128 = 128 * TileStride;

    // Scores (or probabilities) of one tile, [row][TileSize + 1].
    private const int ScoreTile = TileSize * TileStride;

    // The wide backward kernels (head dims above 64): 16 rows per group and per tile, transposed tiles [dim][17].
    internal const int WideTileSize = 16;
    private const int WideTileStride = WideTileSize + 1;
    private const int WideTile96 = 96 * WideTileStride;
    private const int WideTile128 = 128 * WideTileStride;
    private const int WideScoreTile = WideTileSize * WideTileStride;
    private const long WideChunk = 32 * WideTileStride;

    // Index steps inside tiles: 16 rows of a score tile; 32 dims of a transposed tile.
    private const long Row16 = 16 * TileStride;
    private const long Chunk = 32 * TileStride;

    /// <summary>Four dims of one row held in registers: dims d, d + 8, d + 16, d + 24.</summary>
    private struct Quad
    {
        public float X;
        public float Y;
        public float Z;
        public float W;
    }

    /// <summary>Padded head dims of the register-tiled kernels, in units of 32 (1 to 4).</summary>
    internal static int TileChunks(int headDim) => DivUp(headDim, 32);

    #region Forward

    // q, k, v [batch, seq, width] -> o [batch, query, width], lse [batch, heads, query]; head dims ≤ 32.
    internal static void Forward32Kernel(
        ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o, ArrayView<float> lse, ArrayView<int> mask, Layout p)
    {
        ForwardTiled(
            q, k, v, o, lse, mask, p, 1, SharedMemory.Allocate<float>(Tile32), SharedMemory.Allocate<float>(Tile32),
            SharedMemory.Allocate<float>(ScoreTile), SharedMemory.Allocate<float>(ScoreTile), SharedMemory.Allocate<int>(TileSize));
    }

    // As Forward32Kernel, head dims 33 to 64.
    internal static void Forward64Kernel(
        ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o, ArrayView<float> lse, ArrayView<int> mask, Layout p)
    {
        ForwardTiled(
            q, k, v, o, lse, mask, p, 2, SharedMemory.Allocate<float>(Tile64), SharedMemory.Allocate<float>(Tile64),
            SharedMemory.Allocate<float>(ScoreTile), SharedMemory.Allocate<float>(ScoreTile), SharedMemory.Allocate<int>(TileSize));
    }

    // As Forward32Kernel, head dims 65 to 96.
    internal static void Forward96Kernel(
        ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o, ArrayView<float> lse, ArrayView<int> mask, Layout p)
    {
        ForwardTiled(
            q, k, v, o, lse, mask, p, 3, SharedMemory.Allocate<float>(Tile96), SharedMemory.Allocate<float>(Tile96),
            SharedMemory.Allocate<float>(ScoreTile), SharedMemory.Allocate<float>(ScoreTile), SharedMemory.Allocate<int>(TileSize));
    }

    // As Forward32Kernel, head dims 97 to 128.
    internal static void Forward128Kernel(
        ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> o, ArrayView<float> lse, ArrayView<int> mask, Layout p)
    {
        ForwardTiled(
            q, k, v, o, lse, mask, p, 4, SharedMemory.Allocate<float>(Tile128), SharedMemory.Allocate<float>(Tile128),
            SharedMemory.Allocate<float>(ScoreTile), SharedMemory.Allocate<float>(ScoreTile), SharedMemory.Allocate<int>(TileSize));
    }

    // One group per (batch, head, block of 32 queries); FlashAttention's online softmax over tiles of 32 keys.
    // qT: the block's scaled queries, transposed; kvT: the tile's keys, then its values (transposed);
    // scores and probs [row][33]: the tile's masked scores and exp(s − m'); chunks: padded head dims / 32.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ForwardTiled(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> lse,
        ArrayView<int> mask,
        Layout p,
        int chunks,
        ArrayView<float> qT,
        ArrayView<float> kvT,
        ArrayView<float> scores,
        ArrayView<float> probs,
        ArrayView<int> visible)
    {
        int padded = chunks * 32;
        int dim = p.HeadDim;
        int block = Grid.IdxX % p.Blocks;
        int bh = Grid.IdxX / p.Blocks;
        int h = bh % p.Heads;
        int b = bh / p.Heads;
        int tx = Group.IdxX % 8;
        int ty = Group.IdxX / 8;
        int first = block * TileSize;
        int count = p.QueryLength - first < TileSize ? p.QueryLength - first : TileSize;
        int i0 = first + ty;
        int i1 = i0 + 16;
        StageTransposed(q, p.QStride, (b * p.QueryLength) + first, p.QColumn + (h * dim), count, dim, padded, p.Scale, qT, TileSize, TileStride);

        // Keys this group needs: all of them, or (causal) up to the last query's limit; head h reads key/value head h / group.
        int keyEnd = KeyEnd(p, first + count - 1);
        int kvOffset = (h / p.Group) * dim;

        float m0 = float.NegativeInfinity;
        float m1 = float.NegativeInfinity;
        float l0 = 0f;
        float l1 = 0f;
        Quad a00 = default, a01 = default, a02 = default, a03 = default;
        Quad a10 = default, a11 = default, a12 = default, a13 = default;
        long row0 = ty * TileStride;
        long slot = row0 + tx;
        long txColumn = tx * TileStride;
        for (int tile = 0; tile < keyEnd; tile += TileSize)
        {
            int n = keyEnd - tile < TileSize ? keyEnd - tile : TileSize;
            StageTransposed(k, p.KStride, (b * p.KeyLength) + tile, p.KColumn + kvOffset, n, dim, padded, 1f, kvT, TileSize, TileStride);
            StageVisible(mask, p, b, tile, n, visible);
            Group.Barrier();

            // Scores of rows (ty, ty + 16) × keys tx + 8c.
            float s00 = 0f, s01 = 0f, s02 = 0f, s03 = 0f, s10 = 0f, s11 = 0f, s12 = 0f, s13 = 0f;
            long eq = ty;
            long ek = tx;
            for (int d = 0; d < dim; d++, eq += TileStride, ek += TileStride)
            {
                float q0 = qT[eq];
                float q1 = qT[eq + 16];
                float k0 = kvT[ek];
                float k1 = kvT[ek + 8];
                float k2 = kvT[ek + 16];
                float k3 = kvT[ek + 24];
                s00 += q0 * k0;
                s01 += q0 * k1;
                s02 += q0 * k2;
                s03 += q0 * k3;
                s10 += q1 * k0;
                s11 += q1 * k1;
                s12 += q1 * k2;
                s13 += q1 * k3;
            }

            s00 = MaskScore(s00, visible, p, tile, tx, 0, i0);
            s01 = MaskScore(s01, visible, p, tile, tx, 1, i0);
            s02 = MaskScore(s02, visible, p, tile, tx, 2, i0);
            s03 = MaskScore(s03, visible, p, tile, tx, 3, i0);
            s10 = MaskScore(s10, visible, p, tile, tx, 0, i1);
            s11 = MaskScore(s11, visible, p, tile, tx, 1, i1);
            s12 = MaskScore(s12, visible, p, tile, tx, 2, i1);
            s13 = MaskScore(s13, visible, p, tile, tx, 3, i1);
            scores[slot] = s00;
            scores[slot + 8] = s01;
            scores[slot + 16] = s02;
            scores[slot + 24] = s03;
            scores[slot + Row16] = s10;
            scores[slot + Row16 + 8] = s11;
            scores[slot + Row16 + 16] = s12;
            scores[slot + Row16 + 24] = s13;
            Group.Barrier();

            // The keys are used up: the values take their place while each thread folds the tile's maxima.
            StageTransposed(v, p.VStride, (b * p.KeyLength) + tile, p.VColumn + kvOffset, n, dim, padded, 1f, kvT, TileSize, TileStride);
            float t0 = float.NegativeInfinity;
            float t1 = float.NegativeInfinity;
            for (int j = 0; j < n; j++)
            {
                long sj = row0 + j;
                t0 = XMath.Max(t0, scores[sj]);
                t1 = XMath.Max(t1, scores[sj + Row16]);
            }

            // m' = max(m, rowmax S); ℓ and O are rescaled by exp(m − m') (1 while the row has seen no key).
            float n0 = XMath.Max(m0, t0);
            float n1 = XMath.Max(m1, t1);
            float alpha0 = n0 == float.NegativeInfinity ? 1f : XMath.Exp(m0 - n0);
            float alpha1 = n1 == float.NegativeInfinity ? 1f : XMath.Exp(m1 - n1);
            m0 = n0;
            m1 = n1;
            l0 *= alpha0;
            l1 *= alpha1;
            a00 = Times(a00, alpha0);
            a10 = Times(a10, alpha1);
            if (chunks > 1)
            {
                a01 = Times(a01, alpha0);
                a11 = Times(a11, alpha1);
            }

            if (chunks > 2)
            {
                a02 = Times(a02, alpha0);
                a12 = Times(a12, alpha1);
            }

            if (chunks > 3)
            {
                a03 = Times(a03, alpha0);
                a13 = Times(a13, alpha1);
            }

            probs[slot] = Probability(s00, n0);
            probs[slot + 8] = Probability(s01, n0);
            probs[slot + 16] = Probability(s02, n0);
            probs[slot + 24] = Probability(s03, n0);
            probs[slot + Row16] = Probability(s10, n1);
            probs[slot + Row16 + 8] = Probability(s11, n1);
            probs[slot + Row16 + 16] = Probability(s12, n1);
            probs[slot + Row16 + 24] = Probability(s13, n1);
            Group.Barrier();

            // O += P̃·V and ℓ += rowsum P̃ for this thread's dims.
            for (int j = 0; j < n; j++)
            {
                long pj = row0 + j;
                float p0 = probs[pj];
                float p1 = probs[pj + Row16];
                l0 += p0;
                l1 += p1;
                long vj = txColumn + j;
                var v0 = Column(kvT, vj);
                a00 = Fma(a00, p0, v0);
                a10 = Fma(a10, p1, v0);
                if (chunks > 1)
                {
                    var v1 = Column(kvT, vj + Chunk);
                    a01 = Fma(a01, p0, v1);
                    a11 = Fma(a11, p1, v1);
                }

                if (chunks > 2)
                {
                    var v2 = Column(kvT, vj + (2 * Chunk));
                    a02 = Fma(a02, p0, v2);
                    a12 = Fma(a12, p1, v2);
                }

                if (chunks > 3)
                {
                    var v3 = Column(kvT, vj + (3 * Chunk));
                    a03 = Fma(a03, p0, v3);
                    a13 = Fma(a13, p1, v3);
                }
            }

            Group.Barrier();
        }

        if (i0 < p.QueryLength)
        {
            StoreForwardRow(o, lse, p, bh, i0, tx, chunks, m0, l0, a00, a01, a02, a03);
        }

        if (i1 < p.QueryLength)
        {
            StoreForwardRow(o, lse, p, bh, i1, tx, chunks, m1, l1, a10, a11, a12, a13);
        }
    }

    // The score s of query i and key tile + tx + 8c, or −∞ when the key is masked, beyond the tile or (causal) ahead of i.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float MaskScore(float s, ArrayView<int> visible, Layout p, int tile, int tx, int c, int i)
        => visible[(long)tx + (8 * c)] != 0 && (p.Causal == 0 || tile + tx + (8 * c) <= i + p.CausalOffset) ? s : float.NegativeInfinity;

    // exp(s − m), exactly 0 for a masked score.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Probability(float s, float m) => s == float.NegativeInfinity ? 0f : XMath.Exp(s - m);

    // o [batch, query, width] row i of pair bh, dims tx + 8u = acc/ℓ (0 when the row sees no key); lse = m + log ℓ (+∞ then).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreForwardRow(
        ArrayView<float> o, ArrayView<float> lse, Layout p, int bh, int i, int tx, int chunks, float m, float l, Quad c0, Quad c1, Quad c2, Quad c3)
    {
        int dim = p.HeadDim;
        int h = bh % p.Heads;
        int b = bh / p.Heads;
        int oBase = (((b * p.QueryLength) + i) * p.OStride) + p.OColumn + (h * dim);
        float inv = l > 0f ? 1f / l : 0f;
        StoreRow(o, oBase, tx, dim, chunks, inv, c0, c1, c2, c3);
        if (tx == 0)
        {
            lse[(bh * p.QueryLength) + i] = l > 0f ? m + XMath.Log(l) : float.PositiveInfinity;
        }
    }

    #endregion

    #region Tiles

    // Stages rows [rowBase, rowBase + count) (count ≤ tileRows, 32 or 16) of one head transposed, tile[d·tileStride + r] =
    // scale·src[row r, column + d] for d < headDim, 0 for the padding dims up to padded and for rows beyond count.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StageTransposed(
        ArrayView<float> src, int stride, int rowBase, int column, int count, int headDim, int padded, float scale, ArrayView<float> tile, int tileRows, int tileStride)
    {
        for (int e = Group.IdxX; e < tileRows * padded; e += TileThreads)
        {
            int r = e / padded;
            int d = e - (r * padded);
            float x = 0f;
            if (r < count && d < headDim)
            {
                x = src[((rowBase + r) * stride) + column + d] * scale;
            }

            tile[(d * tileStride) + r] = x;
        }
    }

    // StageTransposed for the signal at the output (OutputSignal of dO and o) of query rows [rowBase, rowBase + count).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StageSignal(
        ArrayView<float> dO, ArrayView<float> o, Layout p, int rowBase, int count, int h, int padded, ArrayView<float> tile, int tileRows, int tileStride)
    {
        int dim = p.HeadDim;
        for (int e = Group.IdxX; e < tileRows * padded; e += TileThreads)
        {
            int r = e / padded;
            int d = e - (r * padded);
            float x = 0f;
            if (r < count && d < dim)
            {
                int row = rowBase + r;
                x = OutputSignal(dO[(row * p.GStride) + p.GColumn + (h * dim) + d], o[(row * p.OStride) + p.OColumn + (h * dim) + d], p);
            }

            tile[(d * tileStride) + r] = x;
        }
    }

    // visible[jj] = 1 when key tile + jj exists (jj < n) and is not padding.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StageVisible(ArrayView<int> mask, Layout p, int b, int tile, int n, ArrayView<int> visible)
    {
        if (Group.IdxX < TileSize)
        {
            int jj = Group.IdxX;
            visible[jj] = jj < n && (p.HasMask == 0 || mask[(b * p.KeyLength) + tile + jj] != 0) ? 1 : 0;
        }
    }

    // Dims d, d + 8, d + 16, d + 24 of row (or column) j of a transposed tile, e = d·33 + j. Shared indices are longs
    // from the thread's base on, so that constant offsets fold into the loads' addresses (an int sum widened per
    // access costs a register per address).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Quad Column(ArrayView<float> tile, long e) => Column(tile, e, TileStride);

    // Column of a transposed tile with rows of the given pitch.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Quad Column(ArrayView<float> tile, long e, long tileStride)
        => new() { X = tile[e], Y = tile[e + (8 * tileStride)], Z = tile[e + (16 * tileStride)], W = tile[e + (24 * tileStride)] };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Quad Fma(Quad acc, float s, Quad x)
        => new() { X = acc.X + (s * x.X), Y = acc.Y + (s * x.Y), Z = acc.Z + (s * x.Z), W = acc.W + (s * x.W) };

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Quad Times(Quad a, float s) => new() { X = a.X * s, Y = a.Y * s, Z = a.Z * s, W = a.W * s };

    // A thread's slice of one row, dims tx + 8u (u < 4·chunks) below headDim, times scale, at dst[rowBase + dim].
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(ArrayView<float> dst, int rowBase, int tx, int headDim, int chunks, float scale, Quad c0, Quad c1, Quad c2, Quad c3)
    {
        StoreQuad(dst, rowBase, tx, headDim, scale, c0);
        if (chunks > 1)
        {
            StoreQuad(dst, rowBase, tx + 32, headDim, scale, c1);
        }

        if (chunks > 2)
        {
            StoreQuad(dst, rowBase, tx + 64, headDim, scale, c2);
        }

        if (chunks > 3)
        {
            StoreQuad(dst, rowBase, tx + 96, headDim, scale, c3);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreQuad(ArrayView<float> dst, int rowBase, int dim, int headDim, float scale, Quad a)
    {
        if (dim < headDim)
        {
            dst[rowBase + dim] = a.X * scale;
        }

        if (dim + 8 < headDim)
        {
            dst[rowBase + dim + 8] = a.Y * scale;
        }

        if (dim + 16 < headDim)
        {
            dst[rowBase + dim + 16] = a.Z * scale;
        }

        if (dim + 24 < headDim)
        {
            dst[rowBase + dim + 24] = a.W * scale;
        }
    }

    #endregion
}
