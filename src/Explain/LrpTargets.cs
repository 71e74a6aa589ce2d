using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Loading;

namespace Headlight.Explain;

/// <summary>
/// A target that says how LRP passes through its own head. <see cref="EvaluateRelevance"/> writes each row's value
/// and, through <see cref="TargetContext.Seed"/>, the signal at the last hidden state <c>h</c> such that
/// <c>h ⊙ signal</c> is the relevance the head hands to the model (for a head linear in <c>h</c> without bias, the
/// gradient). Every built-in target implements it; a custom <see cref="ITarget"/> explained with LRP must too.
/// </summary>
public interface IRelevanceTarget : ITarget
{
    /// <summary>Writes every row's value into <see cref="TargetContext.Values"/> and its relevance signal through <see cref="TargetContext.Seed"/>.</summary>
    /// <param name="context">The batch.</param>
    /// <param name="epsilon">The ε of the ε-rule, for linear maps inside the head.</param>
    void EvaluateRelevance(TargetContext context, double epsilon);
}

/// <summary>
/// The built-in targets' heads under LRP rules, in float64 on the host, in signal form: the relevance at the last
/// hidden state is <c>h ⊙ seed</c>. Linear maps use the ε-rule (bias and ε absorb their share), tanh the identity rule,
/// the class softmax the Taylor rule (which is its gradient), normalisations (the sentence embedding's L2 norm, the
/// cosine's norms) are held constant, mean pooling is a linear map and [CLS], last-token and max pooling select.
/// </summary>
internal static class LrpHeads
{
    /// <summary>Checks that every part of the model named <paramref name="name"/> has a relevance rule.</summary>
    /// <exception cref="MissingRelevanceRuleException">A part of the model has no rule; the message names it.</exception>
    public static void Check(ModelConfig config, string name)
    {
        string missing = config switch
        {
            _ when !Enum.IsDefined(config.Family) => $"a block layout ({config.Family}) that has no relevance rules; rules exist for BERT encoders and GPT-2 decoders",
            _ when config.Activation is not (GeluForm.Erf or GeluForm.Tanh) => $"an MLP activation ({config.Activation}) without a relevance rule; the identity rule covers GELU (erf and tanh forms)",
            _ when config.Pooling is { } p && !Enum.IsDefined(p) => $"a sentence pooling ({p}) without a relevance rule; rules exist for [CLS], mean, mean/√n, max and last-token pooling",
            _ => string.Empty,
        };
        if (missing.Length > 0)
        {
            throw new MissingRelevanceRuleException($"LRP on model '{name}': it has {missing}.");
        }
    }

    /// <summary>Writes each row's value and relevance signal for <paramref name="target"/>.</summary>
    /// <exception cref="MissingRelevanceRuleException">The target does not implement <see cref="IRelevanceTarget"/>.</exception>
    public static void Evaluate(ITarget target, TargetContext context, double epsilon)
    {
        if (target is not IRelevanceTarget relevance)
        {
            throw new MissingRelevanceRuleException(
                $"LRP of target '{target.Description}' ({target.GetType().Name}): its head has no relevance rule; implement {nameof(IRelevanceTarget)} to give one.");
        }

        relevance.EvaluateRelevance(context, epsilon);
    }

    /// <summary><c>z / (z + ε·sign z)</c>, sign 0 = +1: the ε-rule's factor on a signal at an output z.</summary>
    public static double Stabilized(double z, double epsilon) => z / (z + (z >= 0 ? epsilon : -epsilon));

