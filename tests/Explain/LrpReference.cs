using Headlight.Kernels;
using Headlight.Tests.Ops;

namespace Headlight.Tests.Explain;

/// <summary>
/// LRP written out in float64 for a <see cref="TinyModel"/>, on one unpadded row: a forward pass that keeps every
/// intermediate, then relevance messages layer by layer, each rule in its explicit form <c>R_in from R_out</c>
/// (never a modified gradient times the input): the ε-rule <c>R_x[j] = Σ_o x_j·W_jo·R_y[o] / (y_o + ε·sign y_o)</c>
/// through linear layers (bias included in y), the same with ε = 0 through LayerNorm made linear by holding 1/σ
/// constant, identity through GELU and tanh, the z-rule <c>R_a = a·R / (a + b)</c> through residual sums, and
/// inside attention AttnLRP's or CP-LRP's messages (<see cref="AttentionLrpCases.ReferenceRelevance"/>).
/// </summary>
public sealed class LrpReference(TinyModel model)
{
    private readonly int d = TinyModel.Hidden;
    private readonly int heads = TinyModel.Heads;
    private readonly Dictionary<string, double[]> widened = new(StringComparer.Ordinal);

    /// <summary>What is explained: the target's head on top of the last hidden state.</summary>
    public abstract record Head;

    /// <summary>A classifier's logit (or, with <paramref name="Probability"/>, softmax probability) of one class.</summary>
    public sealed record ClassHead(int Class, bool Probability) : Head;

    /// <summary>The tied LM head's logit of <paramref name="TokenA"/> (minus that of <paramref name="TokenB"/>) after <paramref name="Position"/>.</summary>
    public sealed record LmHead(int Position, int TokenA, int? TokenB = null) : Head;

    /// <summary>One unit of the last hidden state.</summary>
    public sealed record UnitHead(int Position, int Unit) : Head;

    /// <summary>One unit of the L2-normalised sentence embedding ([CLS] or mean pooling).</summary>
    public sealed record PooledUnitHead(int Unit, bool Cls) : Head;

    /// <summary>Cosine similarity of the sentence embedding ([CLS] or mean pooling) to <paramref name="Reference"/>.</summary>
    public sealed record SimilarityHead(double[] Reference, bool Cls) : Head;

    /// <summary>What one row's explanation holds.</summary>
    /// <param name="Value">The target value F.</param>
    /// <param name="Input">[t][d]: relevance at the summed input embedding.</param>
    /// <param name="WordPart">[t]: the part of each token's input relevance passed to its word embedding.</param>
    /// <param name="Layers">[layers + 1][t]: relevance of the residual stream entering each block (the last: after the last block).</param>
    /// <param name="Heads">[layers][heads]: relevance of each head's output columns of attn.z.</param>
    /// <param name="Output">[t]: relevance at the last hidden state.</param>
    public sealed record Result(double Value, double[][] Input, double[] WordPart, double[][] Layers, double[][] Heads, double[] Output);

    private double[] W(string name)
    {
        if (!widened.TryGetValue(name, out var values))
        {
            values = model.Weights[name].Select(v => (double)v).ToArray();
            widened[name] = values;
        }

        return values;
    }

