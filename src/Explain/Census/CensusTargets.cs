using System.Globalization;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain.Census;

/// <summary>
/// The label-free targets the census measures head importance and ablation with, one per family.
/// Encoders: self-retrieval log-likelihood (see <see cref="RetrievalGallery"/>); decoders: the mean
/// next-token log-likelihood of the text (see <see cref="TextLikelihoodTarget"/>).
/// </summary>
internal static class CensusTargets
{
    public static string Describe(ModelFamily family, RetrievalGallery? gallery) => family == ModelFamily.BertEncoder
        ? string.Create(CultureInfo.InvariantCulture, $"self-retrieval log-likelihood log softmax_j(s·cos(e(x_i), e0(x_j)))[i] over the corpus texts, e0 = the unablated sentence embeddings, s = {gallery?.Scale ?? double.NaN:F2} (where a text retrieves itself with mean probability {RetrievalGallery.CalibratedProbability})")
        : "mean next-token log-likelihood of each text, log p(x_t+1 | x_<=t) averaged over its positions";

    /// <summary>The sentence embedding [d] of one row as the target sees it: the model's pooling, or the mean over tokens when it defines none.</summary>
    public static void Pool(TargetContext context, int row, Span<double> e)
    {
        if (context.Model.Config.Pooling is not null)
        {
            SentencePool.Pool(context, row, e);
            return;
        }

        int length = context.Length(row);
        e.Clear();
        for (int t = 0; t < length; t++)
        {
            var h = context.HiddenAt(row, t);
            for (int i = 0; i < e.Length; i++)
            {
                e[i] += h[i] / (double)length;
            }
        }
    }

    /// <summary>The backward pass of <see cref="Pool"/>: d(value)/d(e) [d] into the seed.</summary>
    public static void PoolBackward(TargetContext context, int row, ReadOnlySpan<double> g)
    {
        if (context.Model.Config.Pooling is not null)
        {
            SentencePool.Backward(context, row, g);
            return;
        }

        int length = context.Length(row);
        for (int t = 0; t < length; t++)
        {
            var seed = context.Seed(row, t);
            for (int i = 0; i < seed.Length; i++)
            {
                seed[i] = (float)(g[i] / length);
            }
        }
    }

    /// <summary>The sentence embedding [d] of one row of a forward pass: the model's own, or the mean over the row's tokens.</summary>
    public static double[] Embedding(ForwardResult result, int row, int length)
    {
        int d = result.Hidden;
        var e = new double[d];
        if (result.SentenceEmbeddings is { } pooled)
        {
            for (int i = 0; i < d; i++)
            {
                e[i] = pooled[row][i];
            }

            return e;
        }

        int t = result.SequenceLength;
        var hidden = result.LastHiddenState.AsSpan(row * t * d, length * d);
        for (int k = 0; k < length; k++)
        {
            for (int i = 0; i < d; i++)
            {
                e[i] += hidden[(k * d) + i];
            }
        }

        for (int i = 0; i < d; i++)
        {
            e[i] /= length;
        }

        return e;
    }

    /// <summary>A decoder's mean next-token log-likelihood of one row of a forward pass, from its logits [batch, seq, vocab].</summary>
    public static double Likelihood(ForwardResult result, int row, int length)
    {
        var logits = result.Logits ?? throw new InvalidOperationException("The forward pass has no next-token logits.");
        int v = logits.Length / (result.BatchSize * result.SequenceLength);
        var ids = result.Batch.InputIds.Span.Slice(row * result.SequenceLength, result.SequenceLength);
        double value = 0;
        for (int t = 0; t + 1 < length; t++)
        {
            var z = logits.AsSpan(((row * result.SequenceLength) + t) * v, v);
            float max = System.Numerics.Tensors.TensorPrimitives.Max(z);
            double sum = 0;
            foreach (float x in z)
            {
                sum += Math.Exp(x - max);
            }

            value += z[ids[t + 1]] - max - Math.Log(sum);
        }

        return length > 1 ? value / (length - 1) : 0;
    }
}

/// <summary>
/// Self-retrieval against a gallery: <c>L_i = log softmax_j(s·cos(e, g_j))[i]</c>, where g = the unablated
/// model's normalised embeddings of every corpus text. It needs no labels and mirrors the contrastive
/// objective sentence encoders are trained with; unlike the similarity of an embedding to its own
/// unablated value (at its maximum when nothing is ablated, so with zero gradient there) its gate
/// gradients are informative. The scale s is calibrated once per model so that, with every head, a text
/// retrieves itself with mean probability 1/2: a fixed scale such as 20 saturates the softmax (L ≈ 0 for
/// every text), and neither gradients nor ablation drops could then be told apart.
/// </summary>
internal sealed class RetrievalGallery
{
    public const double CalibratedProbability = 0.5;
    private const double MinScale = 1;
    private const double MaxScale = 1000;

