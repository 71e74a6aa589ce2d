using System.Globalization;
using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="Attention"/>: forward (output, logsumexp, captured probabilities) and
/// backward (dQ, dK, dV, D) against an explicit float64 attention written here — scores, masked softmax,
/// weighted sum, and the chain rule through them — over head dimensions, lengths, masks, causal
/// offsets and the packed-QKV layout.
/// </summary>
public sealed class AttentionCases : IOpCaseSource
{
    /// <summary>How keys are masked.</summary>
    public enum MaskKind
    {
        /// <summary>No key mask.</summary>
        None,

        /// <summary>Batch b keeps its first <c>key − b·key/batch</c> keys (batch 0 keeps all).</summary>
        Padding,

        /// <summary>Random holes (about 30% masked), and batch 1 masks every key.</summary>
        Holes,
    }

    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        var setups = new List<Setup>();

        // Every query length against every key length.
        foreach (int tq in TestData.Sizes)
        {
            foreach (int tk in TestData.Sizes)
            {
                setups.Add(new Setup(1, 2, tq, tk, 17));
            }
        }

        // Head dimensions, odd ones included, up to the kernels' maximum.
        foreach (int dim in new[] { 1, 3, 17, 32, 64, 65, 128 })
        {
            setups.Add(new Setup(2, 3, 17, 17, dim));
        }

        foreach (int dim in new[] { 32, 64, 128 })
        {
            setups.Add(new Setup(2, 2, 65, 65, dim, Probabilities: true));
        }

        // Key masks, alone and with causality.
        foreach (var mask in new[] { MaskKind.Padding, MaskKind.Holes })
        {
            foreach (bool causal in new[] { false, true })
            {
                setups.Add(new Setup(3, 2, 17, 17, 8, causal, mask, Probabilities: true));
                setups.Add(new Setup(3, 2, 65, 65, 32, causal, mask, Probabilities: true));
            }
        }

        // Causal with Q = K, Q < K (a decoder with a cache) and Q > K (early rows see no key).
        foreach (var (tq, tk) in new[] { (1, 1), (17, 17), (130, 130), (3, 17), (1, 67), (33, 130), (17, 3), (67, 33) })
        {
            int dim = tq <= 17 && tk <= 17 ? 16 : 32;
            setups.Add(new Setup(2, 2, tq, tk, dim, Causal: true, Probabilities: true));
        }

        // Packed QKV buffers with first-column offsets.
        foreach (bool causal in new[] { false, true })
        {
            setups.Add(new Setup(2, 2, 17, 17, 8, causal, MaskKind.Padding, Packed: true, Probabilities: true));
            setups.Add(new Setup(2, 3, 67, 67, 32, causal, MaskKind.Holes, Packed: true, Probabilities: true));
        }

        // Empty: no queries (dK and dV are zero), no keys (output 0, L = +∞), no batch.
        setups.Add(new Setup(2, 2, 0, 5, 4));
        setups.Add(new Setup(2, 2, 3, 0, 4, Probabilities: true));
        setups.Add(new Setup(0, 2, 3, 3, 4, Causal: true));

        // Model-sized: MiniLM (12 × 32, T = 128, padded batch) and GPT-2 (12 × 64, causal).
        setups.Add(new Setup(2, 12, 128, 128, 32, false, MaskKind.Padding, Probabilities: true));
        setups.Add(new Setup(1, 12, 130, 130, 64, Causal: true, Probabilities: true));

        foreach (var setup in setups)
        {
            yield return new OpCase("Attention.Forward", setup.Name, setup.Tiny, d => Forward(d, setup));
            yield return new OpCase("Attention.Backward", setup.Name, setup.Tiny, d => Backward(d, setup));
        }

        // Long but thin: more keys than one shared-memory tile and more queries than one group, so the
        // simulator also runs the kernels' tile loops and block indexing (one head, dims 2-3).
        var crossing = new[]
        {
            new Setup(2, 1, 3, 67, 3, Mask: MaskKind.Holes, Probabilities: true),
            new Setup(1, 1, 67, 67, 2, Causal: true, Probabilities: true),
            new Setup(1, 2, 67, 5, 3, Causal: true),
            new Setup(1, 1, 33, 130, 2, Causal: true, Mask: MaskKind.Padding),
        };
        foreach (var setup in crossing)
        {
            yield return new OpCase("Attention.Forward", setup.Name + " tiles", true, d => Forward(d, setup));
            yield return new OpCase("Attention.Backward", setup.Name + " tiles", true, d => Backward(d, setup));
        }

        // Each ILGPU forward kernel forced, at tiny shapes the simulator runs (the CPU backend ignores the choice):
        // masks, causality with every offset sign, packed buffers, edge lengths and more keys than one tile.
        var forced = new[]
        {
            new Setup(2, 3, 17, 17, 17, Mask: MaskKind.Holes, Probabilities: true),
            new Setup(3, 2, 17, 3, 8, Causal: true, Mask: MaskKind.Padding, Probabilities: true),
            new Setup(2, 2, 17, 17, 5, Causal: true, Packed: true, Probabilities: true),
            new Setup(1, 1, 33, 67, 3, Causal: true, Mask: MaskKind.Padding),
            new Setup(2, 2, 3, 0, 4),
        };
        foreach (var setup in forced)
        {
            foreach (bool perThread in new[] { false, true })
            {
                var s = setup with { PerThread = perThread };
                yield return new OpCase("Attention.Forward", s.Name, true, d => Forward(d, s));
            }
        }