    /// <summary>Explains <paramref name="head"/> on the row <paramref name="ids"/> with AttnLRP (or CP-LRP) and ε.</summary>
    public Result Explain(int[] ids, Head head, bool conservative, double epsilon)
    {
        var words = Words(ids);
        var (hidden, trace) = Forward(words, null);
        var (value, rHidden) = HeadRelevance(head, hidden, epsilon);
        var rule = conservative ? AttentionRelevanceRule.Conservative : AttentionRelevanceRule.Uniform;
        var layers = new double[model.Layers + 1][];
        var headTotals = new double[model.Layers][];
        var r = rHidden;
        if (!model.IsBert)
        {
            r = Norm(trace.FinalIn, "ln_f", r);
        }

        layers[model.Layers] = Sums(r);
        for (int l = model.Layers - 1; l >= 0; l--)
        {
            var b = trace.Blocks[l];
            string p = model.IsBert ? $"encoder.layer.{l}." : $"h.{l}.";
            double[][] rIn;
            if (model.IsBert)
            {
                // out = LN2(down + mid), mid = LN1(attn + in)
                var (rDown, rMid) = Sum(b.Down, b.Mid, Norm(b.Sum2, p + "output.LayerNorm", r));
                var rAct = Linear(b.Act, p + "output.dense", b.Down, rDown, epsilon);
                rMid = Add(rMid, Linear(b.Mid, p + "intermediate.dense", b.Up, rAct, epsilon)); // GELU: identity
                var (rAttn, rResidual) = Sum(b.AttnOut, b.Input, Norm(b.Sum1, p + "attention.output.LayerNorm", rMid));
                var (rQkvIn, heads) = Attention(b, p, rAttn, rule, epsilon);
                rIn = Add(rResidual, rQkvIn);
                headTotals[l] = heads;
            }
            else
            {
                // out = mid + down(gelu(up(LN2(mid)))), mid = in + attn(LN1(in))
                var (rMid, rDown) = Sum(b.Mid, b.Down, r);
                var rAct = Linear(b.Act, p + "mlp.c_proj", b.Down, rDown, epsilon);
                var rNormMid = Linear(b.NormMid, p + "mlp.c_fc", b.Up, rAct, epsilon);
                rMid = Add(rMid, Norm(b.Mid, p + "ln_2", rNormMid));
                var (rResidual, rAttn) = Sum(b.Input, b.AttnOut, rMid);
                var (rNormIn, heads) = Attention(b, p, rAttn, rule, epsilon);
                rIn = Add(rResidual, Norm(b.Input, p + "ln_1", rNormIn));
                headTotals[l] = heads;
            }

            r = rIn;
            layers[l] = Sums(r);
        }

        // BERT: the embedding LayerNorm; then the sum word + position (+ type), whose word share is word·R/sum.
        var rSum = model.IsBert ? Norm(trace.EmbedSum, "embeddings.LayerNorm", r) : r;
        var wordPart = new double[ids.Length];
        for (int t = 0; t < ids.Length; t++)
        {
            for (int i = 0; i < d; i++)
            {
                wordPart[t] += words[t][i] * rSum[t][i] / trace.EmbedSum[t][i];
            }
        }

        return new Result(value, rSum, wordPart, layers, headTotals, Sums(rHidden));
    }

    /// <summary>The target value after the forward pass with <paramref name="perturb"/> applied to each layer's probabilities [head][i][j].</summary>
    public double Value(int[] ids, Head head, Action<int, double[][][]>? perturb = null)
        => HeadRelevance(head, Forward(Words(ids), perturb).Hidden, 1e-9).Value;

    /// <summary>Every layer's attention probabilities [layer][head][query][key] of the row.</summary>
    public double[][][][] Probabilities(int[] ids) => Forward(Words(ids), null).Trace.Blocks.Select(b => b.Probabilities).ToArray();

    private double[][] Words(int[] ids)
    {
        var table = W(model.IsBert ? "embeddings.word_embeddings.weight" : "wte.weight");
        return ids.Select(id => table.AsSpan(id * d, d).ToArray()).ToArray();
    }

    /// <summary>One block's intermediates, [t][features] each.</summary>
    private sealed class Block
    {
        public required double[][] Input { get; init; }        // the residual stream entering the block

        public required double[][] AttnIn { get; init; }       // BERT: Input; GPT-2: LN1(Input)

        public required double[][] Qkv { get; init; }          // [t][3d]

        public required double[][][] Probabilities { get; init; } // [head][i][j]

        public required double[][] Context { get; init; }      // attn.z

        public required double[][] AttnOut { get; init; }

        public required double[][] Sum1 { get; init; }         // BERT: AttnOut + Input

        public required double[][] Mid { get; init; }

        public required double[][] NormMid { get; init; }      // GPT-2: LN2(Mid)

        public required double[][] Up { get; init; }

        public required double[][] Act { get; init; }

        public required double[][] Down { get; init; }

        public required double[][] Sum2 { get; init; }         // BERT: Down + Mid
    }

