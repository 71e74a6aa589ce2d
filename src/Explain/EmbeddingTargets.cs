using Headlight.Models;
using Headlight.Models.Loading;
using Headlight.Models.Tokenization;

namespace Headlight.Explain;

/// <summary>
/// Cosine similarity of each row's sentence embedding to a reference embedding: "why does this document
/// match this query?". Pooling is the model's own (mean, [CLS], ...); the L2 normalisation does not change
/// a cosine. Needs a sentence encoder (a model that defines pooling).
/// </summary>
public sealed class EmbeddingSimilarityTarget : IRelevanceTarget
{
    private readonly string? referenceText;
    private float[]? reference;
    private Model? preparedFor;

    /// <summary>Compares with the embedding of <paramref name="referenceText"/>, computed by the explained model.</summary>
    public EmbeddingSimilarityTarget(string referenceText)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(referenceText);
        this.referenceText = referenceText;
    }

    /// <summary>Compares with a given embedding (of the model's width, finite and not all zero).</summary>
    public EmbeddingSimilarityTarget(IReadOnlyList<float> referenceEmbedding)
    {
        ArgumentNullException.ThrowIfNull(referenceEmbedding);
        reference = referenceEmbedding.ToArray();
        if (reference.Any(v => !float.IsFinite(v)) || reference.All(v => v == 0))
        {
            throw new TargetException("The reference embedding of a similarity target must be finite and not all zero.");
        }
    }

    /// <summary>The reference text, or null when an embedding was given.</summary>
    public string? ReferenceText => referenceText;

    /// <summary>The reference embedding, once known (given, or after <see cref="Prepare"/>).</summary>
    public IReadOnlyList<float>? ReferenceEmbedding => reference;

    /// <inheritdoc />
    public string Description => referenceText is null ? "cosine similarity to the reference embedding" : $"cosine similarity to \"{referenceText}\"";

    /// <inheritdoc />
    public void Prepare(Model model, TokenBatch inputs)
    {
        ArgumentNullException.ThrowIfNull(model);
        SentencePool.CheckEncoder(model, "similarity");
        if (referenceText is not null && !ReferenceEquals(preparedFor, model))
        {
            if (model.Tokenizer is null)
            {
                throw new TargetException($"Target 'similarity': model '{model.Name}' has no tokenizer to embed the reference text; give the reference embedding instead.");
            }

            reference = model.Embed([referenceText])[0];
            preparedFor = model;
        }

        if (reference!.Length != model.Config.Hidden)
        {
            throw new TargetException($"Target 'similarity': the reference embedding has {reference.Length} values; model '{model.Name}' embeds into {model.Config.Hidden}.");
        }
    }

    /// <inheritdoc />
    public void EvaluateRelevance(TargetContext context, double epsilon)
        => LrpHeads.Similarity(context, reference ?? throw new InvalidOperationException("Prepare was not called."), epsilon);

    /// <inheritdoc />
    public void Evaluate(TargetContext context)
    {
        var r = reference ?? throw new InvalidOperationException("Prepare was not called.");
        int d = context.Hidden;
        double rNorm = Math.Sqrt(r.Sum(v => (double)v * v));
        var e = new double[d];
        var g = new double[d];
        for (int row = 0; row < context.Rows; row++)
        {
            SentencePool.Pool(context, row, e);
            double eNorm = Math.Sqrt(e.Sum(v => v * v));
            double dot = 0;
            for (int i = 0; i < d; i++)
            {
                dot += e[i] * r[i];
            }

            double cos = eNorm == 0 ? 0 : dot / (eNorm * rNorm);
            context.Values[row] = cos;
            if (!context.WantsGradient)
            {
                continue;
            }

            // d cos / d e = (r̂ − cos·ê) / ‖e‖
            for (int i = 0; i < d; i++)
            {
                g[i] = eNorm == 0 ? 0 : ((r[i] / rNorm) - (cos * e[i] / eNorm)) / eNorm;
            }

            SentencePool.Backward(context, row, g);
        }
    }
}

