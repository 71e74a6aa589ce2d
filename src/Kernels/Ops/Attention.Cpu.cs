using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>Attention on the managed SIMD backend: (batch, head) pairs (and chunks of query rows) over the workers.</summary>
internal sealed partial class CpuBackend
{
    internal override void AttentionForward(
        Tensor<float> q, Tensor<float> k, Tensor<float> v, Tensor<float> o, Tensor<float> lse, Tensor<int>? mask, Tensor<float>? probabilities,
        Attention.Layout layout, bool? perThread)
        => Attention.ForwardManaged(Workers, q, k, v, o, lse, mask, probabilities, layout);

    internal override void AttentionBackward(
        Tensor<float> q, Tensor<float> k, Tensor<float> v, Tensor<float> o, Tensor<float> dO, Tensor<float> lse, Tensor<int>? mask,
        Tensor<float> dq, Tensor<float> dk, Tensor<float> dv, Tensor<float> delta, Attention.Layout layout)
        => Attention.BackwardManaged(Workers, q, k, v, o, dO, lse, mask, dq, dk, dv, delta, layout);

    internal override bool AttentionSharesMemory(Tensor<float> a, Tensor<float> b) => a.HostSpan.Overlaps(b.HostSpan);
}

/// <summary>
/// Attention's host SIMD code: keys and values of one (batch, head) staged once, then query blocks against key
/// blocks with <see cref="GemmCpu.SmallMultiplyAdd"/>, the online softmax row by row.
/// </summary>
public static partial class Attention
{
    // Managed path: query rows and keys per block; a key block is a multiple of the 16-float vector.
    private const int QueryBlock = 32;
    private const int KeyBlock = 128;
    private const int Lane = 16;

    internal static unsafe void ForwardManaged(CpuWorkers workers, Tensor<float> q, Tensor<float> k, Tensor<float> v, Tensor<float> o,
        Tensor<float> lse, Tensor<int>? mask, Tensor<float>? probabilities, Layout p)
    {
        int pairs = p.Batch * p.Heads;

        // Split queries into chunks only when (batch, head) pairs alone cannot keep the workers busy.
        int chunks = 1;
        if (pairs < 2 * workers.Threads)
        {
            chunks = Math.Clamp(DivUp(2 * workers.Threads, pairs), 1, DivUp(p.QueryLength, QueryBlock));
        }

        int chunkRows = DivUp(DivUp(p.QueryLength, chunks), QueryBlock) * QueryBlock;
        chunks = DivUp(p.QueryLength, chunkRows);
        int items = pairs * chunks;
        long work = (long)items * chunkRows * Math.Max(p.KeyLength, 1) * p.HeadDim;
        fixed (float* pq = q.HostSpan, pk = k.HostSpan, pv = v.HostSpan, po = o.HostSpan, plse = lse.HostSpan)
        fixed (float* probs = probabilities is null ? default : probabilities.HostSpan)
        fixed (int* pmask = mask is null ? default : mask.HostSpan)
        {
            var job = new ForwardJob
            {
                Q = pq, K = pk, V = pv, O = po, Lse = plse, Probabilities = probs, Mask = pmask,
                P = p, Chunks = chunks, ChunkRows = chunkRows,
            };
            if (items == 1 || work < (1 << 16))
            {
                for (int item = 0; item < items; item++)
                {
                    job.Execute(item);
                }
            }
            else
            {
                workers.Run(ref job, items);
            }
        }
    }

    /// <summary>The forward pass's operands as pinned pointers; item = (batch·heads + head)·chunks + chunk of query rows.</summary>
    private unsafe struct ForwardJob : ICpuJob
    {
        public float* Q;
        public float* K;
        public float* V;
        public float* O;
        public float* Lse;
        public float* Probabilities;
        public int* Mask;
        public Layout P;
        public int Chunks;
        public int ChunkRows;

        public readonly void Execute(int item) => ForwardItem(this, item / Chunks, (item % Chunks) * ChunkRows, ChunkRows);
    }

