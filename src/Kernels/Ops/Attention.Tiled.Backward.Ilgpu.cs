using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;

namespace Headlight.Kernels;

/// <summary>The register-tiled attention backward for head dimensions up to 64: dQ, and dK with dV, one kernel per padded head dimension.</summary>
public static partial class Attention
{
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
        int kvOffset = (h / p.Group) * dim; // head h reads key/value head h / group

        Quad a00 = default, a01 = default, a10 = default, a11 = default;
        long row0 = ty * TileStride;
        long slot = row0 + tx;
        long txColumn = tx * TileStride;
        for (int tile = 0; tile < keyEnd; tile += TileSize)
        {
            int n = keyEnd - tile < TileSize ? keyEnd - tile : TileSize;
            int keys = (b * p.KeyLength) + tile;
            StageTransposed(k, p.KStride, keys, p.KColumn + kvOffset, n, dim, padded, 1f, kT, TileSize, TileStride);
            StageTransposed(v, p.VStride, keys, p.VColumn + kvOffset, n, dim, padded, 1f, vT, TileSize, TileStride);
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

    // dV = Σᵢ Pᵢⱼ·gᵢ and dK = Σᵢ dSᵢⱼ·(scale·qᵢ) for a block of 32 key rows of key/value head g, over tiles of 32 queries
    // of each query head of g's group: Sᵀ and dPᵀ as 2 × 4 register micro-tiles, P and dS through shared memory, dK and
    // dV in registers (summed over the group).
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
        int bg = Grid.IdxX / p.Blocks;
        int g = bg % p.KvHeads;
        int b = bg / p.KvHeads;
        int tx = Group.IdxX % 8;
        int ty = Group.IdxX / 8;
        int first = block * TileSize;
        int count = p.KeyLength - first < TileSize ? p.KeyLength - first : TileSize;
        int j0 = first + ty;
        int j1 = j0 + 16;
        bool active0 = j0 < p.KeyLength && (p.HasMask == 0 || mask[(b * p.KeyLength) + j0] != 0);
        bool active1 = j1 < p.KeyLength && (p.HasMask == 0 || mask[(b * p.KeyLength) + j1] != 0);
        int keys = (b * p.KeyLength) + first;
        StageTransposed(k, p.KStride, keys, p.KColumn + (g * dim), count, dim, padded, 1f, kT, TileSize, TileStride);
        StageTransposed(v, p.VStride, keys, p.VColumn + (g * dim), count, dim, padded, 1f, vT, TileSize, TileStride);

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

        // The group's query heads one after another, without atomics: dK and dV sum in a fixed order (deterministic).
        for (int member = 0; member < p.Group; member++)
        {
            int h = (g * p.Group) + member;
            int bh = (b * p.Heads) + h;
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
        }

        Quad none = default;
        if (j0 < p.KeyLength)
        {
            int key = (b * p.KeyLength) + j0;
            StoreRow(dk, (key * p.DkStride) + p.DkColumn + (g * dim), tx, dim, chunks, 1f, k00, k01, none, none);
            StoreRow(dv, (key * p.DvStride) + p.DvColumn + (g * dim), tx, dim, chunks, 1f, v00, v01, none, none);
        }

        if (j1 < p.KeyLength)
        {
            int key = (b * p.KeyLength) + j1;
            StoreRow(dk, (key * p.DkStride) + p.DkColumn + (g * dim), tx, dim, chunks, 1f, k10, k11, none, none);
            StoreRow(dv, (key * p.DvStride) + p.DvColumn + (g * dim), tx, dim, chunks, 1f, v10, v11, none, none);
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
}