    private sealed record Trace(double[][] EmbedSum, Block[] Blocks, double[][] FinalIn);

    private (double[][] Hidden, Trace Trace) Forward(double[][] words, Action<int, double[][][]>? perturb)
    {
        int t = words.Length;
        var pos = W(model.IsBert ? "embeddings.position_embeddings.weight" : "wpe.weight");
        var sum = new double[t][];
        for (int i = 0; i < t; i++)
        {
            sum[i] = new double[d];
            for (int j = 0; j < d; j++)
            {
                sum[i][j] = words[i][j] + pos[(i * d) + j] + (model.IsBert ? W("embeddings.token_type_embeddings.weight")[j] : 0);
            }
        }

        var x = model.IsBert ? LayerNorm(sum, "embeddings.LayerNorm") : sum;
        var blocks = new Block[model.Layers];
        for (int l = 0; l < model.Layers; l++)
        {
            string p = model.IsBert ? $"encoder.layer.{l}." : $"h.{l}.";
            var attnIn = model.IsBert ? x : LayerNorm(x, p + "ln_1");
            var qkv = model.IsBert
                ? Concat(Linear(attnIn, p + "attention.self.query"), Linear(attnIn, p + "attention.self.key"), Linear(attnIn, p + "attention.self.value"))
                : Linear(attnIn, p + "attn.c_attn");
            var (context, probabilities) = Attend(qkv, l, perturb);
            var attnOut = Linear(context, model.IsBert ? p + "attention.output.dense" : p + "attn.c_proj");
            var sum1 = Add(attnOut, x);
            var mid = model.IsBert ? LayerNorm(sum1, p + "attention.output.LayerNorm") : sum1;
            var normMid = model.IsBert ? mid : LayerNorm(mid, p + "ln_2");
            var up = Linear(normMid, model.IsBert ? p + "intermediate.dense" : p + "mlp.c_fc");
            Func<double, double> gelu = model.IsBert ? ReferenceMath.GeluErf : ReferenceMath.GeluTanh;
            var act = up.Select(row => row.Select(gelu).ToArray()).ToArray();
            var down = Linear(act, model.IsBert ? p + "output.dense" : p + "mlp.c_proj");
            var sum2 = Add(down, mid);
            blocks[l] = new Block
            {
                Input = x, AttnIn = attnIn, Qkv = qkv, Probabilities = probabilities, Context = context, AttnOut = attnOut, Sum1 = sum1,
                Mid = mid, NormMid = normMid, Up = up, Act = act, Down = down, Sum2 = sum2,
            };
            x = model.IsBert ? LayerNorm(sum2, p + "output.LayerNorm") : sum2;
        }

        var hidden = model.IsBert ? x : LayerNorm(x, "ln_f");
        return (hidden, new Trace(sum, blocks, x));
    }

    // softmax(q·kᵀ·scale)·v per head (causal for GPT-2), with the probabilities optionally perturbed before use.
    private (double[][] Context, double[][][] Probabilities) Attend(double[][] qkv, int layer, Action<int, double[][][]>? perturb)
    {
        int t = qkv.Length;
        int hd = d / heads;
        double scale = Setup(t).Scale;
        var probabilities = new double[heads][][];
        for (int h = 0; h < heads; h++)
        {
            probabilities[h] = new double[t][];
            for (int i = 0; i < t; i++)
            {
                int keys = model.IsBert ? t : i + 1;
                var s = new double[keys];
                for (int j = 0; j < keys; j++)
                {
                    for (int c = 0; c < hd; c++)
                    {
                        s[j] += qkv[i][(h * hd) + c] * qkv[j][d + (h * hd) + c] * scale;
                    }
                }

                double max = s.Max();
                double total = s.Sum(v => Math.Exp(v - max));
                probabilities[h][i] = new double[t];
                for (int j = 0; j < keys; j++)
                {
                    probabilities[h][i][j] = Math.Exp(s[j] - max) / total;
                }
            }
        }

        perturb?.Invoke(layer, probabilities);
        var context = Enumerable.Range(0, t).Select(_ => new double[d]).ToArray();
        for (int h = 0; h < heads; h++)
        {
            for (int i = 0; i < t; i++)
            {
                for (int j = 0; j < t; j++)
                {
                    for (int c = 0; c < hd; c++)
                    {
                        context[i][(h * hd) + c] += probabilities[h][i][j] * qkv[j][(2 * d) + (h * hd) + c];
                    }
                }
            }
        }

        return (context, probabilities);
    }