    // One (batch, head) pair, query rows [rowStart, rowStart + rowCount): online softmax over key blocks.
    [SkipLocalsInit]
    private static unsafe void ForwardItem(in ForwardJob t, int bh, int rowStart, int rowCount)
    {
        var p = t.P;
        int b = bh / p.Heads;
        int h = bh % p.Heads;
        int dim = p.HeadDim;
        int rowEnd = Math.Min(p.QueryLength, rowStart + rowCount);
        int keyEnd = KeyEnd(p, rowEnd - 1);
        int keyPad = RoundUp(keyEnd, Lane);
        int dimPad = RoundUp(dim, Lane);

        var scratch = Scratch.For(
            [dim * keyPad, keyPad * dimPad, keyPad, QueryBlock * dim, QueryBlock * KeyBlock, QueryBlock * dimPad, QueryBlock, QueryBlock]);
        float* kT = (float*)scratch[0];     // [dim, keyPad]: keys transposed, zero past keyEnd
        float* vPad = (float*)scratch[1];   // [keyPad, dimPad]: values, zero past dim
        float* bias = (float*)scratch[2];   // [keyPad]: 0 for a visible key, −∞ for a masked one
        float* qs = (float*)scratch[3];     // [QueryBlock, dim]: scale·q
        float* s = (float*)scratch[4];      // [QueryBlock, KeyBlock]: scores, then exp(score − m)
        float* acc = (float*)scratch[5];    // [QueryBlock, dimPad]: unnormalised output
        float* rowMax = (float*)scratch[6]; // [QueryBlock]: m
        float* rowSum = (float*)scratch[7]; // [QueryBlock]: ℓ

        float* q = t.Q, k = t.K, v = t.V, o = t.O, lse = t.Lse, probs = t.Probabilities;
        int* mask = t.Mask;
        {
            // Grouped-query: query head h reads key/value head h / group.
            int kvHead = h / p.Group;
            StageKeys(p, k + (b * p.KeyLength * p.KStride) + p.KColumn + (kvHead * dim), p.KStride, keyEnd, keyPad, kT);
            StageRows(v + (b * p.KeyLength * p.VStride) + p.VColumn + (kvHead * dim), p.VStride, keyEnd, dim, dimPad, vPad);
            StageBias(p, mask, b, keyEnd, keyPad, bias);

            for (int qb = rowStart; qb < rowEnd; qb += QueryBlock)
            {
                int rows = Math.Min(QueryBlock, rowEnd - qb);
                for (int r = 0; r < rows; r++)
                {
                    ScaleRow(q + (((b * p.QueryLength) + qb + r) * p.QStride) + p.QColumn + (h * dim), p.Scale, qs + (r * dim), dim);
                    rowMax[r] = float.NegativeInfinity;
                    rowSum[r] = 0f;
                }

                new Span<float>(acc, rows * dimPad).Clear();
                int blockKeyEnd = KeyEnd(p, qb + rows - 1);
                for (int kb = 0; kb < blockKeyEnd; kb += KeyBlock)
                {
                    int kn = Math.Min(KeyBlock, blockKeyEnd - kb);
                    int knPad = RoundUp(kn, Lane);

                    // s [rows, knPad] = qs [rows, dim] · kT[:, kb..]
                    GemmCpu.SmallMultiplyAdd(s, KeyBlock, qs, dim, 1, kT + kb, keyPad, rows, dim, knPad, accumulate: false);
                    for (int r = 0; r < rows; r++)
                    {
                        int i = qb + r;
                        float* row = s + (r * KeyBlock);
                        float blockMax = BiasMax(row, bias + kb, VisibleKeys(p, i, kb, kn), knPad);
                        if (probs != null)
                        {
                            new ReadOnlySpan<float>(row, kn).CopyTo(new Span<float>(probs + ((((bh * p.QueryLength) + i) * p.KeyLength) + kb), kn));
                        }

                        if (blockMax == float.NegativeInfinity)
                        {
                            new Span<float>(row, knPad).Clear();
                            continue;
                        }

                        float mOld = rowMax[r];
                        if (blockMax > mOld)
                        {
                            // The first visible block finds acc and ℓ still zero: nothing to rescale.
                            if (mOld != float.NegativeInfinity)
                            {
                                float alpha = MathF.Exp(mOld - blockMax);
                                rowSum[r] *= alpha;
                                ScaleRow(acc + (r * dimPad), alpha, acc + (r * dimPad), dimPad);
                            }

                            rowMax[r] = blockMax;
                        }

                        rowSum[r] += ExpSum(row, rowMax[r], knPad);
                    }

                    // acc [rows, dimPad] += s [rows, kn] · vPad[kb.., :]
                    GemmCpu.SmallMultiplyAdd(acc, dimPad, s, KeyBlock, 1, vPad + (kb * dimPad), dimPad, rows, kn, dimPad, accumulate: true);
                }

                for (int r = 0; r < rows; r++)
                {
                    int i = qb + r;
                    float* dst = o + (((b * p.QueryLength) + i) * p.OStride) + p.OColumn + (h * dim);
                    float l = rowSum[r];
                    float logSumExp = l > 0f ? rowMax[r] + MathF.Log(l) : float.PositiveInfinity;
                    ScaleRow(acc + (r * dimPad), l > 0f ? 1f / l : 0f, dst, dim);

                    lse[(bh * p.QueryLength) + i] = logSumExp;
                    if (probs != null)
                    {
                        // The stored scores become P = exp(S − L); masked scores are −∞ and give exactly 0.
                        var prow = new Span<float>(probs + (((bh * p.QueryLength) + i) * p.KeyLength), p.KeyLength);
                        int visible = l > 0f ? VisibleKeys(p, i, 0, p.KeyLength) : 0;
                        TensorPrimitives.Subtract(prow[..visible], logSumExp, prow[..visible]);
                        TensorPrimitives.Exp(prow[..visible], prow[..visible]);
                        prow[visible..].Clear();
                    }
                }
            }
        }
    }

