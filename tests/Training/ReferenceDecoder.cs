
namespace Headlight.Tests.Training;

/// <summary>
/// An independent float64 decoder in plain loops, written from the Hugging Face modeling files' semantics, reading weights
/// under their Hugging Face names and layouts: GPT-2 (Conv1D [in, out], learned positions, tanh GELU), GPT-NeoX (per-head
/// fused qkv, partial rotary, parallel residual, erf GELU), Llama and Qwen2 (RMSNorm, rotary, grouped-query attention,
/// SwiGLU; Qwen2's q/k/v biases). <see cref="Loss"/> is the mean next-token cross-entropy of windows.
/// </summary>
public sealed class ReferenceDecoder(string family, int layers, int hidden, int heads, int kvHeads, int rotaryDims, double theta, double eps, bool tied)
{
    private readonly int hd = hidden / heads;

    /// <summary>Mean cross-entropy over the counted rows (target ≥ 0) of windows [windows·t] with weights by name.</summary>
    public double Loss(IReadOnlyDictionary<string, double[]> w, int[] inputs, int[] targets, int t)
    {
        double total = 0;
        int counted = 0;
        for (int first = 0; first < inputs.Length; first += t)
        {
            var logits = Logits(w, inputs.AsSpan(first, t).ToArray());
            for (int i = 0; i < t; i++)
            {
                int target = targets[first + i];
                if (target < 0)
                {
                    continue;
                }

                double max = logits[i].Max();
                double sum = logits[i].Sum(z => Math.Exp(z - max));
                total += max + Math.Log(sum) - logits[i][target];
                counted++;
            }
        }

        return total / counted;
    }

    /// <summary>Logits [t][vocab] of one window.</summary>
    public double[][] Logits(IReadOnlyDictionary<string, double[]> w, int[] ids)
    {
        int t = ids.Length;
        bool gpt2 = family == "gpt2";
        bool neox = family == "gpt_neox";
        string embedName = gpt2 ? "wte.weight" : neox ? "gpt_neox.embed_in.weight" : "model.embed_tokens.weight";
        var embed = w[embedName];
        var x = new double[t][];
        for (int i = 0; i < t; i++)
        {
            x[i] = embed.AsSpan(ids[i] * hidden, hidden).ToArray();
            if (gpt2)
            {
                for (int j = 0; j < hidden; j++)
                {
                    x[i][j] += w["wpe.weight"][(i * hidden) + j];
                }
            }
        }

        for (int l = 0; l < layers; l++)
        {
            x = gpt2 ? Gpt2Block(w, x, l) : neox ? NeoXBlock(w, x, l) : LlamaBlock(w, x, l);
        }

        var final = gpt2 ? LayerNorm(x, w["ln_f.weight"], w["ln_f.bias"]) : neox ? LayerNorm(x, w["gpt_neox.final_layer_norm.weight"], w["gpt_neox.final_layer_norm.bias"]) : Rms(x, w["model.norm.weight"]);
        var head = tied ? embed : w[neox ? "embed_out.weight" : "lm_head.weight"];
        int vocab = head.Length / hidden;
        return final.Select(row => Enumerable.Range(0, vocab).Select(v => Dot(row, head.AsSpan(v * hidden, hidden))).ToArray()).ToArray();
    }