/// <summary>
/// One unit of the output: of the last hidden state at a position (for decoders after the final
/// LayerNorm), or of the sentence embedding (<see cref="Pooled"/>, L2-normalised where the model normalises).
/// </summary>
public sealed record OutputUnitTarget : IRelevanceTarget
{
    /// <summary>Unit <paramref name="unit"/> of the last hidden state at <paramref name="position"/>.</summary>
    public OutputUnitTarget(int position, int unit)
    {
        Position = position;
        Unit = unit;
    }

    private OutputUnitTarget(int unit)
    {
        Position = null;
        Unit = unit;
    }

    /// <summary>The token position, or null for the sentence embedding.</summary>
    public int? Position { get; }

    /// <summary>The unit (hidden dimension).</summary>
    public int Unit { get; }

    /// <inheritdoc />
    public string Description => Position is { } p ? $"unit {Unit} of the last hidden state at position {p}" : $"unit {Unit} of the sentence embedding";

    /// <summary>Unit <paramref name="unit"/> of the sentence embedding (sentence encoders only).</summary>
    public static OutputUnitTarget Pooled(int unit) => new(unit);

    /// <inheritdoc />
    public void Prepare(Model model, TokenBatch inputs)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        string name = Position is { } p0 ? $"unit:{p0},{Unit}" : $"unit:pooled,{Unit}";
        if ((uint)Unit >= (uint)model.Config.Hidden)
        {
            throw new TargetException($"Target '{name}': unit {Unit} is outside [0, {model.Config.Hidden}) of model '{model.Name}'.");
        }

        if (Position is { } p)
        {
            for (int r = 0; r < inputs.BatchSize; r++)
            {
                if (p < 0 || p >= inputs.Lengths[r])
                {
                    throw new TargetException($"Target '{name}': position {p} is outside row {r}, which has {inputs.Lengths[r]} tokens.");
                }
            }
        }
        else
        {
            SentencePool.CheckEncoder(model, name);
        }
    }

    /// <inheritdoc />
    public void EvaluateRelevance(TargetContext context, double epsilon)
    {
        if (Position is null)
        {
            LrpHeads.PooledUnit(context, Unit, epsilon);
            return;
        }

        // One unit of the hidden state: its relevance is the unit itself, so the signal is 1 there.
        Evaluate(context);
    }

    /// <inheritdoc />
    public void Evaluate(TargetContext context)
    {
        int d = context.Hidden;
        if (Position is { } p)
        {
            for (int r = 0; r < context.Rows; r++)
            {
                context.Values[r] = context.HiddenAt(r, p)[Unit];
                context.Seed(r, p)[Unit] = 1f;
            }

            return;
        }

        bool normalize = context.Model.Config.NormalizeEmbedding;
        var e = new double[d];
        var g = new double[d];
        for (int r = 0; r < context.Rows; r++)
        {
            SentencePool.Pool(context, r, e);
            double norm = Math.Sqrt(e.Sum(v => v * v));
            if (!normalize || norm == 0)
            {
                context.Values[r] = e[Unit];
                Array.Clear(g);
                g[Unit] = 1;
            }
            else
            {
                // u = e/‖e‖; du_k/de_i = (δ_ki − u_k·u_i)/‖e‖
                double uk = e[Unit] / norm;
                context.Values[r] = uk;
                for (int i = 0; i < d; i++)
                {
                    g[i] = ((i == Unit ? 1 : 0) - (uk * e[i] / norm)) / norm;
                }
            }

            if (context.WantsGradient)
            {
                SentencePool.Backward(context, r, g);
            }
        }
    }
}

/// <summary>The model's sentence pooling of one row on the host, and its backward pass into the seed.</summary>
internal static class SentencePool
{
    public static void CheckEncoder(Model model, string name)
    {
        if (model.Config.Pooling is null)
        {
            string what = model.Config.IsDecoder ? "a decoder" : "an encoder without a sentence-embedding pooling";
            throw new TargetException($"Target '{name}' needs a sentence encoder (a model that defines pooling, such as minilm or arcticxs); model '{model.Name}' is {what}.");
        }
    }

