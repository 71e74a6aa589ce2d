namespace Headlight.Tests.Explain;

/// <summary>
/// An independent float64 forward pass of a <see cref="TinyModel"/> in plain loops, on one unpadded row,
/// from word embeddings given by the caller (positions and token types looked up), with an optional gate
/// per (layer, head) multiplying that head's attention output. Weights are read in Hugging Face layouts.
/// </summary>
public sealed class ReferenceTransformer(TinyModel model)
{
    private readonly int d = TinyModel.Hidden;
    private readonly int heads = TinyModel.Heads;
    private readonly Dictionary<string, double[]> widened = new(StringComparer.Ordinal);

    private double[] W(string name)
    {
        if (!widened.TryGetValue(name, out var values))
        {
            values = model.Weights[name].Select(v => (double)v).ToArray();
            widened[name] = values;
        }

        return values;
    }

    /// <summary>The word embeddings [t][d] of <paramref name="ids"/>.</summary>
    public double[][] Embed(int[] ids)
    {
        var table = W(model.IsBert ? "embeddings.word_embeddings.weight" : "wte.weight");
        return ids.Select(id => table.AsSpan(id * d, d).ToArray()).ToArray();
    }

    /// <summary>The last hidden state [t][d] (GPT-2: after the final LayerNorm).</summary>
    public double[][] Hidden(double[][] words, int[]? types = null, double[,]? gates = null)
        => model.IsBert ? Bert(words, types ?? new int[words.Length], gates) : Gpt2(words, gates);

    /// <summary>BERT's pooler and classifier on h[CLS]: the class logits.</summary>
    public double[] ClassLogits(double[][] hidden)
    {
        var pooled = Linear([hidden[0]], W("pooler.dense.weight"), W("pooler.dense.bias"), d, outIn: true)[0].Select(Math.Tanh).ToArray();
        return Linear([pooled], W("classifier.weight"), W("classifier.bias"), TinyModel.Labels, outIn: true)[0];
    }

    /// <summary>The decoder's logit for <paramref name="token"/> after position <paramref name="position"/> (LM head tied to wte).</summary>
    public double Logit(double[][] hidden, int position, int token)
    {
        var wte = W("wte.weight");
        double sum = 0;
        for (int i = 0; i < d; i++)
        {
            sum += hidden[position][i] * wte[(token * d) + i];
        }

        return sum;
    }

    /// <summary>Mean or [CLS] pooling, then L2 normalisation.</summary>
    public double[] SentenceEmbedding(double[][] hidden, bool cls)
    {
        var e = new double[d];
        foreach (var h in cls ? hidden.Take(1) : hidden)
        {
            for (int i = 0; i < d; i++)
            {
                e[i] += h[i] / (cls ? 1 : hidden.Length);
            }
        }

        double norm = Math.Sqrt(e.Sum(v => v * v));
        return e.Select(v => v / norm).ToArray();
    }

    private double[][] Bert(double[][] words, int[] types, double[,]? gates)
    {
        int t = words.Length;
        var pos = W("embeddings.position_embeddings.weight");
        var typ = W("embeddings.token_type_embeddings.weight");
        var x = new double[t][];
        for (int i = 0; i < t; i++)
        {
            x[i] = new double[d];
            for (int j = 0; j < d; j++)
            {
                x[i][j] = words[i][j] + pos[(i * d) + j] + typ[(types[i] * d) + j];
            }
        }

        x = Norm(x, "embeddings.LayerNorm");
        for (int l = 0; l < model.Layers; l++)
        {
            string p = $"encoder.layer.{l}.";
            var q = Linear(x, W(p + "attention.self.query.weight"), W(p + "attention.self.query.bias"), d, outIn: true);
            var k = Linear(x, W(p + "attention.self.key.weight"), W(p + "attention.self.key.bias"), d, outIn: true);
            var v = Linear(x, W(p + "attention.self.value.weight"), W(p + "attention.self.value.bias"), d, outIn: true);
            var context = Attend(q, k, v, causal: false, gates, l);
            var attn = Linear(context, W(p + "attention.output.dense.weight"), W(p + "attention.output.dense.bias"), d, outIn: true);
            var mid = Norm(Add(attn, x), p + "attention.output.LayerNorm");
            var up = Linear(mid, W(p + "intermediate.dense.weight"), W(p + "intermediate.dense.bias"), model.Intermediate, outIn: true);
            var act = up.Select(row => row.Select(ReferenceMath.GeluErf).ToArray()).ToArray();
            var down = Linear(act, W(p + "output.dense.weight"), W(p + "output.dense.bias"), d, outIn: true);
            x = Norm(Add(down, mid), p + "output.LayerNorm");
        }

        return x;
    }

