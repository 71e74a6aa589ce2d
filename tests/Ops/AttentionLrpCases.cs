using Headlight.Kernels;
using static Headlight.Tests.Ops.AttentionCases;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="Attention.Relevance"/> (AttnLRP's uniform and softmax rules, and CP-LRP) and
/// <see cref="Attention.ProbabilityGradient"/>, against relevance messages written out in float64 per head: through
/// O = P·V, the softmax at the scores S = scale·q·kᵀ, and S's two operands, over masks, causality and the packed layout.
/// </summary>
public sealed class AttentionLrpCases : IOpCaseSource
{
    private const float Epsilon = 1e-3f;

    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        var setups = new List<Setup>();
        foreach (int t in TestData.Sizes)
        {
            setups.Add(new Setup(1, 2, t, t, 8));
        }

        foreach (var mask in new[] { MaskKind.Padding, MaskKind.Holes })
        {
            foreach (bool causal in new[] { false, true })
            {
                setups.Add(new Setup(3, 2, 17, 17, 8, causal, mask));
                setups.Add(new Setup(3, 2, 65, 65, 32, causal, mask));
            }
        }

        setups.Add(new Setup(2, 2, 3, 17, 16, Causal: true));
        setups.Add(new Setup(2, 2, 17, 3, 16, Causal: true));
        setups.Add(new Setup(2, 2, 17, 17, 8, Causal: false, MaskKind.Padding, Packed: true));
        setups.Add(new Setup(2, 3, 67, 67, 32, Causal: true, MaskKind.Holes, Packed: true));
        setups.Add(new Setup(1, 2, 67, 67, 3, Causal: true, MaskKind.Padding));
        setups.Add(new Setup(1, 12, 128, 128, 32, Causal: false, MaskKind.Padding));
        foreach (var setup in setups)
        {
            foreach (var rule in new[] { AttentionRelevanceRule.Uniform, AttentionRelevanceRule.Conservative })
            {
                yield return new OpCase("Attention.Relevance", $"{rule} {setup.Name}", setup.Tiny || (setup.Dim <= 3 && setup.Heads <= 2), d => Relevance(d, setup, rule));
            }

            yield return new OpCase("Attention.ProbabilityGradient", setup.Name, setup.Tiny, d => ProbabilityGradient(d, setup));
        }

        // Grouped- and multi-query heads: every rule and dP over the forward's grouped shapes.
        foreach (var setup in GroupedSetups())
        {
            bool tiny = setup.Tiny || (setup.Tq <= 7 && setup.Tk <= 7) || (setup.Dim <= 3 && setup.Heads <= 4);
            foreach (var rule in new[] { AttentionRelevanceRule.Uniform, AttentionRelevanceRule.Conservative })
            {
                yield return new OpCase("Attention.Relevance", $"{rule} {setup.Name} grouped", tiny, d => Relevance(d, setup, rule));
            }

            yield return new OpCase("Attention.ProbabilityGradient", setup.Name + " grouped", tiny, d => ProbabilityGradient(d, setup));
        }

        // The register-tiled backward kernels (32-row ones up to 64 head dims, 16-row ones beyond), on the simulator too.
        var registerTiles = new[]
        {
            new Setup(2, 2, 5, 7, 40, Causal: false, MaskKind.Holes),
            new Setup(1, 2, 7, 4, 64, Causal: true, MaskKind.Padding),
            new Setup(1, 1, 33, 35, 24, Causal: true, MaskKind.Padding),
            new Setup(2, 1, 5, 5, 100),
            new Setup(1, 1, 17, 18, 128, Causal: true, MaskKind.Holes),
        };
        foreach (var setup in registerTiles)
        {
            foreach (var rule in new[] { AttentionRelevanceRule.Uniform, AttentionRelevanceRule.Conservative })
            {
                yield return new OpCase("Attention.Relevance", $"{rule} {setup.Name} register tiles", true, d => Relevance(d, setup, rule));
            }
        }
    }

    private static void Relevance(Device device, Setup s, AttentionRelevanceRule rule)
    {
        using var run = new Run(device, s);
        int hd = s.Hd;
        var dq = run.Output(s.Tq, 0, hd);
        var dk = run.Output(s.Tk, hd, s.KvHd);
        var dv = run.Output(s.Tk, hd + s.KvHd, s.KvHd);
        var delta = run.Own(TestData.Poisoned(device, s.Batch, s.Heads, s.Tq));
        Attention.Relevance(run.Q, run.K, run.V, run.O, run.DO, run.Lse, run.Shape, s.Scale, run.Mask, s.Causal, dq, dk, dv, delta, rule, Epsilon);

        var relevance = run.OutputNatural.Select((o, i) => o * run.GradientNatural[i]).ToArray();
        var (rq, rk, rv, total) = ReferenceRelevance(run.Problem, run.OutputNatural, relevance, rule, Epsilon);
        Compare.Close(ElementwiseLrpCases.Relevance(Floats(run.Problem.Q), run.Read(dq, s.Tq, hd)), rq, Tolerances.Attention, "R_q = q ⊙ dq");
        Compare.Close(ElementwiseLrpCases.Relevance(Floats(run.Problem.K), run.Read(dk, s.Tk, s.KvHd)), rk, Tolerances.Attention, "R_k = k ⊙ dk");
        Compare.Close(ElementwiseLrpCases.Relevance(Floats(run.Problem.V), run.Read(dv, s.Tk, s.KvHd)), rv, Tolerances.Attention, "R_v = v ⊙ dv");
        Compare.Close(delta.ToArray(), total, Tolerances.Attention, "delta");
    }

    private static void ProbabilityGradient(Device device, Setup s)
    {
        using var run = new Run(device, s);
        var dp = run.Own(TestData.Poisoned(device, s.Batch, s.Heads, s.Tq, s.Tk));
        Attention.ProbabilityGradient(run.V, run.DO, run.Shape, run.Mask, s.Causal, dp);
        var p = run.Problem;
        var expected = new double[dp.Length];
        for (int b = 0; b < s.Batch; b++)
        {
            for (int h = 0; h < s.Heads; h++)
            {
                for (int i = 0; i < s.Tq; i++)
                {
                    for (int j = 0; j < s.Tk; j++)
                    {
                        if (Visible(p, b, i, j))
                        {
                            double sum = 0;
                            for (int d = 0; d < s.Dim; d++)
                            {
                                sum += run.GradientNatural[At(s, b, s.Tq, i, h, d)] * p.V[AtKv(s, b, s.Tk, j, h, d)];
                            }

                            expected[((((b * s.Heads) + h) * s.Tq) + i) * s.Tk + j] = sum;
                        }
                    }
                }
            }
        }

        Compare.Close(dp.ToArray(), expected, Tolerances.Attention, "dP");
    }

    /// <summary>
    /// Relevance messages in float64 from the relevance at the output, <paramref name="rO"/> (O as the op is given it). Uniform: through O = P·V each
    /// term P_ij·V_jd gets <c>R_O[i,d] / (2·O_id + ε·sign O_id)</c>, shared by P and V; the softmax rule gives
    /// <c>R_S = S ⊙ (R_P − P·ΣR_P)</c>; through S = scale·q·kᵀ each term gets <c>R_S / (2·S + ε·sign S)</c>, shared by q and k.
    /// Conservative: P is constant, V gets <c>P_ij·V_jd·R_O[i,d] / (O_id + ε·sign O_id)</c>, q and k nothing. Also returns
    /// the op's delta: <c>Σ_j R_P[i, j]</c> (uniform) or <c>Σ_d O_id·R_O[i,d] / (O_id + ε·sign O_id)</c>.
    /// </summary>
    public static (double[] Rq, double[] Rk, double[] Rv, double[] Delta) ReferenceRelevance(Problem problem, double[] o, double[] rO, AttentionRelevanceRule rule, double epsilon)
    {
        var s = problem.S;
        var (_, _, probs) = ReferenceForward(problem);
        var rq = new double[problem.Q.Length];
        var rk = new double[problem.K.Length];
        var rv = new double[problem.V.Length];
        var delta = new double[s.Batch * s.Heads * s.Tq];
        bool uniform = rule == AttentionRelevanceRule.Uniform;
        double Stab(double z, double k) => (k * z) + (z >= 0 ? epsilon : -epsilon);
        var rp = new double[s.Tk];
        for (int b = 0; b < s.Batch; b++)
        {
            for (int h = 0; h < s.Heads; h++)
            {
                for (int i = 0; i < s.Tq; i++)
                {
                    int row = (((b * s.Heads) + h) * s.Tq) + i;
                    Array.Clear(rp);
                    for (int d = 0; d < s.Dim; d++)
                    {
                        int od = At(s, b, s.Tq, i, h, d);
                        double message = rO[od] / Stab(o[od], uniform ? 2 : 1);
                        if (!uniform)
                        {
                            delta[row] += o[od] * message;
                        }

                        for (int j = 0; j < s.Tk; j++)
                        {
                            double term = probs[(row * s.Tk) + j] * problem.V[AtKv(s, b, s.Tk, j, h, d)] * message;
                            rv[AtKv(s, b, s.Tk, j, h, d)] += term;
                            rp[j] += term;
                        }
                    }

                    if (!uniform)
                    {
                        continue;
                    }

                    double total = rp.Sum();
                    delta[row] = total;
                    for (int j = 0; j < s.Tk; j++)
                    {
                        if (!Visible(problem, b, i, j))
                        {
                            continue;
                        }

                        double score = 0;
                        for (int d = 0; d < s.Dim; d++)
                        {
                            score += s.Scale * problem.Q[At(s, b, s.Tq, i, h, d)] * problem.K[AtKv(s, b, s.Tk, j, h, d)];
                        }

                        double rs = score * (rp[j] - (probs[(row * s.Tk) + j] * total));
                        double message = rs / Stab(score, 2);
                        for (int d = 0; d < s.Dim; d++)
                        {
                            double term = s.Scale * problem.Q[At(s, b, s.Tq, i, h, d)] * problem.K[AtKv(s, b, s.Tk, j, h, d)] * message;
                            rq[At(s, b, s.Tq, i, h, d)] += term;
                            rk[AtKv(s, b, s.Tk, j, h, d)] += term;
                        }
                    }
                }
            }
        }

        return (rq, rk, rv, delta);
    }

    private static float[] Floats(double[] values) => values.Select(v => (float)v).ToArray();

    /// <summary>One problem on a device: inputs (packed or not), the forward pass run, and an output gradient.</summary>
    private sealed class Run : IDisposable
    {
        private readonly List<IDisposable> owned = [];
        private readonly Device device;
        private readonly Tensor<float>? gradients;

        public Run(Device device, Setup s)
        {
            this.device = device;
            S = s;
            int hd = s.Hd;
            int kvd = s.KvHd;
            var q = TestData.Normal(851, (long)s.Batch * s.Tq * hd);
            var k = TestData.Normal(852, (long)s.Batch * s.Tk * kvd);
            var v = TestData.Normal(853, (long)s.Batch * s.Tk * kvd);
            if (s.Packed)
            {
                // Q, K, V side by side in one [batch, seq, (heads + 2·kvHeads)·dim] buffer; dq, dk, dv likewise (Tq = Tk).
                int width = hd + (2 * kvd);
                var qkv = new float[s.Batch * s.Tq * width];
                for (int r = 0; r < s.Batch * s.Tq; r++)
                {
                    q.AsSpan(r * hd, hd).CopyTo(qkv.AsSpan(r * width));
                    k.AsSpan(r * kvd, kvd).CopyTo(qkv.AsSpan((r * width) + hd));
                    v.AsSpan(r * kvd, kvd).CopyTo(qkv.AsSpan((r * width) + hd + kvd));
                }

                var packed = Own(device.FromHost<float>(qkv, s.Batch, s.Tq, width));
                (Q, K, V) = (new(packed, 0), new(packed, hd), new(packed, hd + kvd));
                gradients = Own(TestData.Poisoned(device, s.Batch, s.Tq, width));
            }
            else
            {
                Q = new(Own(device.FromHost<float>(q, s.Batch, s.Tq, hd)));
                K = new(Own(device.FromHost<float>(k, s.Batch, s.Tk, kvd)));
                V = new(Own(device.FromHost<float>(v, s.Batch, s.Tk, kvd)));
            }

            var maskHost = MakeMask(s);
            Mask = maskHost is null ? null : Own(device.FromHost<int>(maskHost, s.Batch, s.Tk));
            O = new(Own(TestData.Poisoned(device, s.Batch, s.Tq, hd)));
            Lse = Own(TestData.Poisoned(device, s.Batch, s.Heads, s.Tq));
            Attention.Forward(Q, K, V, O, Lse, Shape, s.Scale, Mask, s.Causal);
            var g = TestData.Normal(854, (long)s.Batch * s.Tq * hd);
            DO = new(Own(device.FromHost<float>(g, s.Batch, s.Tq, hd)));
            Problem = new Problem(s, TestData.ToDouble(q), TestData.ToDouble(k), TestData.ToDouble(v), maskHost);
            OutputNatural = TestData.ToDouble(O.Tensor.ToArray());
            GradientNatural = TestData.ToDouble(g);
        }

        public Setup S { get; }

        public AttentionOperand Q { get; }

        public AttentionOperand K { get; }

        public AttentionOperand V { get; }

        public AttentionOperand O { get; }

        public AttentionOperand DO { get; }

        public Tensor<float> Lse { get; }

        public Tensor<int>? Mask { get; }

        public Problem Problem { get; }

        /// <summary>The forward output the op is given, [batch, tq, heads, dim] in float64.</summary>
        public double[] OutputNatural { get; }

        public double[] GradientNatural { get; }

        public AttentionShape Shape => S.Shape;

        /// <summary>An output operand of <paramref name="columns"/> (hd or kvHeads·dim): a slice of the packed gradient buffer, or a poisoned [batch, seq, columns] tensor.</summary>
        public AttentionOperand Output(int seq, int column, int columns)
            => gradients is null ? new(Own(TestData.Poisoned(device, S.Batch, seq, columns))) : new(gradients, column);

        /// <summary>An output's heads as [batch, seq, columns].</summary>
        public float[] Read(AttentionOperand operand, int seq, int columns)
        {
            float[] all = operand.Tensor.ToArray();
            int width = operand.Tensor.Shape[-1];
            var result = new float[S.Batch * seq * columns];
            for (int r = 0; r < S.Batch * seq; r++)
            {
                all.AsSpan((r * width) + operand.FirstColumn, columns).CopyTo(result.AsSpan(r * columns));
            }

            return result;
        }

        public Tensor<T> Own<T>(Tensor<T> tensor)
            where T : unmanaged
        {
            owned.Add(tensor);
            return tensor;
        }

        public void Dispose()
        {
            foreach (var t in owned)
            {
                t.Dispose();
            }
        }
    }
}