    // Classifier head: logits = Wc·tanh(Wp·h[CLS] + bp) + bc; for the probability, then the class softmax.
    public static void Classifier(TargetContext context, int classIndex, bool probability, double epsilon)
    {
        var head = ClassHead.HeadWeights.Of(context.Model);
        int d = head.Hidden;
        int labels = head.Labels;
        float[] wp = head.Pooler;
        float[] wc = head.Classifier;
        var z = new double[d];
        var pooled = new double[d];
        var logits = new double[labels];
        var sLogits = new double[labels];
        var sZ = new double[d];
        for (int r = 0; r < context.Rows; r++)
        {
            ClassHead.Forward(head, context.HiddenAt(r, 0), z, pooled, logits);

            // The softmax's Taylor rule in signal form is its gradient: p_c·(δ_cj − p_j).
            context.Values[r] = ClassHead.SeedLogits(logits, classIndex, probability, sLogits);

            // Classifier (ε-rule), tanh or ReLU (identity: the signal times act(z)/z), pooler dense (ε-rule, factor z/(z + ε·sign z)).
            for (int o = 0; o < d; o++)
            {
                double s = 0;
                for (int c = 0; c < labels; c++)
                {
                    s += wc[(o * labels) + c] * sLogits[c] * Stabilized(logits[c], epsilon);
                }

                sZ[o] = s * pooled[o] / (z[o] + (z[o] >= 0 ? epsilon : -epsilon));
            }

            var seed = context.Seed(r, 0);
            for (int i = 0; i < d; i++)
            {
                double s = 0;
                for (int o = 0; o < d; o++)
                {
                    s += wp[(i * d) + o] * sZ[o];
                }

                seed[i] = (float)s;
            }
        }
    }

    // LM head: F = h[p]·w with w = head[a] (− head[b]), head = wte when tied; one linear unit without bias.
    public static void LmHead(TargetContext context, int? position, int tokenA, int? tokenB, double epsilon)
    {
        var table = context.Model.OutputEmbeddings;
        float[] a = HostWeights.Row(table, tokenA);
        float[]? b = tokenB is { } id ? HostWeights.Row(table, id) : null;
        for (int r = 0; r < context.Rows; r++)
        {
            int p = position ?? (context.Length(r) - 1);
            var h = context.HiddenAt(r, p);
            double value = 0;
            for (int i = 0; i < h.Length; i++)
            {
                value += h[i] * (b is null ? a[i] : (double)a[i] - b[i]);
            }

            context.Values[r] = value;
            double factor = Stabilized(value, epsilon);
            var seed = context.Seed(r, p);
            for (int i = 0; i < h.Length; i++)
            {
                seed[i] = (float)((b is null ? a[i] : (double)a[i] - b[i]) * factor);
            }
        }
    }

    // cos(e, r) = ê·r̂: one linear unit on ê (ε-rule), ‖e‖ held constant, then the pooling rule.
    public static void Similarity(TargetContext context, IReadOnlyList<float> reference, double epsilon)
    {
        int d = context.Hidden;
        double rNorm = Math.Sqrt(reference.Sum(v => (double)v * v));
        var e = new double[d];
        var signal = new double[d];
        for (int r = 0; r < context.Rows; r++)
        {
            SentencePool.Pool(context, r, e);
            double eNorm = Math.Sqrt(e.Sum(v => v * v));
            double cos = 0;
            for (int i = 0; i < d; i++)
            {
                cos += e[i] * reference[i];
            }

            cos = eNorm == 0 ? 0 : cos / (eNorm * rNorm);
            context.Values[r] = cos;
            double factor = eNorm == 0 ? 0 : Stabilized(cos, epsilon) / (rNorm * eNorm);
            for (int i = 0; i < d; i++)
            {
                signal[i] = reference[i] * factor;
            }

            Pool(context, r, e, signal, epsilon);
        }
    }

    // Unit k of the sentence embedding: selection, the L2 normalisation (where the model has one) held constant.
    public static void PooledUnit(TargetContext context, int unit, double epsilon)
    {
        int d = context.Hidden;
        bool normalize = context.Model.Config.NormalizeEmbedding;
        var e = new double[d];
        var signal = new double[d];
        for (int r = 0; r < context.Rows; r++)
        {
            SentencePool.Pool(context, r, e);
            double norm = Math.Sqrt(e.Sum(v => v * v));
            double scale = normalize && norm > 0 ? 1 / norm : 1;
            context.Values[r] = e[unit] * scale;
            Array.Clear(signal);
            signal[unit] = scale;
            Pool(context, r, e, signal, epsilon);
        }
    }

    // The pooling rule, from the signal at the pooled e [d] to the seed: mean pooling is linear (ε-rule on its output e),
    // the others select a token per dimension.
    private static void Pool(TargetContext context, int row, double[] e, double[] signal, double epsilon)
    {
        if (context.Model.Config.Pooling is PoolingMode.Mean or PoolingMode.MeanSqrtLength)
        {
            for (int i = 0; i < signal.Length; i++)
            {
                signal[i] *= Stabilized(e[i], epsilon);
            }
        }

        SentencePool.Backward(context, row, signal);
    }
}