    internal static unsafe void BackwardManaged(CpuWorkers workers, Tensor<float> tq, Tensor<float> tk, Tensor<float> tv, Tensor<float> to,
        Tensor<float> tdO, Tensor<float> tlse, Tensor<int>? tmask, Tensor<float> tdq, Tensor<float> tdk, Tensor<float> tdv, Tensor<float> tdelta, Layout p)
    {
        // One item per (batch, key/value head): dK and dV sum over the group's query heads in a fixed order.
        int pairs = p.Batch * p.KvHeads;
        long work = (long)p.Batch * p.Heads * Math.Max(p.QueryLength, 1) * Math.Max(p.KeyLength, 1) * p.HeadDim;
        fixed (float* q = tq.HostSpan, k = tk.HostSpan, v = tv.HostSpan, o = to.HostSpan, lse = tlse.HostSpan)
        fixed (float* dO = tdO.HostSpan, dq = tdq.HostSpan, dk = tdk.HostSpan, dv = tdv.HostSpan, delta = tdelta.HostSpan)
        fixed (int* mask = tmask is null ? default : tmask.HostSpan)
        {
            var job = new BackwardJob
            {
                Q = q, K = k, V = v, O = o, Lse = lse, Mask = mask, DOutput = dO, Dq = dq, Dk = dk, Dv = dv, Delta = delta, P = p,
            };
            if (pairs == 1 || work < (1 << 16))
            {
                for (int bh = 0; bh < pairs; bh++)
                {
                    job.Execute(bh);
                }
            }
            else
            {
                workers.Run(ref job, pairs);
            }
        }
    }

    /// <summary>The backward pass's operands as pinned pointers; item = batch·kvHeads + key/value head.</summary>
    private unsafe struct BackwardJob : ICpuJob
    {
        public float* Q;
        public float* K;
        public float* V;
        public float* O;
        public float* Lse;
        public int* Mask;
        public float* DOutput;
        public float* Dq;
        public float* Dk;
        public float* Dv;
        public float* Delta;
        public Layout P;

        public readonly void Execute(int item) => BackwardItem(this, item);
    }