    private RetrievalGallery(float[][] embeddings, double scale)
    {
        Embeddings = embeddings;
        Scale = scale;
    }

    /// <summary>Normalised embeddings [text][d].</summary>
    public float[][] Embeddings { get; }

    /// <summary>The softmax scale s.</summary>
    public double Scale { get; }

    public int Width => Embeddings[0].Length;

    /// <summary>Normalises the embeddings and finds the scale by bisection on log s within [1, 1000] (mean self-probability rises with s).</summary>
    public static RetrievalGallery Calibrate(IReadOnlyList<double[]> embeddings)
    {
        var g = embeddings.Select(Normalize).ToArray();
        int n = g.Length;
        var cos = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            for (int j = i; j < n; j++)
            {
                double dot = 0;
                for (int k = 0; k < g[i].Length; k++)
                {
                    dot += (double)g[i][k] * g[j][k];
                }

                cos[i, j] = cos[j, i] = dot;
            }
        }

        double MeanSelf(double s)
        {
            double total = 0;
            for (int i = 0; i < n; i++)
            {
                double sum = 0;
                for (int j = 0; j < n; j++)
                {
                    sum += Math.Exp(s * (cos[i, j] - cos[i, i]));
                }

                total += 1 / sum;
            }

            return total / n;
        }

        double lo = Math.Log(MinScale), hi = Math.Log(MaxScale);
        if (MeanSelf(MaxScale) <= CalibratedProbability)
        {
            return new RetrievalGallery(g, MaxScale);
        }

        if (MeanSelf(MinScale) >= CalibratedProbability)
        {
            return new RetrievalGallery(g, MinScale);
        }

        for (int step = 0; step < 60; step++)
        {
            double mid = (lo + hi) / 2;
            if (MeanSelf(Math.Exp(mid)) < CalibratedProbability)
            {
                lo = mid;
            }
            else
            {
                hi = mid;
            }
        }

        return new RetrievalGallery(g, Math.Exp((lo + hi) / 2));
    }

    /// <summary>L for an (unnormalised) embedding e of gallery text <paramref name="self"/>; with <paramref name="gradient"/>, also dL/de.</summary>
    public double Value(ReadOnlySpan<double> e, int self, Span<double> gradient = default)
    {
        int d = e.Length;
        int n = Embeddings.Length;
        double norm = 0;
        foreach (double v in e)
        {
            norm += v * v;
        }

        norm = Math.Sqrt(norm);
        gradient.Clear();
        if (norm == 0)
        {
            return -Math.Log(n);
        }

        // cos_j = ê·g_j; p = softmax(s·cos); L = s·cos_self − logsumexp(s·cos)
        var cos = new double[n];
        double max = double.NegativeInfinity;
        for (int j = 0; j < n; j++)
        {
            var gj = Embeddings[j];
            double dot = 0;
            for (int i = 0; i < d; i++)
            {
                dot += e[i] * gj[i];
            }

            cos[j] = dot / norm;
            max = Math.Max(max, Scale * cos[j]);
        }

        double sum = 0;
        var p = new double[n];
        for (int j = 0; j < n; j++)
        {
            p[j] = Math.Exp((Scale * cos[j]) - max);
            sum += p[j];
        }

        double value = (Scale * cos[self]) - max - Math.Log(sum);
        if (gradient.IsEmpty)
        {
            return value;
        }

        // dL/de = s/‖e‖·[g_self − Σ_j p_j g_j − (cos_self − Σ_j p_j cos_j)·ê]
        double weightedCos = 0;
        for (int j = 0; j < n; j++)
        {
            p[j] /= sum;
            weightedCos += p[j] * cos[j];
        }

        double scale = Scale / norm;
        double along = cos[self] - weightedCos;
        var gs = Embeddings[self];
        for (int j = 0; j < n; j++)
        {
            var gj = Embeddings[j];
            for (int i = 0; i < d; i++)
            {
                gradient[i] -= p[j] * gj[i];
            }
        }

        for (int i = 0; i < d; i++)
        {
            gradient[i] = scale * (gs[i] + gradient[i] - (along * e[i] / norm));
        }

        return value;
    }

    private static float[] Normalize(double[] e)
    {
        double norm = Math.Sqrt(e.Sum(v => v * v));
        return e.Select(v => norm == 0 ? 0f : (float)(v / norm)).ToArray();
    }
}