        // Every register-tiled kernel (head dims padded to 32, 64, 96, 128) at shapes the simulator runs: bucket
        // edges, masks, causality with both offset signs, packed buffers, and more than one block and key tile.
        var registerTiles = new List<Setup>();
        foreach (int dim in new[] { 31, 32, 33, 64, 65, 96, 97, 128 })
        {
            registerTiles.Add(new Setup(2, 2, 5, 7, dim, Mask: MaskKind.Holes, Probabilities: true));
            registerTiles.Add(new Setup(1, 2, 7, 4, dim, Causal: true, Mask: MaskKind.Padding));
        }

        registerTiles.Add(new Setup(1, 1, 33, 35, 40, Causal: true, Mask: MaskKind.Padding, Probabilities: true));
        registerTiles.Add(new Setup(1, 1, 34, 34, 24, Causal: true, Packed: true));
        registerTiles.Add(new Setup(2, 1, 3, 65, 64, Mask: MaskKind.Holes));
        registerTiles.Add(new Setup(1, 1, 65, 3, 72, Causal: true, Probabilities: true));

        // Wide heads: the backward's 16-row blocks and tiles, crossed.
        registerTiles.Add(new Setup(1, 1, 17, 18, 100, Causal: true, Mask: MaskKind.Padding));
        registerTiles.Add(new Setup(2, 1, 18, 17, 72, Mask: MaskKind.Holes));
        foreach (var setup in registerTiles)
        {
            yield return new OpCase("Attention.Forward", setup.Name + " register tiles", true, d => Forward(d, setup));
            yield return new OpCase("Attention.Backward", setup.Name + " register tiles", true, d => Backward(d, setup));
        }

        foreach (var setup in GroupedSetups())
        {
            bool tiny = setup.Tiny || (setup.Tq <= 7 && setup.Tk <= 7) || (setup.Dim <= 3 && setup.Heads <= 4);
            yield return new OpCase("Attention.Forward", setup.Name + " grouped", tiny, d => Forward(d, setup));
            yield return new OpCase("Attention.Backward", setup.Name + " grouped", tiny, d => Backward(d, setup));
        }

        // Both ILGPU forward kernels with grouped heads.
        foreach (bool perThread in new[] { false, true })
        {
            var s = new Setup(2, 4, 17, 17, 8, Causal: true, Mask: MaskKind.Holes, Packed: true, Probabilities: true) { KvHeads = 2, PerThread = perThread };
            yield return new OpCase("Attention.Forward", s.Name + " grouped", true, d => Forward(d, s));
            var m = new Setup(1, 3, 5, 17, 16, Causal: true, Mask: MaskKind.Padding, Probabilities: true) { KvHeads = 1, PerThread = perThread };
            yield return new OpCase("Attention.Forward", m.Name + " grouped", true, d => Forward(d, m));
        }