    // One (batch, key/value head) pair: for each query head of its group, recompute P block by block; dK and dV
    // accumulate over the group's heads and all query blocks.
    [SkipLocalsInit]
    private static unsafe void BackwardItem(in BackwardJob t, int bg)
    {
        var p = t.P;
        int b = bg / p.KvHeads;
        int kvHead = bg % p.KvHeads;
        int dim = p.HeadDim;
        int keyEnd = p.QueryLength == 0 ? 0 : KeyEnd(p, p.QueryLength - 1);
        int keyPad = RoundUp(keyEnd, Lane);
        int dimPad = RoundUp(dim, Lane);

        var scratch = Scratch.For([
            dim * keyPad, dim * keyPad, keyPad * dimPad, keyPad, keyPad * dimPad, keyPad * dimPad,
            QueryBlock * dimPad, QueryBlock * dimPad, QueryBlock * KeyBlock, QueryBlock * KeyBlock, QueryBlock * dimPad, QueryBlock, QueryBlock,
            p.Rule == RuleUniform ? QueryBlock * KeyBlock : 0]);
        float* kT = (float*)scratch[0];       // [dim, keyPad]
        float* vT = (float*)scratch[1];       // [dim, keyPad]
        float* kPad = (float*)scratch[2];     // [keyPad, dimPad]
        float* bias = (float*)scratch[3];     // [keyPad]
        float* dkAcc = (float*)scratch[4];    // [keyPad, dimPad]: Σ dSᵀ·(scale·Q)
        float* dvAcc = (float*)scratch[5];    // [keyPad, dimPad]: Σ Pᵀ·dO
        float* qs = (float*)scratch[6];       // [QueryBlock, dimPad]: scale·q, zero past dim
        float* g = (float*)scratch[7];        // [QueryBlock, dimPad]: dO, zero past dim
        float* pb = (float*)scratch[8];       // [QueryBlock, KeyBlock]: P
        float* ds = (float*)scratch[9];       // [QueryBlock, KeyBlock]: dP, then dS
        float* dqAcc = (float*)scratch[10];   // [QueryBlock, dimPad]
        float* rowLse = (float*)scratch[11];  // [QueryBlock]
        float* rowDelta = (float*)scratch[12]; // [QueryBlock]
        float* scores = (float*)scratch[13];  // [QueryBlock, KeyBlock]: S, kept for the uniform rule's share
        bool throughScores = p.Rule != RuleConservative;

        float* q = t.Q, k = t.K, v = t.V, o = t.O, lse = t.Lse;
        float* dO = t.DOutput, dq = t.Dq, dk = t.Dk, dv = t.Dv, delta = t.Delta;
        int* mask = t.Mask;
        {
            float* kHead = k + (b * p.KeyLength * p.KStride) + p.KColumn + (kvHead * dim);
            StageKeys(p, kHead, p.KStride, keyEnd, keyPad, kT);
            StageKeys(p, v + (b * p.KeyLength * p.VStride) + p.VColumn + (kvHead * dim), p.VStride, keyEnd, keyPad, vT);
            StageRows(kHead, p.KStride, keyEnd, dim, dimPad, kPad);
            StageBias(p, mask, b, keyEnd, keyPad, bias);
            new Span<float>(dkAcc, keyPad * dimPad).Clear();
            new Span<float>(dvAcc, keyPad * dimPad).Clear();

            for (int step = 0, blocks = DivUp(p.QueryLength, QueryBlock); step < p.Group * blocks; step++)
            {
                int h = (kvHead * p.Group) + (step / blocks);
                int bh = (b * p.Heads) + h;
                int qb = (step % blocks) * QueryBlock;
                int rows = Math.Min(QueryBlock, p.QueryLength - qb);
                for (int r = 0; r < rows; r++)
                {
                    int token = (b * p.QueryLength) + qb + r;
                    var qRow = new ReadOnlySpan<float>(q + (token * p.QStride) + p.QColumn + (h * dim), dim);
                    var gRow = new ReadOnlySpan<float>(dO + (token * p.GStride) + p.GColumn + (h * dim), dim);
                    var oRow = new ReadOnlySpan<float>(o + (token * p.OStride) + p.OColumn + (h * dim), dim);
                    var qsRow = new Span<float>(qs + (r * dimPad), dimPad);
                    var gPadRow = new Span<float>(g + (r * dimPad), dimPad);
                    TensorPrimitives.Multiply(qRow, p.Scale, qsRow);
                    qsRow[dim..].Clear();
                    OutputSignalRow(gRow, oRow, gPadRow, p);
                    gPadRow[dim..].Clear();
                    float d = TensorPrimitives.Dot(gPadRow[..dim], oRow);
                    delta[(bh * p.QueryLength) + qb + r] = d;
                    rowDelta[r] = d;
                    rowLse[r] = lse[(bh * p.QueryLength) + qb + r];
                }

                new Span<float>(dqAcc, rows * dimPad).Clear();
                int blockKeyEnd = KeyEnd(p, qb + rows - 1);
                for (int kb = 0; kb < blockKeyEnd; kb += KeyBlock)
                {
                    int kn = Math.Min(KeyBlock, blockKeyEnd - kb);
                    int knPad = RoundUp(kn, Lane);

                    // P = exp(qs·kᵀ + bias − L), 0 where masked or (L = +∞) where the row sees no key.
                    GemmCpu.SmallMultiplyAdd(pb, KeyBlock, qs, dimPad, 1, kT + kb, keyPad, rows, dim, knPad, accumulate: false);
                    for (int r = 0; r < rows; r++)
                    {
                        float* row = pb + (r * KeyBlock);
                        BiasMax(row, bias + kb, VisibleKeys(p, qb + r, kb, kn), knPad);
                        if (p.Rule == RuleUniform)
                        {
                            new ReadOnlySpan<float>(row, knPad).CopyTo(new Span<float>(scores + (r * KeyBlock), knPad));
                        }

                        ExpSum(row, rowLse[r], knPad);
                    }

                    // dV[kb..] += Pᵀ·dO; CP-LRP stops here (nothing flows through the scores).
                    GemmCpu.SmallMultiplyAdd(dvAcc + (kb * dimPad), dimPad, pb, 1, KeyBlock, g, dimPad, kn, rows, dimPad, accumulate: true);
                    if (!throughScores)
                    {
                        continue;
                    }

                    // dP = dO·vᵀ, then dS = P∘(dP − D), times the uniform rule's share of S where it applies
                    GemmCpu.SmallMultiplyAdd(ds, KeyBlock, g, dimPad, 1, vT + kb, keyPad, rows, dim, knPad, accumulate: false);
                    for (int r = 0; r < rows; r++)
                    {
                        SoftmaxGradient(ds + (r * KeyBlock), pb + (r * KeyBlock), rowDelta[r], knPad);
                        if (p.Rule == RuleUniform)
                        {
                            ScoreShareRow(ds + (r * KeyBlock), scores + (r * KeyBlock), p.Epsilon, knPad);
                        }
                    }

                    // dK[kb..] += dSᵀ·qs, dQ += dS·K
                    GemmCpu.SmallMultiplyAdd(dkAcc + (kb * dimPad), dimPad, ds, 1, KeyBlock, qs, dimPad, kn, rows, dimPad, accumulate: true);
                    GemmCpu.SmallMultiplyAdd(dqAcc, dimPad, ds, KeyBlock, 1, kPad + (kb * dimPad), dimPad, rows, kn, dimPad, accumulate: true);
                }

                for (int r = 0; r < rows; r++)
                {
                    int token = (b * p.QueryLength) + qb + r;
                    TensorPrimitives.Multiply(
                        new ReadOnlySpan<float>(dqAcc + (r * dimPad), dim), p.Scale, new Span<float>(dq + (token * p.DqStride) + p.DqColumn + (h * dim), dim));
                }
            }

            for (int j = 0; j < p.KeyLength; j++)
            {
                int token = (b * p.KeyLength) + j;
                var dkRow = new Span<float>(dk + (token * p.DkStride) + p.DkColumn + (kvHead * dim), dim);
                var dvRow = new Span<float>(dv + (token * p.DvStride) + p.DvColumn + (kvHead * dim), dim);
                if (j < keyEnd)
                {
                    new ReadOnlySpan<float>(dkAcc + (j * dimPad), dim).CopyTo(dkRow);
                    new ReadOnlySpan<float>(dvAcc + (j * dimPad), dim).CopyTo(dvRow);
                }
                else
                {
                    dkRow.Clear();
                    dvRow.Clear();
                }
            }
        }
    }