    private AttentionCases.Setup Setup(int t) => new(1, heads, t, t, d / heads, Causal: !model.IsBert);

    // Relevance through attention: from R at attn.out to the attention input, and the relevance of each head's output.
    private (double[][] RIn, double[] Heads) Attention(Block b, string p, double[][] rAttnOut, AttentionRelevanceRule rule, double epsilon)
    {
        int t = b.Input.Length;
        var rContext = Linear(b.Context, model.IsBert ? p + "attention.output.dense" : p + "attn.c_proj", b.AttnOut, rAttnOut, epsilon);
        int hd = d / heads;
        var perHead = new double[heads];
        for (int i = 0; i < t; i++)
        {
            for (int c = 0; c < d; c++)
            {
                perHead[c / hd] += rContext[i][c];
            }
        }

        // Natural [1, t, heads, hd] layouts are the rows of q, k, v and the context laid end to end.
        var setup = Setup(t);
        double[] Flat(Func<int, double[]> row) => Enumerable.Range(0, t).SelectMany(i => row(i)).ToArray();
        var problem = new AttentionCases.Problem(setup, Flat(i => b.Qkv[i][..d]), Flat(i => b.Qkv[i][d..(2 * d)]), Flat(i => b.Qkv[i][(2 * d)..]), null);
        var (rq, rk, rv, _) = AttentionLrpCases.ReferenceRelevance(problem, Flat(i => b.Context[i]), Flat(i => rContext[i]), rule, epsilon);
        var rQkv = Enumerable.Range(0, t).Select(i => rq.AsSpan(i * d, d).ToArray().Concat(rk.AsSpan(i * d, d).ToArray()).Concat(rv.AsSpan(i * d, d).ToArray()).ToArray()).ToArray();
        double[][] rIn;
        if (model.IsBert)
        {
            // Three linear layers on one input: each passes its own messages, which add up at the input.
            rIn = Add(
                Add(Linear(b.AttnIn, p + "attention.self.query", Column(b.Qkv, 0), Column(rQkv, 0), epsilon),
                    Linear(b.AttnIn, p + "attention.self.key", Column(b.Qkv, 1), Column(rQkv, 1), epsilon)),
                Linear(b.AttnIn, p + "attention.self.value", Column(b.Qkv, 2), Column(rQkv, 2), epsilon));
        }
        else
        {
            rIn = Linear(b.AttnIn, p + "attn.c_attn", b.Qkv, rQkv, epsilon);
        }

        return (rIn, perHead);
    }

    private double[][] Column(double[][] qkv, int part) => qkv.Select(row => row[(part * d)..((part + 1) * d)]).ToArray();

