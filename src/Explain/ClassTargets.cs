using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain;

/// <summary>
/// The logit of one class of a sequence classifier (a Hugging Face <c>BertForSequenceClassification</c>:
/// <c>logits = W_c·tanh(W_p·h[CLS] + b_p) + b_c</c>; RoBERTa's head has the same form, DistilBERT's has ReLU for tanh).
/// </summary>
/// <param name="ClassIndex">The class, 0 to the number of labels minus one.</param>
public sealed record ClassLogitTarget(int ClassIndex) : IRelevanceTarget
{
    /// <summary>The class's label (config.json's <c>id2label</c>), shown in <see cref="Description"/>; null shows the index only.</summary>
    public string? Label { get; init; }

    /// <inheritdoc />
    public string Description => ClassHead.Describe("logit", ClassIndex, Label);

    /// <inheritdoc />
    public void Prepare(Model model, TokenBatch inputs) => ClassHead.Check(model, ClassIndex, "class");

    /// <inheritdoc />
    public void Evaluate(TargetContext context) => ClassHead.Evaluate(context, ClassIndex, probability: false);

    /// <inheritdoc />
    public void EvaluateRelevance(TargetContext context, double epsilon) => LrpHeads.Classifier(context, ClassIndex, probability: false, epsilon);
}

/// <summary>The softmax probability of one class of a sequence classifier (see <see cref="ClassLogitTarget"/>).</summary>
/// <param name="ClassIndex">The class, 0 to the number of labels minus one.</param>
public sealed record ClassProbabilityTarget(int ClassIndex) : IRelevanceTarget
{
    /// <summary>The class's label (config.json's <c>id2label</c>), shown in <see cref="Description"/>; null shows the index only.</summary>
    public string? Label { get; init; }

    /// <inheritdoc />
    public string Description => ClassHead.Describe("probability", ClassIndex, Label);

    /// <inheritdoc />
    public void Prepare(Model model, TokenBatch inputs) => ClassHead.Check(model, ClassIndex, "prob");

    /// <inheritdoc />
    public void Evaluate(TargetContext context) => ClassHead.Evaluate(context, ClassIndex, probability: true);

    /// <inheritdoc />
    public void EvaluateRelevance(TargetContext context, double epsilon) => LrpHeads.Classifier(context, ClassIndex, probability: true, epsilon);
}

/// <summary>BERT's pooler and classifier on the host, forward and backward, in float64.</summary>
internal static class ClassHead
{
    /// <summary>"logit of POSITIVE (class 1)", or "logit of class 1" without a label.</summary>
    public static string Describe(string what, int classIndex, string? label)
        => label is null ? $"{what} of class {classIndex}" : $"{what} of {label} (class {classIndex})";

    /// <summary>
    /// A class by label, as config.json's <c>id2label</c> names it: an exact match first, else the one label equal to
    /// <paramref name="value"/> ignoring case; -1 when none (or several differ only in case).
    /// </summary>
    public static int FindLabel(IReadOnlyList<string> labels, string value)
    {
        ArgumentNullException.ThrowIfNull(labels);
        ArgumentNullException.ThrowIfNull(value);
        for (int i = 0; i < labels.Count; i++)
        {
            if (string.Equals(labels[i], value, StringComparison.Ordinal))
            {
                return i;
            }
        }

        var matches = Enumerable.Range(0, labels.Count).Where(i => string.Equals(labels[i], value, StringComparison.OrdinalIgnoreCase)).ToArray();
        return matches.Length == 1 ? matches[0] : -1;
    }