    // How many of keys [kb, kb + kn) query i may see by causality (masking is applied through the bias).
    private static int VisibleKeys(Layout p, int i, int kb, int kn)
    {
        return p.Causal == 0 ? kn : Math.Clamp(i + p.CausalOffset + 1 - kb, 0, kn);
    }

    // rows [count, dim] at `stride` -> transposed [dim, pad] with zeros in columns [count, pad); 8×8 blocks
    // are transposed in registers, the edges one by one.
    private static unsafe void StageKeys(Layout p, float* source, int stride, int count, int pad, float* transposed)
    {
        int dim = p.HeadDim;
        for (int d = 0; d < dim; d++)
        {
            new Span<float>(transposed + (d * pad) + count, pad - count).Clear();
        }

        int j0 = 0;
        int d0 = dim & ~7;
        if (System.Runtime.Intrinsics.X86.Avx.IsSupported)
        {
            for (; j0 + 8 <= count; j0 += 8)
            {
                for (int d = 0; d < d0; d += 8)
                {
                    GemmCpu.Transpose8x8(source + (j0 * stride) + d, stride, transposed + (d * pad) + j0, pad);
                }
            }
        }

        for (int j = 0; j < count; j++)
        {
            float* row = source + (j * stride);
            for (int d = j < j0 ? d0 : 0; d < dim; d++)
            {
                transposed[(d * pad) + j] = row[d];
            }
        }
    }