    // The head: the value F and the relevance at the last hidden state [t][d].
    private (double Value, double[][] Relevance) HeadRelevance(Head head, double[][] hidden, double epsilon)
    {
        int t = hidden.Length;
        var r = Enumerable.Range(0, t).Select(_ => new double[d]).ToArray();
        double Stab(double z) => z + (z >= 0 ? epsilon : -epsilon);
        switch (head)
        {
            case ClassHead c:
            {
                var wp = W("pooler.dense.weight");     // [out, in]
                var bp = W("pooler.dense.bias");
                var wc = W("classifier.weight");       // [labels, d]
                var bc = W("classifier.bias");
                int labels = TinyModel.Labels;
                var z = Enumerable.Range(0, d).Select(o => bp[o] + Enumerable.Range(0, d).Sum(i => hidden[0][i] * wp[(o * d) + i])).ToArray();
                var a = z.Select(Math.Tanh).ToArray();
                var logits = Enumerable.Range(0, labels).Select(k => bc[k] + Enumerable.Range(0, d).Sum(o => a[o] * wc[(k * d) + o])).ToArray();
                var rLogits = new double[labels];
                double value;
                if (c.Probability)
                {
                    // Softmax's Taylor rule with R = p_c at class c: R_l[j] = l_j·(R_j − p_j·Σ R).
                    double max = logits.Max();
                    var p = logits.Select(l => Math.Exp(l - max)).ToArray();
                    double total = p.Sum();
                    p = p.Select(v => v / total).ToArray();
                    value = p[c.Class];
                    for (int j = 0; j < labels; j++)
                    {
                        rLogits[j] = logits[j] * ((j == c.Class ? value : 0) - (p[j] * value));
                    }
                }
                else
                {
                    value = logits[c.Class];
                    rLogits[c.Class] = value;
                }

                var rA = Enumerable.Range(0, d).Select(o => Enumerable.Range(0, labels).Sum(k => a[o] * wc[(k * d) + o] * rLogits[k] / Stab(logits[k]))).ToArray();
                for (int i = 0; i < d; i++)
                {
                    r[0][i] = Enumerable.Range(0, d).Sum(o => hidden[0][i] * wp[(o * d) + i] * rA[o] / Stab(z[o])); // tanh: R_z = R_a
                }

                return (value, r);
            }

            case LmHead lm:
            {
                var wte = W("wte.weight");
                var w = Enumerable.Range(0, d).Select(i => wte[(lm.TokenA * d) + i] - (lm.TokenB is { } b ? wte[(b * d) + i] : 0)).ToArray();
                double value = Enumerable.Range(0, d).Sum(i => hidden[lm.Position][i] * w[i]);
                for (int i = 0; i < d; i++)
                {
                    r[lm.Position][i] = hidden[lm.Position][i] * w[i] * value / Stab(value);
                }

                return (value, r);
            }

            case UnitHead u:
                r[u.Position][u.Unit] = hidden[u.Position][u.Unit];
                return (hidden[u.Position][u.Unit], r);

            case PooledUnitHead pu:
            {
                var (e, norm) = Pool(hidden, pu.Cls);
                double value = e[pu.Unit] / norm;
                var rE = new double[d];
                rE[pu.Unit] = value; // selection, then the normalisation with ‖e‖ constant: identity
                Unpool(hidden, pu.Cls, e, rE, r, epsilon);
                return (value, r);
            }

            case SimilarityHead sim:
            {
                var (e, norm) = Pool(hidden, sim.Cls);
                double rNorm = Math.Sqrt(sim.Reference.Sum(v => v * v));
                double value = Enumerable.Range(0, d).Sum(i => e[i] / norm * sim.Reference[i] / rNorm);
                var rE = Enumerable.Range(0, d).Select(i => e[i] / norm * sim.Reference[i] / rNorm * value / Stab(value)).ToArray();
                Unpool(hidden, sim.Cls, e, rE, r, epsilon);
                return (value, r);
            }

            default:
                throw new ArgumentException($"Unknown head {head}.", nameof(head));
        }
    }

    private (double[] E, double Norm) Pool(double[][] hidden, bool cls)
    {
        var e = new double[d];
        foreach (var h in cls ? hidden.Take(1) : hidden)
        {
            for (int i = 0; i < d; i++)
            {
                e[i] += h[i] / (cls ? 1 : hidden.Length);
            }
        }

        return (e, Math.Sqrt(e.Sum(v => v * v)));
    }

    // [CLS] pooling passes R_e to token 0; mean pooling is linear: R_h[t][i] = (h_t,i / T)·R_e[i] / (e_i + ε·sign e_i).
    private void Unpool(double[][] hidden, bool cls, double[] e, double[] rE, double[][] r, double epsilon)
    {
        for (int t = 0; t < (cls ? 1 : hidden.Length); t++)
        {
            for (int i = 0; i < d; i++)
            {
                r[t][i] = cls ? rE[i] : hidden[t][i] / hidden.Length * rE[i] / (e[i] + (e[i] >= 0 ? epsilon : -epsilon));
            }
        }
    }