        yield return new OpCase("Attention.Backward", "grouped dK, dV bitwise the same run to run", true, RepeatsBitwise);
        yield return new OpCase("Attention.Forward", "batch row alone = the same row padded in a batch", true, RowAloneEqualsPadded);
        yield return new OpCase("Attention.Backward", "finite differences of the float64 forward", true, d => FiniteDifferences(d, new Setup(2, 2, 3, 5, 4, Causal: true, Mask: MaskKind.Holes)));
        yield return new OpCase(
            "Attention.Backward", "finite differences of the float64 forward, H6 KV2", true, d => FiniteDifferences(d, new Setup(2, 6, 3, 5, 4, Causal: true, Mask: MaskKind.Padding) { KvHeads = 2 }));
    }

    /// <summary>
    /// Grouped- and multi-query shapes (also used by the LRP cases): 6 query heads over 3, 2 and 1 key/value heads and 4
    /// over 2, so that h / group and h % kvHeads differ; odd lengths, a decoder's cache (causal, fewer queries than keys),
    /// key masks, batch 2, packed buffers, and head dims for each register-tiled kernel (16, 20, 32, 64, 72, 100, 128).
    /// </summary>
    public static IEnumerable<Setup> GroupedSetups()
    {
        foreach (int kv in new[] { 3, 2, 1 })
        {
            yield return new Setup(2, 6, 17, 17, 16, Mask: MaskKind.Holes, Probabilities: true) { KvHeads = kv };
            yield return new Setup(2, 6, 5, 17, 16, Causal: true, Mask: MaskKind.Padding, Probabilities: true) { KvHeads = kv };
            yield return new Setup(2, 6, 17, 17, 8, Causal: true, Packed: true, Probabilities: true) { KvHeads = kv };
        }

        // Each register-tiled kernel at simulator sizes: 32-row blocks up to 64 dims, 16-row ones beyond.
        foreach (int dim in new[] { 16, 20, 32, 64, 72, 100, 128 })
        {
            yield return new Setup(2, 4, 5, 7, dim, Mask: MaskKind.Holes, Probabilities: true) { KvHeads = 2 };
            yield return new Setup(1, 6, 3, 7, dim, Causal: true, Mask: MaskKind.Padding) { KvHeads = 3 };
        }

        // More than one block and tile, so the key kernels' loop over a group's heads meets their tile loops.
        yield return new Setup(1, 4, 67, 67, 2, Causal: true, Probabilities: true) { KvHeads = 2 };
        yield return new Setup(2, 4, 3, 67, 3, Mask: MaskKind.Holes) { KvHeads = 1 };

        // Larger (the compiled backends): packed, causal with a cache, wide heads, and a Qwen2-like grouping.
        yield return new Setup(2, 6, 67, 67, 32, Causal: true, Mask: MaskKind.Holes, Packed: true, Probabilities: true) { KvHeads = 2 };
        yield return new Setup(2, 6, 33, 130, 64, Causal: true, Mask: MaskKind.Padding, Probabilities: true) { KvHeads = 3 };
        yield return new Setup(2, 4, 40, 40, 20, Causal: true, Mask: MaskKind.Padding, Packed: true) { KvHeads = 1 };
        yield return new Setup(1, 4, 65, 65, 128, Probabilities: true) { KvHeads = 2 };
        yield return new Setup(1, 4, 33, 35, 100, Causal: true, Mask: MaskKind.Holes) { KvHeads = 2 };
        yield return new Setup(1, 14, 130, 130, 64, Causal: true) { KvHeads = 2 };

        // KvHeads = Heads spelled out is multi-head attention.
        yield return new Setup(2, 3, 17, 17, 8, Causal: true, Mask: MaskKind.Holes, Probabilities: true) { KvHeads = 3 };
    }

    /// <summary>One attention problem: sizes, options and the buffer layout.</summary>
    /// <param name="Batch">Batch size.</param>
    /// <param name="Heads">Heads.</param>
    /// <param name="Tq">Query length.</param>
    /// <param name="Tk">Key length.</param>
    /// <param name="Dim">Head dimension.</param>
    /// <param name="Causal">Causal masking.</param>
    /// <param name="Mask">Key mask kind.</param>
    /// <param name="Packed">Q, K, V in one <c>[batch, seq, 3·heads·dim]</c> buffer; outputs at column offsets inside wider buffers.</param>
    /// <param name="Probabilities">Capture probabilities.</param>
    public sealed record Setup(int Batch, int Heads, int Tq, int Tk, int Dim, bool Causal = false, MaskKind Mask = MaskKind.None, bool Packed = false, bool Probabilities = false)
    {
        /// <summary>The ILGPU forward kernel to force: true the barrier-free thread per query row, false the tiled one, null the device's choice.</summary>
        public bool? PerThread { get; init; }

        /// <summary>Key/value heads as <see cref="AttentionShape.KvHeads"/> takes them (0 = <see cref="Heads"/>).</summary>
        public int KvHeads { get; init; }

        /// <summary>Key/value heads in the buffers.</summary>
        public int Kv => KvHeads == 0 ? Heads : KvHeads;

        /// <summary>Query heads per key/value head.</summary>
        public int Group => Heads / Kv;

        /// <summary>kvHeads · dim: the columns of K, V, dK and dV.</summary>
        public int KvHd => Kv * Dim;

        /// <summary>The operands' shape.</summary>
        public AttentionShape Shape => new(Batch, Heads, Tq, Tk, Dim, KvHeads);

        /// <summary>The case name.</summary>
        public string Name => string.Create(
            CultureInfo.InvariantCulture,
            $"B{Batch} H{Heads}{(KvHeads == 0 ? "" : " KV" + KvHeads.ToString(CultureInfo.InvariantCulture))} Tq{Tq} Tk{Tk} D{Dim}{(Causal ? " causal" : "")}{(Mask == MaskKind.None ? "" : " mask=" + Mask.ToString().ToLowerInvariant())}{(Packed ? " packed" : "")}{(Probabilities ? " probs" : "")}{(PerThread is { } p ? (p ? " kernel=per-thread" : " kernel=tiled") : "")}");

        /// <summary>Small enough for ILGPU's CPU simulator.</summary>
        public bool Tiny => Tq <= 17 && Tk <= 17 && Dim <= 17;

        /// <summary>heads · dim.</summary>
        public int Hd => Heads * Dim;

        /// <summary>The usual score scale.</summary>
        public float Scale => 1f / MathF.Sqrt(Dim);
    }

    /// <summary>Inputs of one problem in float64, natural layouts: q [B, Tq, H, D], k and v [B, Tk, KV, D], mask [B, Tk].</summary>
    public sealed record Problem(Setup S, double[] Q, double[] K, double[] V, int[]? Mask);

    /// <summary>The float64 forward: output [B, Tq, H, D], logsumexp [B, H, Tq], probabilities [B, H, Tq, Tk].</summary>
    public static (double[] O, double[] Lse, double[] P) ReferenceForward(Problem problem)
    {
        var s = problem.S;
        var o = new double[s.Batch * s.Tq * s.Hd];
        var lse = new double[s.Batch * s.Heads * s.Tq];
        var probs = new double[s.Batch * s.Heads * s.Tq * s.Tk];
        var scores = new double[s.Tk];
        double scale = s.Scale;
        for (int b = 0; b < s.Batch; b++)
        {
            for (int h = 0; h < s.Heads; h++)
            {
                for (int i = 0; i < s.Tq; i++)
                {
                    int row = (((b * s.Heads) + h) * s.Tq) + i;
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < s.Tk; j++)
                    {
                        scores[j] = double.NegativeInfinity;
                        if (Visible(problem, b, i, j))
                        {
                            double dot = 0;
                            for (int d = 0; d < s.Dim; d++)
                            {
                                dot += problem.Q[At(s, b, s.Tq, i, h, d)] * problem.K[AtKv(s, b, s.Tk, j, h, d)];
                            }

                            scores[j] = scale * dot;
                            max = Math.Max(max, scores[j]);
                        }
                    }

                    if (double.IsNegativeInfinity(max))
                    {
                        lse[row] = double.PositiveInfinity;
                        continue;
                    }

                    double sum = 0;
                    for (int j = 0; j < s.Tk; j++)
                    {
                        sum += double.IsNegativeInfinity(scores[j]) ? 0 : Math.Exp(scores[j] - max);
                    }

                    lse[row] = max + Math.Log(sum);
                    for (int j = 0; j < s.Tk; j++)
                    {
                        double p = double.IsNegativeInfinity(scores[j]) ? 0 : Math.Exp(scores[j] - max) / sum;
                        probs[(row * s.Tk) + j] = p;
                        for (int d = 0; d < s.Dim; d++)
                        {
                            o[At(s, b, s.Tq, i, h, d)] += p * problem.V[AtKv(s, b, s.Tk, j, h, d)];
                        }
                    }
                }
            }
        }

        return (o, lse, probs);
    }

    /// <summary>
    /// The float64 backward by the chain rule through O = P·V and the row softmax:
    /// dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P∘(dP − Σⱼ P dP), dQ = scale·dS·K, dK = scale·dSᵀ·Q. Also returns D = Σⱼ P dP [B, H, Tq].
    /// </summary>
    public static (double[] Dq, double[] Dk, double[] Dv, double[] D) ReferenceBackward(Problem problem, double[] dO)
    {
        var s = problem.S;
        var (_, _, probs) = ReferenceForward(problem);
        var dq = new double[problem.Q.Length];
        var dk = new double[problem.K.Length];
        var dv = new double[problem.V.Length];
        var delta = new double[s.Batch * s.Heads * s.Tq];
        var dp = new double[s.Tk];
        double scale = s.Scale;
        for (int b = 0; b < s.Batch; b++)
        {
            for (int h = 0; h < s.Heads; h++)
            {
                for (int i = 0; i < s.Tq; i++)
                {
                    int row = (((b * s.Heads) + h) * s.Tq) + i;
                    double rowSum = 0;
                    for (int j = 0; j < s.Tk; j++)
                    {
                        dp[j] = 0;
                        for (int d = 0; d < s.Dim; d++)
                        {
                            dp[j] += dO[At(s, b, s.Tq, i, h, d)] * problem.V[AtKv(s, b, s.Tk, j, h, d)];
                        }

                        rowSum += probs[(row * s.Tk) + j] * dp[j];
                    }

                    delta[row] = rowSum;
                    for (int j = 0; j < s.Tk; j++)
                    {
                        double p = probs[(row * s.Tk) + j];
                        double ds = p * (dp[j] - rowSum);
                        for (int d = 0; d < s.Dim; d++)
                        {
                            dq[At(s, b, s.Tq, i, h, d)] += scale * ds * problem.K[AtKv(s, b, s.Tk, j, h, d)];
                            dk[AtKv(s, b, s.Tk, j, h, d)] += scale * ds * problem.Q[At(s, b, s.Tq, i, h, d)];
                            dv[AtKv(s, b, s.Tk, j, h, d)] += p * dO[At(s, b, s.Tq, i, h, d)];
                        }
                    }
                }
            }
        }

        return (dq, dk, dv, delta);
    }

    /// <summary>Index of (b, t, h, d) in a natural [B, seq, H, D] array.</summary>
    public static int At(Setup s, int b, int seq, int t, int h, int d) => (((((b * seq) + t) * s.Heads) + h) * s.Dim) + d;

    /// <summary>
    /// Index of (b, t, d) of query head h's key/value head in a natural [B, seq, KV, D] array: head h / group, as Hugging
    /// Face's repeat_kv (repeat_interleave) pairs them; h % kvHeads would pair others whenever kvHeads and group are both ≥ 2.
    /// </summary>
    public static int AtKv(Setup s, int b, int seq, int t, int h, int d) => (((((b * seq) + t) * s.Kv) + (h / s.Group)) * s.Dim) + d;

    /// <summary>Whether query i of batch b sees key j.</summary>
    public static bool Visible(Problem problem, int b, int i, int j)
    {
        var s = problem.S;
        bool unmasked = problem.Mask is null || problem.Mask[(b * s.Tk) + j] != 0;
        return unmasked && (!s.Causal || j <= i + (s.Tk - s.Tq));
    }

    /// <summary>The key mask of a setup, or null.</summary>
    public static int[]? MakeMask(Setup s)
    {
        if (s.Mask == MaskKind.None)
        {
            return null;
        }

        var mask = new int[s.Batch * s.Tk];
        var random = new Random(77);
        for (int b = 0; b < s.Batch; b++)
        {
            int keep = s.Tk - (b * s.Tk / s.Batch);
            for (int j = 0; j < s.Tk; j++)
            {
                mask[(b * s.Tk) + j] = s.Mask == MaskKind.Padding
                    ? (j < keep ? 1 : 0)
                    : (b == 1 ? 0 : random.NextDouble() < 0.3 ? 0 : 1);
            }
        }

        return mask;
    }

    /// <summary>Host buffers and device operands of one problem.</summary>
    private sealed class Buffers : IDisposable
    {
        private readonly List<IDisposable> owned = [];

        public Buffers(Device device, Setup s)
        {
            S = s;
            int hd = s.Hd;
            int kvd = s.KvHd;
            if (s.Packed)
            {
                // [batch, seq, (heads + 2·kvHeads)·dim]: Q, then K and V at first columns hd and hd + kvd.
                int width = hd + (2 * kvd);
                QkvHost = TestData.Normal(31, (long)s.Batch * s.Tq * width);
                var qkv = Own(Upload<float>(device, QkvHost, s.Batch, s.Tq, width));
                QOp = new AttentionOperand(qkv, 0);
                KOp = new AttentionOperand(qkv, hd);
                VOp = new AttentionOperand(qkv, hd + kvd);
                (QHost, QWidth, KHost, KWidth, VHost, VWidth) = (QkvHost, width, QkvHost, width, QkvHost, width);
                OutWidth = hd + 5;
                OutOp = new AttentionOperand(Own(Poison(device, s.Batch, s.Tq, OutWidth)), 3);
            }
            else
            {
                QHost = TestData.Normal(32, (long)s.Batch * s.Tq * hd);
                KHost = TestData.Normal(33, (long)s.Batch * s.Tk * kvd);
                VHost = TestData.Normal(34, (long)s.Batch * s.Tk * kvd);
                (QWidth, KWidth, VWidth) = (hd, kvd, kvd);
                QOp = new AttentionOperand(Own(Upload<float>(device, QHost, s.Batch, s.Tq, hd)));
                KOp = new AttentionOperand(Own(Upload<float>(device, KHost, s.Batch, s.Tk, kvd)));
                VOp = new AttentionOperand(Own(Upload<float>(device, VHost, s.Batch, s.Tk, kvd)));
                OutWidth = hd;
                OutOp = new AttentionOperand(Own(Poison(device, s.Batch, s.Tq, hd)));
            }

            Lse = Own(Poison(device, s.Batch, s.Heads, s.Tq));
            MaskHost = MakeMask(s);
            Mask = MaskHost is null ? null : Own(Upload<int>(device, MaskHost, s.Batch, s.Tk));
            Probabilities = s.Probabilities ? Own(Poison(device, s.Batch, s.Heads, s.Tq, s.Tk)) : null;
            Problem = new Problem(
                s,
                Natural(QHost, s.Batch, s.Tq, QWidth, QOp.FirstColumn, s),
                Natural(KHost, s.Batch, s.Tk, KWidth, KOp.FirstColumn, s.KvHd),
                Natural(VHost, s.Batch, s.Tk, VWidth, VOp.FirstColumn, s.KvHd),
                MaskHost);
        }

        public Setup S { get; }

        public float[]? QkvHost { get; }

        public float[] QHost { get; }

        public float[] KHost { get; }

        public float[] VHost { get; }

        public int QWidth { get; }

        public int KWidth { get; }

        public int VWidth { get; }

        public int OutWidth { get; }

        public AttentionOperand QOp { get; }

        public AttentionOperand KOp { get; }

        public AttentionOperand VOp { get; }

        public AttentionOperand OutOp { get; }

        public Tensor<float> Lse { get; }

        public int[]? MaskHost { get; }

        public Tensor<int>? Mask { get; }

        public Tensor<float>? Probabilities { get; }

        public Problem Problem { get; }

        public AttentionShape Shape => S.Shape;

        public Tensor<T> Own<T>(Tensor<T> tensor)
            where T : unmanaged
        {
            owned.Add(tensor);
            return tensor;
        }

        public void RunForward() => Attention.ForwardWith(QOp, KOp, VOp, OutOp, Lse, Shape, S.Scale, Mask, S.Causal, Probabilities, S.PerThread);

        public void Dispose()
        {
            foreach (var tensor in owned)
            {
                tensor.Dispose();
            }
        }
    }

    private static void Forward(Device device, Setup s)
    {
        using var buffers = new Buffers(device, s);
        buffers.RunForward();
        var (o, lse, probs) = ReferenceForward(buffers.Problem);
        var outHost = Download(buffers.OutOp.Tensor);
        Compare.Close(NaturalFloat(outHost, s.Batch, s.Tq, buffers.OutWidth, buffers.OutOp.FirstColumn, s.Hd), o, Tolerances.Attention, "output");
        Compare.Close(Download(buffers.Lse), lse, Tolerances.Attention, "logSumExp");
        if (s.Packed)
        {
            RequireUntouched(outHost, buffers.OutWidth, buffers.OutOp.FirstColumn, s.Hd, "output");
        }

        if (buffers.Probabilities is not null)
        {
            CheckProbabilities(Download(buffers.Probabilities), probs, buffers.Problem);
        }
    }

    private static void Backward(Device device, Setup s)
    {
        using var buffers = new Buffers(device, s);
        buffers.RunForward();
        int hd = s.Hd;
        int kvd = s.KvHd;

        // dO sits at column 1 of a wider buffer when packed; dQ, dK, dV are slices of one dQKV buffer then.
        int gWidth = s.Packed ? hd + 2 : hd;
        int gColumn = s.Packed ? 1 : 0;
        float[] gHost = TestData.Normal(35, (long)s.Batch * s.Tq * gWidth);
        var g = buffers.Own(Upload<float>(device, gHost, s.Batch, s.Tq, gWidth));
        var delta = buffers.Own(Poison(device, s.Batch, s.Heads, s.Tq));
        AttentionOperand dq, dk, dv;
        int gradWidth = hd + (2 * kvd) + 2;
        if (s.Packed)
        {
            var dqkv = buffers.Own(Poison(device, s.Batch, s.Tq, gradWidth));
            (dq, dk, dv) = (new AttentionOperand(dqkv, 1), new AttentionOperand(dqkv, 1 + hd), new AttentionOperand(dqkv, 1 + hd + kvd));
        }
        else
        {
            dq = new AttentionOperand(buffers.Own(Poison(device, s.Batch, s.Tq, hd)));
            dk = new AttentionOperand(buffers.Own(Poison(device, s.Batch, s.Tk, kvd)));
            dv = new AttentionOperand(buffers.Own(Poison(device, s.Batch, s.Tk, kvd)));
        }

        Attention.Backward(
            buffers.QOp, buffers.KOp, buffers.VOp, buffers.OutOp, new AttentionOperand(g, gColumn), buffers.Lse, buffers.Shape, s.Scale,
            buffers.Mask, s.Causal, dq, dk, dv, delta);

        var (eq, ek, ev, ed) = ReferenceBackward(buffers.Problem, Natural(gHost, s.Batch, s.Tq, gWidth, gColumn, s));
        float[] dqHost = Download(dq.Tensor);
        int dqWidth = s.Packed ? gradWidth : hd;
        int dkvWidth = s.Packed ? gradWidth : kvd;
        Compare.Close(NaturalFloat(dqHost, s.Batch, s.Tq, dqWidth, dq.FirstColumn, hd), eq, Tolerances.Attention, "dq");
        Compare.Close(NaturalFloat(Download(dk.Tensor), s.Batch, s.Tk, dkvWidth, dk.FirstColumn, kvd), ek, Tolerances.Attention, "dk");
        Compare.Close(NaturalFloat(Download(dv.Tensor), s.Batch, s.Tk, dkvWidth, dv.FirstColumn, kvd), ev, Tolerances.Attention, "dv");
        Compare.Close(Download(delta), ed, Tolerances.Attention, "delta");
        if (s.Packed)
        {
            RequireUntouched(dqHost, gradWidth, 1, hd + (2 * kvd), "dqkv");
        }
    }

    // Zero-length tensors are legal, but ILGPU rejects copies of empty views: skip the copy then.
    private static Tensor<T> Upload<T>(Device device, T[] data, params int[] shape)
        where T : unmanaged
    {
        return data.Length == 0 ? device.Allocate<T>(shape) : device.FromHost<T>(data, shape);
    }

    private static Tensor<float> Poison(Device device, params int[] shape)
    {
        return TensorShape.Create(shape, "test").ElementCount == 0 ? device.Allocate(shape) : TestData.Poisoned(device, shape);
    }

    private static float[] Download(Tensor<float> tensor) => tensor.Length == 0 ? [] : tensor.ToArray();

    // Masked probabilities are exactly 0, rows with a visible key sum to 1, and every value matches the reference.
    private static void CheckProbabilities(float[] actual, double[] expected, Problem problem)
    {
        var s = problem.S;
        Compare.Close(actual, expected, Tolerances.Attention, "probabilities");
        for (int b = 0; b < s.Batch; b++)
        {
            for (int h = 0; h < s.Heads; h++)
            {
                for (int i = 0; i < s.Tq; i++)
                {
                    int row = (((b * s.Heads) + h) * s.Tq) + i;
                    double sum = 0;
                    bool any = false;
                    for (int j = 0; j < s.Tk; j++)
                    {
                        float p = actual[(row * s.Tk) + j];
                        if (Visible(problem, b, i, j))
                        {
                            any = true;
                            sum += p;
                        }
                        else if (p != 0f)
                        {
                            Assert.Fail($"probability [{b}, {h}, {i}, {j}] of a masked key is {p}, not exactly 0.");
                        }
                    }

                    double want = any ? 1 : 0;
                    if (Math.Abs(sum - want) > 1e-5)
                    {
                        Assert.Fail($"probabilities of row [{b}, {h}, {i}] sum to {sum}, expected {want}.");
                    }
                }
            }
        }
    }

    // The group sums of dK and dV are formed in a fixed order: two backward passes give identical bits.
    private static void RepeatsBitwise(Device device)
    {
        var s = new Setup(2, 6, 17, 17, 16, Causal: true, Mask: MaskKind.Holes) { KvHeads = 2 };
        using var buffers = new Buffers(device, s);
        buffers.RunForward();
        using var g = device.FromHost<float>(TestData.Normal(37, (long)s.Batch * s.Tq * s.Hd), s.Batch, s.Tq, s.Hd);
        float[][] Run()
        {
            using var dq = TestData.Poisoned(device, s.Batch, s.Tq, s.Hd);
            using var dk = TestData.Poisoned(device, s.Batch, s.Tk, s.KvHd);
            using var dv = TestData.Poisoned(device, s.Batch, s.Tk, s.KvHd);
            using var delta = TestData.Poisoned(device, s.Batch, s.Heads, s.Tq);
            Attention.Backward(buffers.QOp, buffers.KOp, buffers.VOp, buffers.OutOp, new(g), buffers.Lse, buffers.Shape, s.Scale, buffers.Mask, s.Causal, new(dq), new(dk), new(dv), delta);
            return [dq.ToArray(), dk.ToArray(), dv.ToArray()];
        }

        var first = Run();
        var second = Run();
        for (int t = 0; t < first.Length; t++)
        {
            Assert.Equal(first[t], second[t]);
        }
    }

    // A sequence of 11 tokens run alone gives the same output, logsumexp and probabilities as when it is
    // batch row 1 of 3, padded to 17 by the key mask.
    private static void RowAloneEqualsPadded(Device device)
    {
        const int length = 11;
        var batch = new Setup(3, 2, 17, 17, 8, Mask: MaskKind.Padding, Probabilities: true);
        using var padded = new Buffers(device, batch);
        Assert.Equal(length + 1, padded.MaskHost!.Skip(17).Take(17).Sum()); // row 1 keeps 12 keys: make the 12th padding too
        padded.MaskHost![17 + length] = 0;
        padded.Mask!.CopyFrom(padded.MaskHost);
        padded.RunForward();

        var alone = new Setup(1, 2, length, length, 8, Probabilities: true);
        int hd = alone.Hd;
        float[] q = padded.QHost.AsSpan(17 * hd, length * hd).ToArray();
        float[] k = padded.KHost.AsSpan(17 * hd, length * hd).ToArray();
        float[] v = padded.VHost.AsSpan(17 * hd, length * hd).ToArray();
        using var tq = device.FromHost<float>(q, 1, length, hd);
        using var tk = device.FromHost<float>(k, 1, length, hd);
        using var tv = device.FromHost<float>(v, 1, length, hd);
        using var to = TestData.Poisoned(device, 1, length, hd);
        using var tl = TestData.Poisoned(device, 1, 2, length);
        using var tp = TestData.Poisoned(device, 1, 2, length, length);
        Attention.Forward(new(tq), new(tk), new(tv), new(to), tl, new AttentionShape(1, 2, length, length, 8), alone.Scale, probabilities: tp);

        var paddedOut = padded.OutOp.Tensor.ToArray().AsSpan(17 * hd, length * hd).ToArray();
        Compare.Close(paddedOut, TestData.ToDouble(to.ToArray()), Tolerances.Attention, "output of the padded row");
        float[] paddedLse = padded.Lse.ToArray();
        float[] paddedProbs = padded.Probabilities!.ToArray();
        float[] aloneLse = tl.ToArray();
        float[] aloneProbs = tp.ToArray();
        for (int h = 0; h < 2; h++)
        {
            var lseRow = paddedLse.AsSpan(((1 * 2) + h) * 17, length);
            Compare.Close(lseRow, TestData.ToDouble(aloneLse.AsSpan(h * length, length)), Tolerances.Attention, "logSumExp of the padded row");
            for (int i = 0; i < length; i++)
            {
                var row = paddedProbs.AsSpan(((((1 * 2) + h) * 17) + i) * 17, 17);
                Compare.Close(row[..length], TestData.ToDouble(aloneProbs.AsSpan(((h * length) + i) * length, length)), Tolerances.Attention, "probabilities of the padded row");
                Assert.All(row[length..].ToArray(), p => Assert.Equal(0f, p));
            }
        }
    }

    // The op's gradients against central differences of the float64 forward of L = Σ dO∘O (with grouped
    // heads, dK and dV then check the sum over each group's query heads independently of the chain-rule reference).
    private static void FiniteDifferences(Device device, Setup s)
    {
        using var buffers = new Buffers(device, s);
        buffers.RunForward();
        float[] gHost = TestData.Normal(36, (long)s.Batch * s.Tq * s.Hd);
        using var g = device.FromHost<float>(gHost, s.Batch, s.Tq, s.Hd);
        using var dq = TestData.Poisoned(device, s.Batch, s.Tq, s.Hd);
        using var dk = TestData.Poisoned(device, s.Batch, s.Tk, s.KvHd);
        using var dv = TestData.Poisoned(device, s.Batch, s.Tk, s.KvHd);
        using var delta = TestData.Poisoned(device, s.Batch, s.Heads, s.Tq);
        Attention.Backward(buffers.QOp, buffers.KOp, buffers.VOp, buffers.OutOp, new(g), buffers.Lse, buffers.Shape, s.Scale, buffers.Mask, s.Causal, new(dq), new(dk), new(dv), delta);

        double[] dO = Natural(gHost, s.Batch, s.Tq, s.Hd, 0, s);
        var problem = buffers.Problem;
        Compare.Close(dq.ToArray(), NumericGradient(problem, dO, problem.Q), Tolerances.Attention, "dq vs finite differences");
        Compare.Close(dk.ToArray(), NumericGradient(problem, dO, problem.K), Tolerances.Attention, "dk vs finite differences");
        Compare.Close(dv.ToArray(), NumericGradient(problem, dO, problem.V), Tolerances.Attention, "dv vs finite differences");
    }

    /// <summary>Central differences of <c>Σ dO∘O</c> with respect to every element of <paramref name="input"/> (one of the problem's arrays).</summary>
    public static double[] NumericGradient(Problem problem, double[] dO, double[] input)
    {
        const double step = 1e-5;
        var gradient = new double[input.Length];
        for (int e = 0; e < input.Length; e++)
        {
            double saved = input[e];
            input[e] = saved + step;
            double plus = Loss(problem, dO);
            input[e] = saved - step;
            double minus = Loss(problem, dO);
            input[e] = saved;
            gradient[e] = (plus - minus) / (2 * step);
        }

        return gradient;
    }

    private static double Loss(Problem problem, double[] dO)
    {
        var (o, _, _) = ReferenceForward(problem);
        double sum = 0;
        for (int e = 0; e < o.Length; e++)
        {
            sum += o[e] * dO[e];
        }

        return sum;
    }

    /// <summary>Reads query heads out of a [batch, seq, width] buffer into a natural [batch, seq, heads, dim] float64 array.</summary>
    public static double[] Natural(float[] buffer, int batch, int seq, int width, int firstColumn, Setup s)
        => Natural(buffer, batch, seq, width, firstColumn, s.Hd);

    /// <summary>Reads <paramref name="columns"/> (heads·dim or kvHeads·dim) out of a [batch, seq, width] buffer, as float64.</summary>
    public static double[] Natural(float[] buffer, int batch, int seq, int width, int firstColumn, int columns)
    {
        return TestData.ToDouble(NaturalFloat(buffer, batch, seq, width, firstColumn, columns));
    }

    private static float[] NaturalFloat(float[] buffer, int batch, int seq, int width, int firstColumn, int columns)
    {
        var result = new float[batch * seq * columns];
        for (int r = 0; r < batch * seq; r++)
        {
            buffer.AsSpan((r * width) + firstColumn, columns).CopyTo(result.AsSpan(r * columns));
        }

        return result;
    }

    // Columns outside [firstColumn, firstColumn + columns) of every row must still hold the NaN poison.
    private static void RequireUntouched(float[] buffer, int width, int firstColumn, int columns, string what)
    {
        for (int e = 0; e < buffer.Length; e++)
        {
            int c = e % width;
            if ((c < firstColumn || c >= firstColumn + columns) && !float.IsNaN(buffer[e]))
            {
                Assert.Fail($"{what}: column {c} of row {e / width} lies outside the op's columns but was written ({buffer[e]}).");
            }
        }
    }
}

