using System.Runtime.CompilerServices;
using ILGPU;
using ILGPU.Algorithms;

namespace Headlight.Kernels;

/// <summary>The register-tiled attention backward for head dimensions 65–128, on 16-row blocks so four tiles fit 48 KB of shared memory.</summary>
public static partial class Attention
{
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
        int kvOffset = (h / p.Group) * dim; // head h reads key/value head h / group

        Quad a0 = default, a1 = default, a2 = default, a3 = default;
        long row = ty * WideTileStride;
        long slot = row + tx;
        long txColumn = tx * WideTileStride;
        for (int tile = 0; tile < keyEnd; tile += WideTileSize)
        {
            int n = keyEnd - tile < WideTileSize ? keyEnd - tile : WideTileSize;
            int keys = (b * p.KeyLength) + tile;
            StageTransposed(k, p.KStride, keys, p.KColumn + kvOffset, n, dim, padded, 1f, kT, WideTileSize, WideTileStride);
            StageTransposed(v, p.VStride, keys, p.VColumn + kvOffset, n, dim, padded, 1f, vT, WideTileSize, WideTileStride);
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

    // BackwardKeyValueTiled for head dims above 64: blocks of 16 key rows of key/value head g, tiles of 16 queries
    // (pitch 17) of each query head of its group, one key row per thread (ty) × queries tx, tx + 8, dK and dV dims
    // tx + 8u in registers (summed over the group).
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
        int bg = Grid.IdxX / p.Blocks;
        int g = bg % p.KvHeads;
        int b = bg / p.KvHeads;
        int tx = Group.IdxX % 8;
        int ty = Group.IdxX / 8;
        int first = block * WideTileSize;
        int count = p.KeyLength - first < WideTileSize ? p.KeyLength - first : WideTileSize;
        int j = first + ty;
        bool active = j < p.KeyLength && (p.HasMask == 0 || mask[(b * p.KeyLength) + j] != 0);
        int keys = (b * p.KeyLength) + first;
        StageTransposed(k, p.KStride, keys, p.KColumn + (g * dim), count, dim, padded, 1f, kT, WideTileSize, WideTileStride);
        StageTransposed(v, p.VStride, keys, p.VColumn + (g * dim), count, dim, padded, 1f, vT, WideTileSize, WideTileStride);

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

        // The group's query heads one after another, without atomics: dK and dV sum in a fixed order (deterministic).
        for (int member = 0; member < p.Group; member++)
        {
            int h = (g * p.Group) + member;
            int bh = (b * p.Heads) + h;
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
        }

        if (j < p.KeyLength)
        {
            int key = (b * p.KeyLength) + j;
            StoreRow(dk, (key * p.DkStride) + p.DkColumn + (g * dim), tx, dim, chunks, 1f, k0, k1, k2, k3);
            StoreRow(dv, (key * p.DvStride) + p.DvColumn + (g * dim), tx, dim, chunks, 1f, v0, v1, v2, v3);
        }
    }

    #endregion
}