    // y = x·W + b for the layer's weights (BERT [out, in], GPT-2 Conv1D [in, out]).
    private double[][] Linear(double[][] x, string layer)
    {
        var w = W(layer + ".weight");
        var b = W(layer + ".bias");
        int inF = x[0].Length;
        int outF = b.Length;
        return x.Select(row =>
        {
            var y = (double[])b.Clone();
            for (int o = 0; o < outF; o++)
            {
                for (int j = 0; j < inF; j++)
                {
                    y[o] += row[j] * Weight(w, j, o, inF, outF);
                }
            }

            return y;
        }).ToArray();
    }

    // The ε-rule: R_x[t][j] = Σ_o x_j·W_jo·R_y[t][o] / (y_o + ε·sign y_o), y the layer's output (bias included).
    private double[][] Linear(double[][] x, string layer, double[][] y, double[][] rY, double epsilon)
    {
        var w = W(layer + ".weight");
        int inF = x[0].Length;
        int outF = y[0].Length;
        var rX = new double[x.Length][];
        for (int t = 0; t < x.Length; t++)
        {
            rX[t] = new double[inF];
            for (int o = 0; o < outF; o++)
            {
                double message = rY[t][o] / (y[t][o] + (y[t][o] >= 0 ? epsilon : -epsilon));
                for (int j = 0; j < inF; j++)
                {
                    rX[t][j] += x[t][j] * Weight(w, j, o, inF, outF) * message;
                }
            }
        }

        return rX;
    }

    private double Weight(double[] w, int j, int o, int inF, int outF) => model.IsBert ? w[(o * inF) + j] : w[(j * outF) + o];

    private double[][] LayerNorm(double[][] x, string prefix)
    {
        var gamma = W(prefix + ".weight");
        var beta = W(prefix + ".bias");
        return x.Select(row =>
        {
            var (mean, rstd) = Statistics(row);
            return row.Select((v, i) => ((v - mean) * rstd * gamma[i]) + beta[i]).ToArray();
        }).ToArray();
    }

    private (double Mean, double Rstd) Statistics(double[] row)
    {
        double mean = row.Average();
        double variance = row.Sum(v => (v - mean) * (v - mean)) / row.Length;
        return (mean, 1 / Math.Sqrt(variance + model.Epsilon));
    }

    // LayerNorm with 1/σ held constant is y_i = Σ_j W_ij x_j + beta_i, W_ij = gamma_i·rstd·(δ_ij − 1/d): relevance
    // follows it with ε = 0, R_x[j] = Σ_i x_j·W_ij·R_y[i] / y_i.
    private double[][] Norm(double[][] x, string prefix, double[][] rY)
    {
        var gamma = W(prefix + ".weight");
        var beta = W(prefix + ".bias");
        var rX = new double[x.Length][];
        for (int t = 0; t < x.Length; t++)
        {
            var (mean, rstd) = Statistics(x[t]);
            rX[t] = new double[d];
            for (int i = 0; i < d; i++)
            {
                double y = ((x[t][i] - mean) * rstd * gamma[i]) + beta[i];
                double message = rY[t][i] / y;
                for (int j = 0; j < d; j++)
                {
                    rX[t][j] += x[t][j] * gamma[i] * rstd * ((i == j ? 1 : 0) - (1.0 / d)) * message;
                }
            }
        }

        return rX;
    }

    // The z-rule through y = a + b: each summand gets its share of R_y in proportion to its value.
    private static (double[][] Ra, double[][] Rb) Sum(double[][] a, double[][] b, double[][] rY)
    {
        var ra = a.Select((row, t) => row.Select((v, i) => v * rY[t][i] / (v + b[t][i])).ToArray()).ToArray();
        var rb = b.Select((row, t) => row.Select((v, i) => v * rY[t][i] / (a[t][i] + v)).ToArray()).ToArray();
        return (ra, rb);
    }

    private static double[][] Add(double[][] a, double[][] b) => a.Select((row, i) => row.Select((v, j) => v + b[i][j]).ToArray()).ToArray();

    private static double[][] Concat(double[][] a, double[][] b, double[][] c) => a.Select((row, i) => row.Concat(b[i]).Concat(c[i]).ToArray()).ToArray();

    private static double[] Sums(double[][] r) => r.Select(row => row.Sum()).ToArray();
}