/// <summary>Checks of the float64 attention reference itself, so the matrix compares against something right.</summary>
public sealed class AttentionReferenceTests
{
    /// <summary>The chain-rule backward of the reference equals central differences of its forward.</summary>
    [Fact]
    public void ChainRuleMatchesFiniteDifferences()
    {
        var s = new AttentionCases.Setup(2, 2, 4, 6, 3, Causal: true, Mask: AttentionCases.MaskKind.Holes);
        var problem = new AttentionCases.Problem(
            s,
            TestData.ToDouble(TestData.Normal(41, s.Batch * s.Tq * s.Hd)),
            TestData.ToDouble(TestData.Normal(42, s.Batch * s.Tk * s.Hd)),
            TestData.ToDouble(TestData.Normal(43, s.Batch * s.Tk * s.Hd)),
            AttentionCases.MakeMask(s));
        double[] dO = TestData.ToDouble(TestData.Normal(44, s.Batch * s.Tq * s.Hd));
        var (dq, dk, dv, _) = AttentionCases.ReferenceBackward(problem, dO);
        var tight = new Tolerance(1e-8, 1e-6);
        Compare.Close(dq.Select(x => (float)x).ToArray(), AttentionCases.NumericGradient(problem, dO, problem.Q), tight, "reference dq");
        Compare.Close(dk.Select(x => (float)x).ToArray(), AttentionCases.NumericGradient(problem, dO, problem.K), tight, "reference dk");
        Compare.Close(dv.Select(x => (float)x).ToArray(), AttentionCases.NumericGradient(problem, dO, problem.V), tight, "reference dv");
    }