    private double[][] Gpt2(double[][] words, double[,]? gates)
    {
        int t = words.Length;
        var pos = W("wpe.weight");
        var x = new double[t][];
        for (int i = 0; i < t; i++)
        {
            x[i] = new double[d];
            for (int j = 0; j < d; j++)
            {
                x[i][j] = words[i][j] + pos[(i * d) + j];
            }
        }

        for (int l = 0; l < model.Layers; l++)
        {
            string p = $"h.{l}.";
            var a = Norm(x, p + "ln_1");
            var qkv = Linear(a, W(p + "attn.c_attn.weight"), W(p + "attn.c_attn.bias"), 3 * d, outIn: false);
            var q = qkv.Select(r => r[..d]).ToArray();
            var k = qkv.Select(r => r[d..(2 * d)]).ToArray();
            var v = qkv.Select(r => r[(2 * d)..]).ToArray();
            var context = Attend(q, k, v, causal: true, gates, l);
            x = Add(x, Linear(context, W(p + "attn.c_proj.weight"), W(p + "attn.c_proj.bias"), d, outIn: false));
            var m = Norm(x, p + "ln_2");
            var up = Linear(m, W(p + "mlp.c_fc.weight"), W(p + "mlp.c_fc.bias"), model.Intermediate, outIn: false);
            var act = up.Select(row => row.Select(ReferenceMath.GeluTanh).ToArray()).ToArray();
            x = Add(x, Linear(act, W(p + "mlp.c_proj.weight"), W(p + "mlp.c_proj.bias"), d, outIn: false));
        }

        return Norm(x, "ln_f");
    }

    // softmax(q·kᵀ/√hd)·v per head, each head's output times its gate.
    private double[][] Attend(double[][] q, double[][] k, double[][] v, bool causal, double[,]? gates, int layer)
    {
        int t = q.Length;
        int hd = d / heads;
        double scale = 1 / Math.Sqrt(hd);
        var output = Enumerable.Range(0, t).Select(_ => new double[d]).ToArray();
        for (int h = 0; h < heads; h++)
        {
            double gate = gates?[layer, h] ?? 1;
            for (int i = 0; i < t; i++)
            {
                int keys = causal ? i + 1 : t;
                var s = new double[keys];
                for (int j = 0; j < keys; j++)
                {
                    for (int c = 0; c < hd; c++)
                    {
                        s[j] += q[i][(h * hd) + c] * k[j][(h * hd) + c] * scale;
                    }
                }

                double max = s.Max();
                double sum = s.Sum(x => Math.Exp(x - max));
                for (int j = 0; j < keys; j++)
                {
                    double p = Math.Exp(s[j] - max) / sum;
                    for (int c = 0; c < hd; c++)
                    {
                        output[i][(h * hd) + c] += gate * p * v[j][(h * hd) + c];
                    }
                }
            }
        }

        return output;
    }

    // y = x·Wᵀ + b for W [out, in] (outIn), else x·W + b for W [in, out].
    private static double[][] Linear(double[][] x, double[] w, double[] b, int outF, bool outIn)
    {
        int inF = x[0].Length;
        return x.Select(row =>
        {
            var y = (double[])b.Clone();
            for (int o = 0; o < outF; o++)
            {
                for (int i = 0; i < inF; i++)
                {
                    y[o] += row[i] * (outIn ? w[(o * inF) + i] : w[(i * outF) + o]);
                }
            }

            return y;
        }).ToArray();
    }

    private double[][] Norm(double[][] x, string prefix)
    {
        var gamma = W(prefix + ".weight");
        var beta = W(prefix + ".bias");
        return x.Select(row =>
        {
            double mean = row.Average();
            double variance = row.Sum(v => (v - mean) * (v - mean)) / row.Length;
            double rstd = 1 / Math.Sqrt(variance + model.Epsilon);
            return row.Select((v, i) => ((v - mean) * rstd * gamma[i]) + beta[i]).ToArray();
        }).ToArray();
    }

    private static double[][] Add(double[][] a, double[][] b) => a.Select((row, i) => row.Select((v, j) => v + b[i][j]).ToArray()).ToArray();
}