/// <summary>The self-retrieval target over a batch whose rows are gallery texts <paramref name="galleryIndexOfRow"/>.</summary>
internal sealed class SelfRetrievalTarget(RetrievalGallery gallery, int[] galleryIndexOfRow) : ITarget
{
    public string Description => CensusTargets.Describe(ModelFamily.BertEncoder, gallery);

    public void Prepare(Model model, TokenBatch inputs)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        if (inputs.BatchSize != galleryIndexOfRow.Length)
        {
            throw new TargetException($"Self-retrieval target: {inputs.BatchSize} rows but {galleryIndexOfRow.Length} gallery indices.");
        }

        if (gallery.Width != model.Config.Hidden)
        {
            throw new TargetException($"Self-retrieval target: the gallery's embeddings must have the model's width {model.Config.Hidden}.");
        }
    }

    public void Evaluate(TargetContext context)
    {
        var e = new double[context.Hidden];
        var g = new double[context.Hidden];
        for (int row = 0; row < context.Rows; row++)
        {
            CensusTargets.Pool(context, row, e);
            context.Values[row] = gallery.Value(e, galleryIndexOfRow[context.InputRow(row)], g);
            CensusTargets.PoolBackward(context, row, g);
        }
    }
}

/// <summary>
/// A decoder's mean next-token log-likelihood of each row, <c>(1/(n−1))·Σ_t log p(x_{t+1} | x_≤t)</c>, with the
/// tied LM head (logits = final·wteᵀ) run as two GEMMs on the model's device: the logits, and the gradient
/// <c>(onehot − p)·wte</c> at each position.
/// </summary>
internal sealed class TextLikelihoodTarget : ITarget
{
    private TokenBatch? batch;

    public string Description => CensusTargets.Describe(ModelFamily.Gpt2Decoder, null);

    public void Prepare(Model model, TokenBatch inputs)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        if (!model.Config.IsDecoder)
        {
            throw new TargetException($"Text likelihood target: model '{model.Name}' is not a decoder.");
        }

        batch = inputs;
    }

    public void Evaluate(TargetContext context)
    {
        var model = context.Model;
        int rows = context.Rows;
        int seq = context.SequenceLength;
        int d = context.Hidden;
        int v = model.Config.VocabSize;
        var table = model.OutputEmbeddings;
        var inputs = batch ?? throw new InvalidOperationException("Prepare was not called.");
        var ids = inputs.InputIds.Span;
        var device = model.Device;

        // hidden [rows·seq, d] · wteᵀ → logits [rows·seq, v]; padded positions are computed and ignored.
        using var hidden = device.FromHost<float>(context.LastHiddenState, rows * seq, d);
        using var logits = device.Allocate<float>(rows * seq, v);
        Gemm.Forward(hidden, table, logits, transposeB: true);
        var host = logits.ToArray();

        // host becomes d(value)/d(logits): (onehot(x_{t+1}) − p) / (n − 1) at positions t < n − 1, else 0.
        for (int r = 0; r < rows; r++)
        {
            int n = context.Length(r);
            double value = 0;
            for (int t = 0; t < seq; t++)
            {
                var z = host.AsSpan(((r * seq) + t) * v, v);
                if (t >= n - 1)
                {
                    z.Clear();
                    continue;
                }

                int next = ids[(context.InputRow(r) * seq) + t + 1];
                float max = System.Numerics.Tensors.TensorPrimitives.Max(z);
                double sum = 0;
                for (int k = 0; k < v; k++)
                {
                    sum += Math.Exp(z[k] - max);
                }

                double logSum = max + Math.Log(sum);
                value += z[next] - logSum;
                double w = 1.0 / (n - 1);
                for (int k = 0; k < v; k++)
                {
                    z[k] = (float)(-w * Math.Exp(z[k] - logSum));
                }

                z[next] += (float)w;
            }

            context.Values[r] = n > 1 ? value / (n - 1) : 0;
        }

        // d(value)/d(final) = d(logits) · wte
        using var dLogits = device.FromHost<float>(host, rows * seq, v);
        using var dHidden = device.Allocate<float>(rows * seq, d);
        Gemm.Forward(dLogits, table, dHidden);
        var seed = dHidden.ToArray();
        for (int r = 0; r < rows; r++)
        {
            for (int t = 0; t < seq; t++)
            {
                seed.AsSpan(((r * seq) + t) * d, d).CopyTo(context.Seed(r, t));
            }
        }
    }
}