    /// <summary>
    /// The grouped reference equals the multi-head reference with each key/value head repeated for its group's query
    /// heads (repeat_interleave: query head h gets kv head h / group), and dK, dV equal the group sums of the repeated gradients.
    /// </summary>
    [Fact]
    public void GroupedEqualsRepeatedHeads()
    {
        var s = new AttentionCases.Setup(2, 6, 4, 5, 3, Causal: true, Mask: AttentionCases.MaskKind.Padding) { KvHeads = 2 };
        var full = s with { KvHeads = 0 };
        double[] q = TestData.ToDouble(TestData.Normal(48, s.Batch * s.Tq * s.Hd));
        double[] k = TestData.ToDouble(TestData.Normal(49, s.Batch * s.Tk * s.KvHd));
        double[] v = TestData.ToDouble(TestData.Normal(50, s.Batch * s.Tk * s.KvHd));
        double[] Repeat(double[] x)
        {
            var result = new double[s.Batch * s.Tk * s.Hd];
            for (int b = 0; b < s.Batch; b++)
            {
                for (int j = 0; j < s.Tk; j++)
                {
                    for (int h = 0; h < s.Heads; h++)
                    {
                        for (int d = 0; d < s.Dim; d++)
                        {
                            result[AttentionCases.At(full, b, s.Tk, j, h, d)] = x[AttentionCases.AtKv(s, b, s.Tk, j, h, d)];
                        }
                    }
                }
            }

            return result;
        }

        var mask = AttentionCases.MakeMask(s);
        var grouped = new AttentionCases.Problem(s, q, k, v, mask);
        var repeated = new AttentionCases.Problem(full, q, Repeat(k), Repeat(v), mask);
        var (o, lse, p) = AttentionCases.ReferenceForward(grouped);
        var (oFull, lseFull, pFull) = AttentionCases.ReferenceForward(repeated);
        Assert.Equal(oFull, o);
        Assert.Equal(lseFull, lse);
        Assert.Equal(pFull, p);

        double[] dO = TestData.ToDouble(TestData.Normal(51, s.Batch * s.Tq * s.Hd));
        var (dq, dk, dv, _) = AttentionCases.ReferenceBackward(grouped, dO);
        var (dqFull, dkFull, dvFull, _) = AttentionCases.ReferenceBackward(repeated, dO);
        Assert.Equal(dqFull, dq);
        var dkSum = new double[dk.Length];
        var dvSum = new double[dv.Length];
        for (int b = 0; b < s.Batch; b++)
        {
            for (int j = 0; j < s.Tk; j++)
            {
                for (int h = 0; h < s.Heads; h++)
                {
                    for (int d = 0; d < s.Dim; d++)
                    {
                        dkSum[AttentionCases.AtKv(s, b, s.Tk, j, h, d)] += dkFull[AttentionCases.At(full, b, s.Tk, j, h, d)];
                        dvSum[AttentionCases.AtKv(s, b, s.Tk, j, h, d)] += dvFull[AttentionCases.At(full, b, s.Tk, j, h, d)];
                    }
                }
            }
        }

        var tight = new Tolerance(1e-9, 1e-6); // float rounding of the values compared
        Compare.Close(dk.Select(x => (float)x).ToArray(), dkSum, tight, "grouped dk");
        Compare.Close(dv.Select(x => (float)x).ToArray(), dvSum, tight, "grouped dv");
    }

