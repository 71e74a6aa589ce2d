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

        // Keys this group needs: all of them, or (causal) up to the last query's limit.
        int keyEnd = KeyEnd(p, first + count - 1);

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
            StageTransposed(k, p.KStride, (b * p.KeyLength) + tile, p.KColumn + (h * dim), n, dim, padded, 1f, kvT, TileSize, TileStride);
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
            StageTransposed(v, p.VStride, (b * p.KeyLength) + tile, p.VColumn + (h * dim), n, dim, padded, 1f, kvT, TileSize, TileStride);
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

    #region Backward

    // dQ, head dims ≤ 32: see BackwardQueryTiled.
    internal static void BackwardQuery32Kernel(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dq,
        Layout p)
    {
        BackwardQueryTiled(
            q, k, v, o, dO, lse, delta, mask, dq, p, 1, SharedMemory.Allocate<float>(Tile32), SharedMemory.Allocate<float>(Tile32),
            SharedMemory.Allocate<float>(Tile32), SharedMemory.Allocate<float>(Tile32), SharedMemory.Allocate<float>(ScoreTile), SharedMemory.Allocate<int>(TileSize));
    }

    // dQ, head dims 33 to 64: see BackwardQueryTiled.
    internal static void BackwardQuery64Kernel(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dq,
        Layout p)
    {
        BackwardQueryTiled(
            q, k, v, o, dO, lse, delta, mask, dq, p, 2, SharedMemory.Allocate<float>(Tile64), SharedMemory.Allocate<float>(Tile64),
            SharedMemory.Allocate<float>(Tile64), SharedMemory.Allocate<float>(Tile64), SharedMemory.Allocate<float>(ScoreTile), SharedMemory.Allocate<int>(TileSize));
    }

    // dQ = scale·Σⱼ P∘(dP − D)·kⱼ for a block of 32 query rows, over tiles of 32 keys: the scores and dP = g·vᵀ as
    // 2 × 4 register micro-tiles, dS through shared memory, dQ in registers.
    // q, k, v, o, dO [batch, seq, width], lse, delta [batch, heads, query] -> dq [batch, query, width]
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BackwardQueryTiled(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dq,
        Layout p,
        int chunks,
        ArrayView<float> qT,
        ArrayView<float> gT,
        ArrayView<float> kT,
        ArrayView<float> vT,
        ArrayView<float> dsTile,
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

        // CP-LRP sends nothing through the scores: dQ is 0. The rule is the same for every thread, so no barrier is skipped.
        if (p.Rule == RuleConservative)
        {
            for (int e = Group.IdxX; e < count * dim; e += TileThreads)
            {
                int r = e / dim;
                int d = e - (r * dim);
                dq[(((b * p.QueryLength) + first + r) * p.DqStride) + p.DqColumn + (h * dim) + d] = 0f;
            }

            return;
        }

        int rows = (b * p.QueryLength) + first;
        StageTransposed(q, p.QStride, rows, p.QColumn + (h * dim), count, dim, padded, p.Scale, qT, TileSize, TileStride);
        StageSignal(dO, o, p, rows, count, h, padded, gT, TileSize, TileStride);
        float lse0 = i0 < p.QueryLength ? lse[(bh * p.QueryLength) + i0] : float.PositiveInfinity;
        float lse1 = i1 < p.QueryLength ? lse[(bh * p.QueryLength) + i1] : float.PositiveInfinity;
        float delta0 = i0 < p.QueryLength ? delta[(bh * p.QueryLength) + i0] : 0f;
        float delta1 = i1 < p.QueryLength ? delta[(bh * p.QueryLength) + i1] : 0f;
        int keyEnd = KeyEnd(p, first + count - 1);

        Quad a00 = default, a01 = default, a10 = default, a11 = default;
        long row0 = ty * TileStride;
        long slot = row0 + tx;
        long txColumn = tx * TileStride;
        for (int tile = 0; tile < keyEnd; tile += TileSize)
        {
            int n = keyEnd - tile < TileSize ? keyEnd - tile : TileSize;
            int keys = (b * p.KeyLength) + tile;
            StageTransposed(k, p.KStride, keys, p.KColumn + (h * dim), n, dim, padded, 1f, kT, TileSize, TileStride);
            StageTransposed(v, p.VStride, keys, p.VColumn + (h * dim), n, dim, padded, 1f, vT, TileSize, TileStride);
            StageVisible(mask, p, b, tile, n, visible);
            Group.Barrier();

            // Scores s = (scale·q)·k and dP = g·v of rows (ty, ty + 16) × keys tx + 8c.
            float s00 = 0f, s01 = 0f, s02 = 0f, s03 = 0f, s10 = 0f, s11 = 0f, s12 = 0f, s13 = 0f;
            float g00 = 0f, g01 = 0f, g02 = 0f, g03 = 0f, g10 = 0f, g11 = 0f, g12 = 0f, g13 = 0f;
            long eq = ty;
            long ek = tx;
            for (int d = 0; d < dim; d++, eq += TileStride, ek += TileStride)
            {
                float q0 = qT[eq];
                float q1 = qT[eq + 16];
                float k0 = kT[ek];
                float k1 = kT[ek + 8];
                float k2 = kT[ek + 16];
                float k3 = kT[ek + 24];
                s00 += q0 * k0;
                s01 += q0 * k1;
                s02 += q0 * k2;
                s03 += q0 * k3;
                s10 += q1 * k0;
                s11 += q1 * k1;
                s12 += q1 * k2;
                s13 += q1 * k3;
            }

            // A second pass for dP keeps half as many loads in flight (registers) as one fused loop.
            eq = ty;
            ek = tx;
            for (int d = 0; d < dim; d++, eq += TileStride, ek += TileStride)
            {
                float o0 = gT[eq];
                float o1 = gT[eq + 16];
                float v0 = vT[ek];
                float v1 = vT[ek + 8];
                float v2 = vT[ek + 16];
                float v3 = vT[ek + 24];
                g00 += o0 * v0;
                g01 += o0 * v1;
                g02 += o0 * v2;
                g03 += o0 * v3;
                g10 += o1 * v0;
                g11 += o1 * v1;
                g12 += o1 * v2;
                g13 += o1 * v3;
            }

            dsTile[slot] = ScoreGradient(s00, g00, lse0, delta0, visible, p, tile, tx, 0, i0);
            dsTile[slot + 8] = ScoreGradient(s01, g01, lse0, delta0, visible, p, tile, tx, 1, i0);
            dsTile[slot + 16] = ScoreGradient(s02, g02, lse0, delta0, visible, p, tile, tx, 2, i0);
            dsTile[slot + 24] = ScoreGradient(s03, g03, lse0, delta0, visible, p, tile, tx, 3, i0);
            dsTile[slot + Row16] = ScoreGradient(s10, g10, lse1, delta1, visible, p, tile, tx, 0, i1);
            dsTile[slot + Row16 + 8] = ScoreGradient(s11, g11, lse1, delta1, visible, p, tile, tx, 1, i1);
            dsTile[slot + Row16 + 16] = ScoreGradient(s12, g12, lse1, delta1, visible, p, tile, tx, 2, i1);
            dsTile[slot + Row16 + 24] = ScoreGradient(s13, g13, lse1, delta1, visible, p, tile, tx, 3, i1);
            Group.Barrier();

            // dQ += dS·K for this thread's dims.
            for (int j = 0; j < n; j++)
            {
                long dj = row0 + j;
                float ds0 = dsTile[dj];
                float ds1 = dsTile[dj + Row16];
                long kj = txColumn + j;
                var k0 = Column(kT, kj);
                a00 = Fma(a00, ds0, k0);
                a10 = Fma(a10, ds1, k0);
                if (chunks > 1)
                {
                    var k1 = Column(kT, kj + Chunk);
                    a01 = Fma(a01, ds0, k1);
                    a11 = Fma(a11, ds1, k1);
                }
            }

            Group.Barrier();
        }

        Quad none = default;
        if (i0 < p.QueryLength)
        {
            StoreRow(dq, (((b * p.QueryLength) + i0) * p.DqStride) + p.DqColumn + (h * dim), tx, dim, chunks, p.Scale, a00, a01, none, none);
        }

        if (i1 < p.QueryLength)
        {
            StoreRow(dq, (((b * p.QueryLength) + i1) * p.DqStride) + p.DqColumn + (h * dim), tx, dim, chunks, p.Scale, a10, a11, none, none);
        }
    }

    // dS = P∘(dP − D) times the rule's share for query i and key tile + tx + 8c, 0 where the key is hidden from i.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float ScoreGradient(float s, float dp, float rowLse, float rowDelta, ArrayView<int> visible, Layout p, int tile, int tx, int c, int i)
        => visible[(long)tx + (8 * c)] != 0 && (p.Causal == 0 || tile + tx + (8 * c) <= i + p.CausalOffset)
            ? XMath.Exp(s - rowLse) * (dp - rowDelta) * ScoreShare(s, p)
            : 0f;

    // dK and dV, head dims ≤ 32: see BackwardKeyValueTiled.
    internal static void BackwardKeyValue32Kernel(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dk,
        ArrayView<float> dv,
        Layout p)
    {
        BackwardKeyValueTiled(
            q, k, v, o, dO, lse, delta, mask, dk, dv, p, 1, SharedMemory.Allocate<float>(Tile32), SharedMemory.Allocate<float>(Tile32),
            SharedMemory.Allocate<float>(Tile32), SharedMemory.Allocate<float>(Tile32), SharedMemory.Allocate<float>(ScoreTile),
            SharedMemory.Allocate<float>(ScoreTile), SharedMemory.Allocate<float>(TileSize), SharedMemory.Allocate<float>(TileSize));
    }

    // dK and dV, head dims 33 to 64: see BackwardKeyValueTiled.
    internal static void BackwardKeyValue64Kernel(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dk,
        ArrayView<float> dv,
        Layout p)
    {
        BackwardKeyValueTiled(
            q, k, v, o, dO, lse, delta, mask, dk, dv, p, 2, SharedMemory.Allocate<float>(Tile64), SharedMemory.Allocate<float>(Tile64),
            SharedMemory.Allocate<float>(Tile64), SharedMemory.Allocate<float>(Tile64), SharedMemory.Allocate<float>(ScoreTile),
            SharedMemory.Allocate<float>(ScoreTile), SharedMemory.Allocate<float>(TileSize), SharedMemory.Allocate<float>(TileSize));
    }

    // dV = Σᵢ Pᵢⱼ·gᵢ and dK = Σᵢ dSᵢⱼ·(scale·qᵢ) for a block of 32 key rows, over tiles of 32 queries: Sᵀ and dPᵀ as
    // 2 × 4 register micro-tiles, P and dS through shared memory, dK and dV in registers.
    // q, k, v, o, dO [batch, seq, width], lse, delta [batch, heads, query] -> dk, dv [batch, key, width]
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BackwardKeyValueTiled(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dk,
        ArrayView<float> dv,
        Layout p,
        int chunks,
        ArrayView<float> kT,
        ArrayView<float> vT,
        ArrayView<float> qT,
        ArrayView<float> gT,
        ArrayView<float> pTile,
        ArrayView<float> dsTile,
        ArrayView<float> lseTile,
        ArrayView<float> deltaTile)
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
        int count = p.KeyLength - first < TileSize ? p.KeyLength - first : TileSize;
        int j0 = first + ty;
        int j1 = j0 + 16;
        bool active0 = j0 < p.KeyLength && (p.HasMask == 0 || mask[(b * p.KeyLength) + j0] != 0);
        bool active1 = j1 < p.KeyLength && (p.HasMask == 0 || mask[(b * p.KeyLength) + j1] != 0);
        int keys = (b * p.KeyLength) + first;
        StageTransposed(k, p.KStride, keys, p.KColumn + (h * dim), count, dim, padded, 1f, kT, TileSize, TileStride);
        StageTransposed(v, p.VStride, keys, p.VColumn + (h * dim), count, dim, padded, 1f, vT, TileSize, TileStride);

        // Causal: query i sees key j only when i ≥ j − offset, so earlier queries are skipped.
        int queryBegin = 0;
        if (p.Causal != 0)
        {
            int begin = first - p.CausalOffset;
            queryBegin = begin < 0 ? 0 : begin;
        }

        Quad v00 = default, v01 = default, v10 = default, v11 = default;
        Quad k00 = default, k01 = default, k10 = default, k11 = default;
        long row0 = ty * TileStride;
        long slot = row0 + tx;
        long txColumn = tx * TileStride;
        for (int tile = queryBegin; tile < p.QueryLength; tile += TileSize)
        {
            int n = p.QueryLength - tile < TileSize ? p.QueryLength - tile : TileSize;
            int rows = (b * p.QueryLength) + tile;
            StageTransposed(q, p.QStride, rows, p.QColumn + (h * dim), n, dim, padded, p.Scale, qT, TileSize, TileStride);
            StageSignal(dO, o, p, rows, n, h, padded, gT, TileSize, TileStride);
            if (Group.IdxX < TileSize)
            {
                int r = Group.IdxX;
                lseTile[r] = r < n ? lse[(bh * p.QueryLength) + tile + r] : float.PositiveInfinity;
                deltaTile[r] = r < n ? delta[(bh * p.QueryLength) + tile + r] : 0f;
            }

            Group.Barrier();

            // Sᵀ = k·(scale·q) and dPᵀ = v·g of key rows (ty, ty + 16) × queries tx + 8c.
            float s00 = 0f, s01 = 0f, s02 = 0f, s03 = 0f, s10 = 0f, s11 = 0f, s12 = 0f, s13 = 0f;
            float g00 = 0f, g01 = 0f, g02 = 0f, g03 = 0f, g10 = 0f, g11 = 0f, g12 = 0f, g13 = 0f;
            long ek = ty;
            long eq = tx;
            for (int d = 0; d < dim; d++, ek += TileStride, eq += TileStride)
            {
                float ka = kT[ek];
                float kb = kT[ek + 16];
                float q0 = qT[eq];
                float q1 = qT[eq + 8];
                float q2 = qT[eq + 16];
                float q3 = qT[eq + 24];
                s00 += ka * q0;
                s01 += ka * q1;
                s02 += ka * q2;
                s03 += ka * q3;
                s10 += kb * q0;
                s11 += kb * q1;
                s12 += kb * q2;
                s13 += kb * q3;
                float va = vT[ek];
                float vb = vT[ek + 16];
                float o0 = gT[eq];
                float o1 = gT[eq + 8];
                float o2 = gT[eq + 16];
                float o3 = gT[eq + 24];
                g00 += va * o0;
                g01 += va * o1;
                g02 += va * o2;
                g03 += va * o3;
                g10 += vb * o0;
                g11 += vb * o1;
                g12 += vb * o2;
                g13 += vb * o3;
            }

            KeyGradients(s00, g00, active0, j0, tile, tx, 0, p, lseTile, deltaTile, pTile, dsTile, slot);
            KeyGradients(s01, g01, active0, j0, tile, tx, 1, p, lseTile, deltaTile, pTile, dsTile, slot);
            KeyGradients(s02, g02, active0, j0, tile, tx, 2, p, lseTile, deltaTile, pTile, dsTile, slot);
            KeyGradients(s03, g03, active0, j0, tile, tx, 3, p, lseTile, deltaTile, pTile, dsTile, slot);
            KeyGradients(s10, g10, active1, j1, tile, tx, 0, p, lseTile, deltaTile, pTile, dsTile, slot + Row16);
            KeyGradients(s11, g11, active1, j1, tile, tx, 1, p, lseTile, deltaTile, pTile, dsTile, slot + Row16);
            KeyGradients(s12, g12, active1, j1, tile, tx, 2, p, lseTile, deltaTile, pTile, dsTile, slot + Row16);
            KeyGradients(s13, g13, active1, j1, tile, tx, 3, p, lseTile, deltaTile, pTile, dsTile, slot + Row16);
            Group.Barrier();

            // dV += Pᵀ·g and dK += dSᵀ·(scale·q) for this thread's dims.
            for (int r = 0; r < n; r++)
            {
                long pr = row0 + r;
                float p0 = pTile[pr];
                float p1 = pTile[pr + Row16];
                float ds0 = dsTile[pr];
                float ds1 = dsTile[pr + Row16];
                long qr = txColumn + r;
                var g0 = Column(gT, qr);
                var q0 = Column(qT, qr);
                v00 = Fma(v00, p0, g0);
                v10 = Fma(v10, p1, g0);
                k00 = Fma(k00, ds0, q0);
                k10 = Fma(k10, ds1, q0);
                if (chunks > 1)
                {
                    var g1 = Column(gT, qr + Chunk);
                    var q1 = Column(qT, qr + Chunk);
                    v01 = Fma(v01, p0, g1);
                    v11 = Fma(v11, p1, g1);
                    k01 = Fma(k01, ds0, q1);
                    k11 = Fma(k11, ds1, q1);
                }
            }

            Group.Barrier();
        }

        Quad none = default;
        if (j0 < p.KeyLength)
        {
            int key = (b * p.KeyLength) + j0;
            StoreRow(dk, (key * p.DkStride) + p.DkColumn + (h * dim), tx, dim, chunks, 1f, k00, k01, none, none);
            StoreRow(dv, (key * p.DvStride) + p.DvColumn + (h * dim), tx, dim, chunks, 1f, v00, v01, none, none);
        }

        if (j1 < p.KeyLength)
        {
            int key = (b * p.KeyLength) + j1;
            StoreRow(dk, (key * p.DkStride) + p.DkColumn + (h * dim), tx, dim, chunks, 1f, k10, k11, none, none);
            StoreRow(dv, (key * p.DvStride) + p.DvColumn + (h * dim), tx, dim, chunks, 1f, v10, v11, none, none);
        }
    }

    // P = exp(s − L) and dS = P∘(dP − D)·share of key j and query tile + tx + 8c into [key row][query] tiles at
    // slot + 8c; 0 where j is masked, the query is beyond the tile, or (causal) j is ahead of the query.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void KeyGradients(
        float s, float dp, bool active, int j, int tile, int tx, int c, Layout p, ArrayView<float> lseTile, ArrayView<float> deltaTile, ArrayView<float> pTile, ArrayView<float> dsTile, long slot)
    {
        float pr = 0f;
        float ds = 0f;
        long r = (long)tx + (8 * c);
        if (active && (p.Causal == 0 || j <= tile + tx + (8 * c) + p.CausalOffset))
        {
            pr = XMath.Exp(s - lseTile[r]);
            ds = pr * (dp - deltaTile[r]) * ScoreShare(s, p);
        }

        pTile[slot + (8 * c)] = pr;
        dsTile[slot + (8 * c)] = ds;
    }

    #endregion

    #region Backward, wide heads

    // dQ, head dims 65 to 96: see BackwardQueryWide.
    internal static void BackwardQuery96Kernel(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dq,
        Layout p)
    {
        BackwardQueryWide(
            q, k, v, o, dO, lse, delta, mask, dq, p, 3, SharedMemory.Allocate<float>(WideTile96), SharedMemory.Allocate<float>(WideTile96),
            SharedMemory.Allocate<float>(WideTile96), SharedMemory.Allocate<float>(WideTile96), SharedMemory.Allocate<float>(WideScoreTile), SharedMemory.Allocate<int>(TileSize));
    }

    // dQ, head dims 97 to 128: see BackwardQueryWide.
    internal static void BackwardQuery128Kernel(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dq,
        Layout p)
    {
        BackwardQueryWide(
            q, k, v, o, dO, lse, delta, mask, dq, p, 4, SharedMemory.Allocate<float>(WideTile128), SharedMemory.Allocate<float>(WideTile128),
            SharedMemory.Allocate<float>(WideTile128), SharedMemory.Allocate<float>(WideTile128), SharedMemory.Allocate<float>(WideScoreTile), SharedMemory.Allocate<int>(TileSize));
    }

    // BackwardQueryTiled for head dims above 64, where four 32-row tiles would not fit 48 KB: blocks of 16 query rows
    // and tiles of 16 keys (pitch 17), one row per thread (ty) × keys tx, tx + 8, dQ dims tx + 8u in registers.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BackwardQueryWide(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dq,
        Layout p,
        int chunks,
        ArrayView<float> qT,
        ArrayView<float> gT,
        ArrayView<float> kT,
        ArrayView<float> vT,
        ArrayView<float> dsTile,
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
        int first = block * WideTileSize;
        int count = p.QueryLength - first < WideTileSize ? p.QueryLength - first : WideTileSize;
        int i = first + ty;

        // CP-LRP: dQ is 0 (the rule is the same for every thread, so no barrier is skipped).
        if (p.Rule == RuleConservative)
        {
            for (int e = Group.IdxX; e < count * dim; e += TileThreads)
            {
                int r = e / dim;
                int d = e - (r * dim);
                dq[(((b * p.QueryLength) + first + r) * p.DqStride) + p.DqColumn + (h * dim) + d] = 0f;
            }

            return;
        }

        int rows = (b * p.QueryLength) + first;
        StageTransposed(q, p.QStride, rows, p.QColumn + (h * dim), count, dim, padded, p.Scale, qT, WideTileSize, WideTileStride);
        StageSignal(dO, o, p, rows, count, h, padded, gT, WideTileSize, WideTileStride);
        float rowLse = i < p.QueryLength ? lse[(bh * p.QueryLength) + i] : float.PositiveInfinity;
        float rowDelta = i < p.QueryLength ? delta[(bh * p.QueryLength) + i] : 0f;
        int keyEnd = KeyEnd(p, first + count - 1);

        Quad a0 = default, a1 = default, a2 = default, a3 = default;
        long row = ty * WideTileStride;
        long slot = row + tx;
        long txColumn = tx * WideTileStride;
        for (int tile = 0; tile < keyEnd; tile += WideTileSize)
        {
            int n = keyEnd - tile < WideTileSize ? keyEnd - tile : WideTileSize;
            int keys = (b * p.KeyLength) + tile;
            StageTransposed(k, p.KStride, keys, p.KColumn + (h * dim), n, dim, padded, 1f, kT, WideTileSize, WideTileStride);
            StageTransposed(v, p.VStride, keys, p.VColumn + (h * dim), n, dim, padded, 1f, vT, WideTileSize, WideTileStride);
            StageVisible(mask, p, b, tile, n, visible);
            Group.Barrier();

            // Scores and dP of row ty × keys tx, tx + 8.
            float s0 = 0f, s1 = 0f, g0 = 0f, g1 = 0f;
            long eq = ty;
            long ek = tx;
            for (int d = 0; d < dim; d++, eq += WideTileStride, ek += WideTileStride)
            {
                float qd = qT[eq];
                float gd = gT[eq];
                s0 += qd * kT[ek];
                s1 += qd * kT[ek + 8];
                g0 += gd * vT[ek];
                g1 += gd * vT[ek + 8];
            }

            dsTile[slot] = ScoreGradient(s0, g0, rowLse, rowDelta, visible, p, tile, tx, 0, i);
            dsTile[slot + 8] = ScoreGradient(s1, g1, rowLse, rowDelta, visible, p, tile, tx, 1, i);
            Group.Barrier();

            // dQ += dS·K for this thread's dims.
            for (int j = 0; j < n; j++)
            {
                float ds = dsTile[row + j];
                long kj = txColumn + j;
                a0 = Fma(a0, ds, Column(kT, kj, WideTileStride));
                a1 = Fma(a1, ds, Column(kT, kj + WideChunk, WideTileStride));
                a2 = Fma(a2, ds, Column(kT, kj + (2 * WideChunk), WideTileStride));
                if (chunks > 3)
                {
                    a3 = Fma(a3, ds, Column(kT, kj + (3 * WideChunk), WideTileStride));
                }
            }

            Group.Barrier();
        }

        if (i < p.QueryLength)
        {
            StoreRow(dq, (((b * p.QueryLength) + i) * p.DqStride) + p.DqColumn + (h * dim), tx, dim, chunks, p.Scale, a0, a1, a2, a3);
        }
    }

    // dK and dV, head dims 65 to 96: see BackwardKeyValueWide.
    internal static void BackwardKeyValue96Kernel(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dk,
        ArrayView<float> dv,
        Layout p)
    {
        BackwardKeyValueWide(
            q, k, v, o, dO, lse, delta, mask, dk, dv, p, 3, SharedMemory.Allocate<float>(WideTile96), SharedMemory.Allocate<float>(WideTile96),
            SharedMemory.Allocate<float>(WideTile96), SharedMemory.Allocate<float>(WideTile96), SharedMemory.Allocate<float>(WideScoreTile),
            SharedMemory.Allocate<float>(WideScoreTile), SharedMemory.Allocate<float>(WideTileSize), SharedMemory.Allocate<float>(WideTileSize));
    }

    // dK and dV, head dims 97 to 128: see BackwardKeyValueWide.
    internal static void BackwardKeyValue128Kernel(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dk,
        ArrayView<float> dv,
        Layout p)
    {
        BackwardKeyValueWide(
            q, k, v, o, dO, lse, delta, mask, dk, dv, p, 4, SharedMemory.Allocate<float>(WideTile128), SharedMemory.Allocate<float>(WideTile128),
            SharedMemory.Allocate<float>(WideTile128), SharedMemory.Allocate<float>(WideTile128), SharedMemory.Allocate<float>(WideScoreTile),
            SharedMemory.Allocate<float>(WideScoreTile), SharedMemory.Allocate<float>(WideTileSize), SharedMemory.Allocate<float>(WideTileSize));
    }

    // BackwardKeyValueTiled for head dims above 64: blocks of 16 key rows, tiles of 16 queries (pitch 17), one key row
    // per thread (ty) × queries tx, tx + 8, dK and dV dims tx + 8u in registers.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BackwardKeyValueWide(
        ArrayView<float> q,
        ArrayView<float> k,
        ArrayView<float> v,
        ArrayView<float> o,
        ArrayView<float> dO,
        ArrayView<float> lse,
        ArrayView<float> delta,
        ArrayView<int> mask,
        ArrayView<float> dk,
        ArrayView<float> dv,
        Layout p,
        int chunks,
        ArrayView<float> kT,
        ArrayView<float> vT,
        ArrayView<float> qT,
        ArrayView<float> gT,
        ArrayView<float> pTile,
        ArrayView<float> dsTile,
        ArrayView<float> lseTile,
        ArrayView<float> deltaTile)
    {
        int padded = chunks * 32;
        int dim = p.HeadDim;
        int block = Grid.IdxX % p.Blocks;
        int bh = Grid.IdxX / p.Blocks;
        int h = bh % p.Heads;
        int b = bh / p.Heads;
        int tx = Group.IdxX % 8;
        int ty = Group.IdxX / 8;
        int first = block * WideTileSize;
        int count = p.KeyLength - first < WideTileSize ? p.KeyLength - first : WideTileSize;
        int j = first + ty;
        bool active = j < p.KeyLength && (p.HasMask == 0 || mask[(b * p.KeyLength) + j] != 0);
        int keys = (b * p.KeyLength) + first;
        StageTransposed(k, p.KStride, keys, p.KColumn + (h * dim), count, dim, padded, 1f, kT, WideTileSize, WideTileStride);
        StageTransposed(v, p.VStride, keys, p.VColumn + (h * dim), count, dim, padded, 1f, vT, WideTileSize, WideTileStride);

        // Causal: query i sees key j only when i ≥ j − offset, so earlier queries are skipped.
        int queryBegin = 0;
        if (p.Causal != 0)
        {
            int begin = first - p.CausalOffset;
            queryBegin = begin < 0 ? 0 : begin;
        }

        Quad v0 = default, v1 = default, v2 = default, v3 = default;
        Quad k0 = default, k1 = default, k2 = default, k3 = default;
        long row = ty * WideTileStride;
        long slot = row + tx;
        long txColumn = tx * WideTileStride;
        for (int tile = queryBegin; tile < p.QueryLength; tile += WideTileSize)
        {
            int n = p.QueryLength - tile < WideTileSize ? p.QueryLength - tile : WideTileSize;
            int rows = (b * p.QueryLength) + tile;
            StageTransposed(q, p.QStride, rows, p.QColumn + (h * dim), n, dim, padded, p.Scale, qT, WideTileSize, WideTileStride);
            StageSignal(dO, o, p, rows, n, h, padded, gT, WideTileSize, WideTileStride);
            if (Group.IdxX < WideTileSize)
            {
                int r = Group.IdxX;
                lseTile[r] = r < n ? lse[(bh * p.QueryLength) + tile + r] : float.PositiveInfinity;
                deltaTile[r] = r < n ? delta[(bh * p.QueryLength) + tile + r] : 0f;
            }

            Group.Barrier();

            // Sᵀ and dPᵀ of key row ty × queries tx, tx + 8.
            float s0 = 0f, s1 = 0f, g0 = 0f, g1 = 0f;
            long ek = ty;
            long eq = tx;
            for (int d = 0; d < dim; d++, ek += WideTileStride, eq += WideTileStride)
            {
                float kd = kT[ek];
                float vd = vT[ek];
                s0 += kd * qT[eq];
                s1 += kd * qT[eq + 8];
                g0 += vd * gT[eq];
                g1 += vd * gT[eq + 8];
            }

            KeyGradients(s0, g0, active, j, tile, tx, 0, p, lseTile, deltaTile, pTile, dsTile, slot);
            KeyGradients(s1, g1, active, j, tile, tx, 1, p, lseTile, deltaTile, pTile, dsTile, slot);
            Group.Barrier();

            // dV += Pᵀ·g and dK += dSᵀ·(scale·q) for this thread's dims.
            for (int r = 0; r < n; r++)
            {
                float pr = pTile[row + r];
                float ds = dsTile[row + r];
                long qr = txColumn + r;
                v0 = Fma(v0, pr, Column(gT, qr, WideTileStride));
                k0 = Fma(k0, ds, Column(qT, qr, WideTileStride));
                v1 = Fma(v1, pr, Column(gT, qr + WideChunk, WideTileStride));
                k1 = Fma(k1, ds, Column(qT, qr + WideChunk, WideTileStride));
                v2 = Fma(v2, pr, Column(gT, qr + (2 * WideChunk), WideTileStride));
                k2 = Fma(k2, ds, Column(qT, qr + (2 * WideChunk), WideTileStride));
                if (chunks > 3)
                {
                    v3 = Fma(v3, pr, Column(gT, qr + (3 * WideChunk), WideTileStride));
                    k3 = Fma(k3, ds, Column(qT, qr + (3 * WideChunk), WideTileStride));
                }
            }

            Group.Barrier();
        }

        if (j < p.KeyLength)
        {
            int key = (b * p.KeyLength) + j;
            StoreRow(dk, (key * p.DkStride) + p.DkColumn + (h * dim), tx, dim, chunks, 1f, k0, k1, k2, k3);
            StoreRow(dv, (key * p.DvStride) + p.DvColumn + (h * dim), tx, dim, chunks, 1f, v0, v1, v2, v3);
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