    // dst [n] = scale · src [n]; dst may be src.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void ScaleRow(float* src, float scale, float* dst, int n)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var f = Vector512.Create(scale);
            for (; j + 16 <= n; j += 16)
            {
                (Vector512.Load(src + j) * f).Store(dst + j);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var f = Vector256.Create(scale);
            for (; j + 8 <= n; j += 8)
            {
                (Vector256.Load(src + j) * f).Store(dst + j);
            }
        }

        for (; j < n; j++)
        {
            dst[j] = scale * src[j];
        }
    }

    // rows [count, dim] at `stride` -> [count, dimPad] with zeros in columns [dim, dimPad)
    private static unsafe void StageRows(float* source, int stride, int count, int dim, int dimPad, float* destination)
    {
        for (int j = 0; j < count; j++)
        {
            var row = new Span<float>(destination + (j * dimPad), dimPad);
            new ReadOnlySpan<float>(source + (j * stride), dim).CopyTo(row);
            row[dim..].Clear();
        }
    }

    private static unsafe void StageBias(Layout p, int* mask, int b, int count, int pad, float* bias)
    {
        for (int j = 0; j < pad; j++)
        {
            bias[j] = j < count && (mask == null || mask[(b * p.KeyLength) + j] != 0) ? 0f : float.NegativeInfinity;
        }
    }

    /// <summary>
    /// Adds the key bias to the first <paramref name="visible"/> scores of a row, sets the rest of its
    /// <paramref name="n"/> (a multiple of 16) to −∞, and returns the row's maximum.
    /// </summary>
    private static unsafe float BiasMax(float* row, float* bias, int visible, int n)
    {
        float max = float.NegativeInfinity;
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var best = Vector512.Create(float.NegativeInfinity);
            var lane = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            var limit = Vector512.Create(visible);
            for (; j < n; j += 16)
            {
                var keep = Vector512.LessThan(lane + Vector512.Create(j), limit).AsSingle();
                var x = Vector512.ConditionalSelect(keep, Vector512.Load(row + j) + Vector512.Load(bias + j), Vector512.Create(float.NegativeInfinity));
                x.Store(row + j);
                best = Vector512.Max(best, x);
            }

            for (int e = 0; e < Vector512<float>.Count; e++)
            {
                max = MathF.Max(max, best[e]);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var best = Vector256.Create(float.NegativeInfinity);
            var lane = Vector256.Create(0, 1, 2, 3, 4, 5, 6, 7);
            var limit = Vector256.Create(visible);
            for (; j < n; j += 8)
            {
                var keep = Vector256.LessThan(lane + Vector256.Create(j), limit).AsSingle();
                var x = Vector256.ConditionalSelect(keep, Vector256.Load(row + j) + Vector256.Load(bias + j), Vector256.Create(float.NegativeInfinity));
                x.Store(row + j);
                best = Vector256.Max(best, x);
            }

            for (int e = 0; e < Vector256<float>.Count; e++)
            {
                max = MathF.Max(max, best[e]);
            }
        }

        for (; j < n; j++)
        {
            row[j] = j < visible ? row[j] + bias[j] : float.NegativeInfinity;
            max = MathF.Max(max, row[j]);
        }

        return max;
    }

    /// <summary><c>row = exp(row − shift)</c> over <paramref name="n"/> entries (−∞ gives 0); returns the sum.</summary>
    private static unsafe float ExpSum(float* row, float shift, int n)
    {
        float sum = 0f;
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var total = Vector512<float>.Zero;
            var m = Vector512.Create(shift);
            for (; j < n; j += 16)
            {
                var e = Softmax.Exp(Vector512.Load(row + j) - m);
                e.Store(row + j);
                total += e;
            }

            sum = Vector512.Sum(total);
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var total = Vector256<float>.Zero;
            var m = Vector256.Create(shift);
            for (; j < n; j += 8)
            {
                var e = Vector256.Exp(Vector256.Load(row + j) - m);
                e.Store(row + j);
                total += e;
            }

            sum = Vector256.Sum(total);
        }

        for (; j < n; j++)
        {
            row[j] = MathF.Exp(row[j] - shift);
            sum += row[j];
        }

        return sum;
    }

    /// <summary><c>dS = P∘(dP − D)</c> in place over <paramref name="n"/> entries of a row.</summary>
    private static unsafe void SoftmaxGradient(float* ds, float* probabilities, float delta, int n)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var d = Vector512.Create(delta);
            for (; j < n; j += 16)
            {
                ((Vector512.Load(ds + j) - d) * Vector512.Load(probabilities + j)).Store(ds + j);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var d = Vector256.Create(delta);
            for (; j < n; j += 8)
            {
                ((Vector256.Load(ds + j) - d) * Vector256.Load(probabilities + j)).Store(ds + j);
            }
        }

        for (; j < n; j++)
        {
            ds[j] = (ds[j] - delta) * probabilities[j];
        }
    }

    /// <summary>Per-thread pinned scratch, grown on demand and reused by every later call on that thread.</summary>
    private static unsafe class Scratch
    {
        [ThreadStatic]
        private static float[]? buffer;

        // Carves the thread's buffer into regions of the given lengths, each starting on a 64-byte boundary.
        public static Regions For(ReadOnlySpan<int> lengths)
        {
            long total = Lane;
            foreach (int length in lengths)
            {
                total += RoundUp(length, Lane);
            }

            if (buffer is null || buffer.Length < total)
            {
                buffer = GC.AllocateUninitializedArray<float>((int)Math.Max(total, 2L * (buffer?.Length ?? 0)), pinned: true);
            }

            float* start = (float*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(buffer));
            start += (Lane - ((nint)start / sizeof(float) % Lane)) % Lane;
            var regions = new Regions();
            for (int i = 0; i < lengths.Length; i++)
            {
                regions[i] = (nint)start;
                start += RoundUp(lengths[i], Lane);
            }

            return regions;
        }
    }

    /// <summary>Up to 16 scratch region addresses.</summary>
    [InlineArray(16)]
    private struct Regions
    {
        private nint element;
    }
}