    /// <summary>The reference's probabilities are a masked softmax: rows sum to 1, masked keys 0, all-masked rows 0 with L = +∞.</summary>
    [Fact]
    public void ForwardIsMaskedSoftmax()
    {
        var s = new AttentionCases.Setup(3, 1, 5, 5, 2, Mask: AttentionCases.MaskKind.Holes);
        var problem = new AttentionCases.Problem(
            s,
            TestData.ToDouble(TestData.Normal(45, s.Batch * s.Tq * s.Hd)),
            TestData.ToDouble(TestData.Normal(46, s.Batch * s.Tk * s.Hd)),
            TestData.ToDouble(TestData.Normal(47, s.Batch * s.Tk * s.Hd)),
            AttentionCases.MakeMask(s));
        var (o, lse, p) = AttentionCases.ReferenceForward(problem);
        for (int i = 0; i < s.Tq; i++)
        {
            Assert.Equal(1.0, p.Skip(i * s.Tk).Take(s.Tk).Sum(), 12);
            Assert.True(double.IsPositiveInfinity(lse[s.Tq + i]), "batch 1 masks every key");
            Assert.All(p.Skip((s.Tq + i) * s.Tk).Take(s.Tk), x => Assert.Equal(0.0, x));
        }

        Assert.All(o.Skip(s.Tq * s.Hd).Take(s.Tq * s.Hd), x => Assert.Equal(0.0, x));
    }
}