    public static void Check(Model model, int classIndex, string kind)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Config.Family != ModelFamily.BertEncoder || model.Config.NumLabels == 0 || model.ClassifierWeight is null || model.PoolerWeight is null)
        {
            throw new TargetException($"Target '{kind}:{classIndex}' needs a sequence classifier (a Bert-, Roberta- or DistilBertForSequenceClassification folder); model '{model.Name}' has no classification head.");
        }

        if ((uint)classIndex >= (uint)model.Config.NumLabels)
        {
            throw new TargetException($"Target '{kind}:{classIndex}': model '{model.Name}' has {model.Config.NumLabels} classes (0 to {model.Config.NumLabels - 1}).");
        }
    }

    /// <summary>
    /// The target's value from the class logits, and its gradient with respect to them in <paramref name="dLogits"/>:
    /// the logit itself (gradient 1 at the class), or p = softmax(logits)[c] with dp/dlogit_j = p·(δ_cj − p_j).
    /// The same seed starts the relevance pass (the softmax's Taylor rule in signal form is its gradient).
    /// </summary>
    public static double SeedLogits(ReadOnlySpan<double> logits, int classIndex, bool probability, Span<double> dLogits)
    {
        dLogits.Clear();
        if (!probability)
        {
            dLogits[classIndex] = 1;
            return logits[classIndex];
        }

        double max = double.NegativeInfinity;
        foreach (double z in logits)
        {
            max = Math.Max(max, z);
        }

        double sum = 0;
        foreach (double z in logits)
        {
            sum += Math.Exp(z - max);
        }

        double p = Math.Exp(logits[classIndex] - max) / sum;
        for (int j = 0; j < logits.Length; j++)
        {
            dLogits[j] = -p * Math.Exp(logits[j] - max) / sum;
        }

        dLogits[classIndex] += p;
        return p;
    }

    /// <summary>The head's weights on the host: the pooler <c>[d, d]</c> and classifier <c>[d, labels]</c>, both stored [in, out].</summary>
    public sealed record HeadWeights(float[] Pooler, float[] PoolerBias, float[] Classifier, float[] ClassifierBias, int Hidden, int Labels, bool Relu = false)
    {
        public static HeadWeights Of(Model model)
        {
            return new HeadWeights(HostWeights.Get(model.PoolerWeight!), HostWeights.Get(model.PoolerBias!), HostWeights.Get(model.ClassifierWeight!),
                HostWeights.Get(model.ClassifierBias!), model.Config.Hidden, model.Config.NumLabels, model.Config.PoolerActivation == PoolerActivation.Relu);
        }

        /// <summary>d pooled / d pre at one unit: 1 − tanh², or ReLU's step.</summary>
        public double Slope(double pre, double pooled) => Relu ? (pre > 0 ? 1 : 0) : 1 - (pooled * pooled);
    }

    /// <summary>The head forward for one [CLS] state: <c>pre = W_p·h + b_p</c>, <c>pooled = tanh(pre)</c> (ReLU for DistilBERT), <c>logits = W_c·pooled + b_c</c>.</summary>
    public static void Forward(HeadWeights head, ReadOnlySpan<float> h, Span<double> pre, Span<double> pooled, Span<double> logits)
    {
        int d = head.Hidden;
        int labels = head.Labels;
        for (int o = 0; o < d; o++)
        {
            double z = head.PoolerBias[o];
            for (int i = 0; i < d; i++)
            {
                z += h[i] * (double)head.Pooler[(i * d) + o];
            }

            pre[o] = z;
            pooled[o] = head.Relu ? Math.Max(z, 0) : Math.Tanh(z);
        }

        for (int c = 0; c < labels; c++)
        {
            double z = head.ClassifierBias[c];
            for (int i = 0; i < d; i++)
            {
                z += pooled[i] * head.Classifier[(i * labels) + c];
            }

            logits[c] = z;
        }
    }

    public static void Evaluate(TargetContext context, int classIndex, bool probability)
    {
        var head = HeadWeights.Of(context.Model);
        int d = head.Hidden;
        int labels = head.Labels;
        float[] wp = head.Pooler;
        float[] wc = head.Classifier;
        var pre = new double[d];
        var pooled = new double[d];
        var logits = new double[labels];
        var dLogits = new double[labels];
        var dPre = new double[d];
        for (int r = 0; r < context.Rows; r++)
        {
            Forward(head, context.HiddenAt(r, 0), pre, pooled, logits);
            context.Values[r] = SeedLogits(logits, classIndex, probability, dLogits);

            if (!context.WantsGradient)
            {
                continue;
            }

            // Back through the classifier and tanh: dPre[o] = (1 − pooled²)·Σ_c Wc[o, c]·dLogits[c] (ReLU: its step).
            for (int o = 0; o < d; o++)
            {
                double g = 0;
                for (int c = 0; c < labels; c++)
                {
                    g += wc[(o * labels) + c] * dLogits[c];
                }

                dPre[o] = g * head.Slope(pre[o], pooled[o]);
            }

            // Back through the pooler's dense layer to h[CLS].
            var seed = context.Seed(r, 0);
            for (int i = 0; i < d; i++)
            {
                double g = 0;
                for (int o = 0; o < d; o++)
                {
                    g += wp[(i * d) + o] * dPre[o];
                }

                seed[i] = (float)g;
            }
        }
    }
}