    // hidden [seq, d] of one row → e [d]
    public static void Pool(TargetContext context, int row, Span<double> e)
    {
        int d = context.Hidden;
        int seq = context.SequenceLength;
        var mode = context.Model.Config.Pooling!.Value;
        var mask = context.AttentionMask.Slice(row * seq, seq);
        if (mode != PoolingMode.Cls)
        {
            // Every token is read: one copy of the whole state beats a device read per token.
            _ = context.LastHiddenState;
        }

        e.Clear();
        switch (mode)
        {
            case PoolingMode.Cls:
                Add(e, context.HiddenAt(row, 0), 1);
                return;
            case PoolingMode.LastToken:
                Add(e, context.HiddenAt(row, Last(mask)), 1);
                return;
            case PoolingMode.Max:
                e.Fill(double.NegativeInfinity);
                for (int t = 0; t < seq; t++)
                {
                    if (mask[t] != 0)
                    {
                        var h = context.HiddenAt(row, t);
                        for (int i = 0; i < d; i++)
                        {
                            e[i] = Math.Max(e[i], h[i]);
                        }
                    }
                }

                return;
            default:
                double scale = 1 / Divisor(mode, mask);
                for (int t = 0; t < seq; t++)
                {
                    if (mask[t] != 0)
                    {
                        Add(e, context.HiddenAt(row, t), scale);
                    }
                }

                return;
        }
    }

    // d(value)/d(e) [d] → seed [seq, d] of one row
    public static void Backward(TargetContext context, int row, ReadOnlySpan<double> g)
    {
        int d = context.Hidden;
        int seq = context.SequenceLength;
        var mode = context.Model.Config.Pooling!.Value;
        var mask = context.AttentionMask.Slice(row * seq, seq);
        switch (mode)
        {
            case PoolingMode.Cls:
                Write(context.Seed(row, 0), g, 1);
                return;
            case PoolingMode.LastToken:
                Write(context.Seed(row, Last(mask)), g, 1);
                return;
            case PoolingMode.Max:
                // Each dimension's gradient goes to the first token holding the maximum.
                for (int i = 0; i < d; i++)
                {
                    int arg = -1;
                    float best = float.NegativeInfinity;
                    for (int t = 0; t < seq; t++)
                    {
                        if (mask[t] != 0 && (arg < 0 || context.HiddenAt(row, t)[i] > best))
                        {
                            best = context.HiddenAt(row, t)[i];
                            arg = t;
                        }
                    }

                    context.Seed(row, arg)[i] += (float)g[i];
                }

                return;
            default:
                double scale = 1 / Divisor(mode, mask);
                for (int t = 0; t < seq; t++)
                {
                    if (mask[t] != 0)
                    {
                        Write(context.Seed(row, t), g, scale);
                    }
                }

                return;
        }
    }

    private static double Divisor(PoolingMode mode, ReadOnlySpan<int> mask)
    {
        int count = 0;
        foreach (int m in mask)
        {
            count += m != 0 ? 1 : 0;
        }

        count = Math.Max(count, 1);
        return mode == PoolingMode.MeanSqrtLength ? Math.Sqrt(count) : count;
    }

    private static int Last(ReadOnlySpan<int> mask)
    {
        int last = 0;
        for (int t = 0; t < mask.Length; t++)
        {
            if (mask[t] != 0)
            {
                last = t;
            }
        }

        return last;
    }

    private static void Add(Span<double> e, ReadOnlySpan<float> h, double scale)
    {
        for (int i = 0; i < e.Length; i++)
        {
            e[i] += scale * h[i];
        }
    }

    private static void Write(Span<float> seed, ReadOnlySpan<double> g, double scale)
    {
        for (int i = 0; i < seed.Length; i++)
        {
            seed[i] = (float)(g[i] * scale);
        }
    }
}