    private double[][] Gpt2Block(IReadOnlyDictionary<string, double[]> w, double[][] x, int l)
    {
        string p = $"h.{l}.";
        var qkv = LinearInOut(LayerNorm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"]), w[p + "attn.c_attn.weight"], w[p + "attn.c_attn.bias"], 3 * hidden);
        var context = Attention(Cols(qkv, 0, hidden), Cols(qkv, hidden, hidden), Cols(qkv, 2 * hidden, hidden), heads);
        var mid = Add(x, LinearInOut(context, w[p + "attn.c_proj.weight"], w[p + "attn.c_proj.bias"], hidden));
        int inner = w[p + "mlp.c_fc.bias"].Length;
        var act = Map(LinearInOut(LayerNorm(mid, w[p + "ln_2.weight"], w[p + "ln_2.bias"]), w[p + "mlp.c_fc.weight"], w[p + "mlp.c_fc.bias"], inner), GeluTanh);
        return Add(mid, LinearInOut(act, w[p + "mlp.c_proj.weight"], w[p + "mlp.c_proj.bias"], hidden));
    }

    private double[][] NeoXBlock(IReadOnlyDictionary<string, double[]> w, double[][] x, int l)
    {
        string p = $"gpt_neox.layers.{l}.";
        var qkv = Linear(LayerNorm(x, w[p + "input_layernorm.weight"], w[p + "input_layernorm.bias"]), w[p + "attention.query_key_value.weight"], w.GetValueOrDefault(p + "attention.query_key_value.bias"), 3 * hidden);
        // Per head h: q, k, v at h·3hd + [0, hd), [hd, 2hd), [2hd, 3hd).
        double[][] Part(int part) => qkv.Select(row => Enumerable.Range(0, heads).SelectMany(h => row.AsSpan((h * 3 * hd) + (part * hd), hd).ToArray()).ToArray()).ToArray();
        var context = Attention(Part(0), Part(1), Part(2), heads);
        var attn = Linear(context, w[p + "attention.dense.weight"], w.GetValueOrDefault(p + "attention.dense.bias"), hidden);
        int inner = w[p + "mlp.dense_h_to_4h.bias"].Length;
        var act = Map(Linear(LayerNorm(x, w[p + "post_attention_layernorm.weight"], w[p + "post_attention_layernorm.bias"]), w[p + "mlp.dense_h_to_4h.weight"], w[p + "mlp.dense_h_to_4h.bias"], inner), GeluErf);
        return Add(Add(x, attn), Linear(act, w[p + "mlp.dense_4h_to_h.weight"], w[p + "mlp.dense_4h_to_h.bias"], hidden));
    }

    private double[][] LlamaBlock(IReadOnlyDictionary<string, double[]> w, double[][] x, int l)
    {
        string p = $"model.layers.{l}.";
        var z = Rms(x, w[p + "input_layernorm.weight"]);
        int kv = kvHeads * hd;
        var q = Linear(z, w[p + "self_attn.q_proj.weight"], w.GetValueOrDefault(p + "self_attn.q_proj.bias"), heads * hd);
        var k = Linear(z, w[p + "self_attn.k_proj.weight"], w.GetValueOrDefault(p + "self_attn.k_proj.bias"), kv);
        var v = Linear(z, w[p + "self_attn.v_proj.weight"], w.GetValueOrDefault(p + "self_attn.v_proj.bias"), kv);
        var context = Attention(q, k, v, kvHeads);
        var h = Add(x, Linear(context, w[p + "self_attn.o_proj.weight"], null, hidden));
        var z2 = Rms(h, w[p + "post_attention_layernorm.weight"]);
        int inner = w[p + "mlp.gate_proj.weight"].Length / hidden;
        var gate = Linear(z2, w[p + "mlp.gate_proj.weight"], null, inner);
        var up = Linear(z2, w[p + "mlp.up_proj.weight"], null, inner);
        var act = gate.Select((row, i) => row.Select((g, j) => g / (1 + Math.Exp(-g)) * up[i][j]).ToArray()).ToArray();
        return Add(h, Linear(act, w[p + "mlp.down_proj.weight"], null, hidden));
    }

    // Causal softmax attention with rotary q/k (rotate_half on the first rotaryDims of each head) and query head h reading
    // kv head h / (heads / kvCount).
    private double[][] Attention(double[][] q, double[][] k, double[][] v, int kvCount)
    {
        int t = q.Length;
        int group = heads / kvCount;
        var rq = Rotate(q, heads);
        var rk = Rotate(k, kvCount);
        var output = new double[t][];
        for (int i = 0; i < t; i++)
        {
            output[i] = new double[heads * hd];
            for (int h = 0; h < heads; h++)
            {
                int g = h / group;
                var scores = new double[i + 1];
                for (int j = 0; j <= i; j++)
                {
                    scores[j] = Dot(rq[i].AsSpan(h * hd, hd).ToArray(), rk[j].AsSpan(g * hd, hd)) / Math.Sqrt(hd);
                }

                double max = scores.Max();
                double sum = scores.Sum(s => Math.Exp(s - max));
                for (int j = 0; j <= i; j++)
                {
                    double p = Math.Exp(scores[j] - max) / sum;
                    for (int e = 0; e < hd; e++)
                    {
                        output[i][(h * hd) + e] += p * v[j][(g * hd) + e];
                    }
                }
            }
        }

        return output;
    }

    private double[][] Rotate(double[][] x, int count)
    {
        if (rotaryDims == 0)
        {
            return x;
        }

        int half = rotaryDims / 2;
        var result = x.Select(r => (double[])r.Clone()).ToArray();
        for (int t = 0; t < x.Length; t++)
        {
            for (int h = 0; h < count; h++)
            {
                for (int j = 0; j < half; j++)
                {
                    double angle = t * Math.Pow(theta, -2.0 * j / rotaryDims);
                    double a = x[t][(h * hd) + j];
                    double b = x[t][(h * hd) + j + half];
                    result[t][(h * hd) + j] = (a * Math.Cos(angle)) - (b * Math.Sin(angle));
                    result[t][(h * hd) + j + half] = (b * Math.Cos(angle)) + (a * Math.Sin(angle));
                }
            }
        }

        return result;
    }

    private double[][] LayerNorm(double[][] x, double[] gamma, double[] beta) => x.Select(row =>
    {
        double mean = row.Average();
        double variance = row.Sum(v => (v - mean) * (v - mean)) / row.Length;
        return row.Select((v, j) => ((v - mean) / Math.Sqrt(variance + eps) * gamma[j]) + beta[j]).ToArray();
    }).ToArray();

    private double[][] Rms(double[][] x, double[] gamma) => x.Select(row =>
    {
        double rms = Math.Sqrt((row.Sum(v => v * v) / row.Length) + eps);
        return row.Select((v, j) => v / rms * gamma[j]).ToArray();
    }).ToArray();

    // nn.Linear: weight [out, in].
    private static double[][] Linear(double[][] x, double[] weight, double[]? bias, int outF) => x.Select(row =>
        Enumerable.Range(0, outF).Select(o => Dot(row, weight.AsSpan(o * row.Length, row.Length)) + (bias?[o] ?? 0)).ToArray()).ToArray();

    // GPT-2's Conv1D: weight [in, out].
    private static double[][] LinearInOut(double[][] x, double[] weight, double[] bias, int outF) => x.Select(row =>
    {
        var y = (double[])bias.Clone();
        for (int i = 0; i < row.Length; i++)
        {
            for (int o = 0; o < outF; o++)
            {
                y[o] += row[i] * weight[(i * outF) + o];
            }
        }

        return y;
    }).ToArray();

    private static double[][] Cols(double[][] x, int first, int count) => x.Select(r => r.AsSpan(first, count).ToArray()).ToArray();

    private static double[][] Add(double[][] a, double[][] b) => a.Select((r, i) => r.Select((v, j) => v + b[i][j]).ToArray()).ToArray();

    private static double[][] Map(double[][] x, Func<double, double> f) => x.Select(r => r.Select(f).ToArray()).ToArray();

    private static double Dot(double[] a, ReadOnlySpan<double> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++)
        {
            s += a[i] * b[i];
        }

        return s;
    }

    private static double GeluTanh(double x) => ReferenceMath.GeluTanh(x);

    private static double GeluErf(double x) => ReferenceMath.GeluErf(x);
}
