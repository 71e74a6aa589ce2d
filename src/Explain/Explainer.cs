using System.Diagnostics;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain;

/// <summary>
/// Explains a model's output on some input: <c>Explain(model, inputs, target, options)</c>, the same shape
/// for every method; the options choose the method (<see cref="SaliencyOptions"/>,
/// <see cref="GradientXInputOptions"/>, <see cref="SmoothGradOptions"/>, <see cref="IntegratedGradientsOptions"/>,
/// <see cref="KernelShapOptions"/>, <see cref="LrpOptions"/>, <see cref="AttentionRolloutOptions"/>, <see cref="GradientAttentionOptions"/>).
/// </summary>
/// <remarks>
/// Conventions: gradients are taken with respect to the word (token) embeddings <c>e_t</c>, with position
/// and token-type embeddings held fixed. Saliency: <c>score[t] = ‖∂F/∂e_t‖₂</c>. Gradient × input:
/// <c>score[t] = Σ_d e_{t,d}·∂F/∂e_{t,d}</c>. Integrated gradients interpolate <c>e_t</c> only. Word scores are
/// sums over a word's tokens. Padding positions are never scored.
/// </remarks>
public static partial class Explainer
{
    /// <summary>Tokenises <paramref name="text"/> and explains it (see the other overload).</summary>
    public static AttributionResult Explain(Model model, string text, ITarget target, AttributionOptions options, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(text);
        return Explain(model, model.Tokenize([text]), target, options, progress, cancellationToken);
    }

    /// <summary>Explains <paramref name="target"/> on every row of <paramref name="inputs"/> with the method <paramref name="options"/> chooses.</summary>
    /// <exception cref="TargetException">The target does not fit the model or the inputs.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range (zero steps or samples, negative noise).</exception>
    /// <exception cref="ArgumentException">The inputs hold ids outside the vocabulary or are longer than the model's positions, or the baseline needs a token the model lacks.</exception>
    /// <exception cref="InvalidOperationException">The model produced a value or gradient that is not finite.</exception>
    /// <exception cref="MissingRelevanceRuleException">LRP: the model or a custom target has a part without a relevance rule.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled; the run stops before its next batch and the model stays usable.</exception>
    /// <remarks><paramref name="progress"/> hears after every batch: passes (gradient methods), coalitions (Kernel SHAP) or input rows (LRP, rollout) done of those expected.</remarks>
    public static AttributionResult Explain(Model model, TokenBatch inputs, ITarget target, AttributionOptions options, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(options);
        switch (options)
        {
            case LrpOptions lrp:
                return Relevance(model, inputs, target, lrp, progress, cancellationToken).Attributions;
            case RolloutOptions rollout:
                return Rollout(model, inputs, target, rollout, progress, cancellationToken).Attributions;
        }

        options.Validate();
        var clock = Stopwatch.StartNew();
        CheckInputs(model, inputs);
        target.Prepare(model, inputs);
        cancellationToken.ThrowIfCancellationRequested();
        if (options is KernelShapOptions shap)
        {
            var shapControl = new RunControl(options.Method, "coalitions", progress, cancellationToken);
            var (shapRows, shapPasses) = ShapExplainer.Explain(model, inputs, target, shap, shapControl);
            return new AttributionResult(options.Method, target.Description, options.Describe(), model.Name, model.Device.Name, clock.Elapsed, shapPasses, shapRows);
        }

        var rows = GradientRunner.InputEmbeddings(model, inputs);
        var control = new RunControl(options.Method, "passes", progress, cancellationToken);
        var (attributions, passes) = options switch
        {
            SaliencyOptions => Plain(model, inputs, target, options, rows, timesInput: false, control),
            GradientXInputOptions => Plain(model, inputs, target, options, rows, timesInput: true, control),
            SmoothGradOptions s => SmoothGrad(model, inputs, target, s, rows, control),
            IntegratedGradientsOptions ig => IntegratedGradients(model, inputs, target, ig, rows, control),
            _ => throw new ArgumentException($"Unknown method '{options.Method}'.", nameof(options)),
        };
        return new AttributionResult(options.Method, target.Description, options.Describe(), model.Name, model.Device.Name, clock.Elapsed, passes, attributions);
    }

    /// <summary>
    /// Head importance (Michel et al. 2019): <c>∂F/∂ξ</c> for a gate ξ = 1 multiplying each head's output, per
    /// input row, layer and head. Its magnitude estimates how much the target depends on the head.
    /// </summary>
    /// <exception cref="TargetException">The target does not fit the model or the inputs.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="memoryBudgetBytes"/> is outside [1, 2^40].</exception>
    public static HeadGateGradients HeadGateGradients(Model model, TokenBatch inputs, ITarget target, long memoryBudgetBytes = 256L << 20)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(target);
        OptionRange.Check("head gate gradients", nameof(memoryBudgetBytes), memoryBudgetBytes, 1, OptionRange.MaxMemoryBudgetBytes);
        var clock = Stopwatch.StartNew();
        CheckInputs(model, inputs);
        target.Prepare(model, inputs);
        int layers = model.Config.Layers;
        int heads = model.Config.Heads;
        var gates = new float[inputs.BatchSize * layers * heads];
        var values = new double[inputs.BatchSize];
        GradientRunner.Run(
            model, inputs, target, inputs.BatchSize, job => job, null,
            (job, value, _, g) =>
            {
                values[job] = value;
                g.CopyTo(gates.AsSpan(job * layers * heads, layers * heads));
            },
            memoryBudgetBytes, gates: true);
        return new HeadGateGradients(inputs.BatchSize, layers, heads, gates, values, clock.Elapsed);
    }

    /// <summary>The tokenizer's mask token ([MASK], RoBERTa's &lt;mask&gt;), or null when it has none.</summary>
    internal static int? MaskToken(Model model) => model.Tokenizer?.MaskToken;

    /// <summary>
    /// The token that stands in for a masked word: the mask token, or for a decoder without one (GPT-2, GPT-NeoX, Llama,
    /// Qwen2 vocabularies have none) its tokenizer's pad token (&lt;|endoftext|&gt; or the like), else its end-of-sequence token.
    /// </summary>
    internal static int? ReplacementToken(Model model) =>
        MaskToken(model) ?? (!model.Config.IsDecoder ? null
            : model.Tokenizer is { } tokenizer ? tokenizer.PadTokenId
            : model.Config.EndOfSequenceIds.Count > 0 ? model.Config.EndOfSequenceIds[0] : null);

    private static void CheckInputs(Model model, TokenBatch inputs)
    {
        _ = model.WordEmbeddings; // throws once the model is disposed
        if (inputs.SequenceLength > model.Config.MaxTokens)
        {
            throw new ArgumentException($"Model '{model.Name}': the inputs have {inputs.SequenceLength} tokens per row, more than the model's {model.Config.MaxTokens} positions.", nameof(inputs));
        }

        for (int r = 0; r < inputs.BatchSize; r++)
        {
            if (inputs.Lengths[r] == 0)
            {
                throw new ArgumentException($"Input row {r} has no tokens.", nameof(inputs));
            }
        }
    }

    // Saliency and gradient × input: one pass per row.
    private static (Attribution[] Rows, int Passes) Plain(Model model, TokenBatch inputs, ITarget target, AttributionOptions options, float[][] x, bool timesInput, RunControl control)
    {
        int d = model.Config.Hidden;
        control.Expect(inputs.BatchSize);
        var gradients = new float[inputs.BatchSize][];
        var values = new double[inputs.BatchSize];
        int passes = GradientRunner.Run(
            model, inputs, target, inputs.BatchSize, job => job, null,
            (job, value, g, _) =>
            {
                values[job] = value;
                gradients[job] = g.ToArray();
            },
            options.MemoryBudgetBytes,
            control: control);

        var result = new Attribution[inputs.BatchSize];
        for (int r = 0; r < result.Length; r++)
        {
            var (g, e) = (gradients[r], x[r]);
            var (scores, embedding) = Reduce(inputs.Lengths[r], d, timesInput ? i => (double)e[i] * g[i] : i => g[i], norm: !timesInput);
            result[r] = new Attribution(inputs.Texts[r], scores, embedding, d, values[r], null, null);
        }

        return (result, passes);
    }

    // n noisy copies per row, all batched, then the clean rows (for F(x)).
    private static (Attribution[] Rows, int Passes) SmoothGrad(Model model, TokenBatch inputs, ITarget target, SmoothGradOptions options, float[][] x, RunControl control)
    {
        int d = model.Config.Hidden;
        int n = options.Samples;
        control.Expect((long)inputs.BatchSize * (n + 1));
        var sigma = new double[inputs.BatchSize];
        for (int r = 0; r < sigma.Length; r++)
        {
            int count = inputs.Lengths[r] * d;
            double squares = 0;
            for (int i = 0; i < count; i++)
            {
                squares += (double)x[r][i] * x[r][i];
            }

            sigma[r] = options.NoiseLevel * Math.Sqrt(squares / count);
        }

        var sums = Enumerable.Range(0, inputs.BatchSize).Select(_ => new double[inputs.SequenceLength * d]).ToArray();
        var values = new double[inputs.BatchSize];
        int passes = GradientRunner.Run(
            model, inputs, target, inputs.BatchSize * n, job => job / n,
            (job, e) =>
            {
                int r = job / n;
                x[r].CopyTo(e);
                if (sigma[r] > 0)
                {
                    var random = new Random(unchecked((options.Seed * 1_000_003) + (r * 7_919) + (job % n)));
                    int count = inputs.Lengths[r] * d;
                    for (int i = 0; i < count; i++)
                    {
                        e[i] += (float)(sigma[r] * Gaussian(random));
                    }
                }
            },
            (job, _, g, _) =>
            {
                var sum = sums[job / n];
                for (int i = 0; i < sum.Length; i++)
                {
                    sum[i] += g[i];
                }
            },
            options.MemoryBudgetBytes,
            control: control);

        // F(x) at the clean input, forward only.
        passes += GradientRunner.Run(
            model, inputs, target, inputs.BatchSize, job => job, null,
            (job, value, _, _) => values[job] = value,
            options.MemoryBudgetBytes,
            backward: false,
            control: control);

        var result = new Attribution[inputs.BatchSize];
        for (int r = 0; r < result.Length; r++)
        {
            var sum = sums[r];
            var (scores, embedding) = Reduce(inputs.Lengths[r], d, i => sum[i] / n, norm: true);
            result[r] = new Attribution(inputs.Texts[r], scores, embedding, d, values[r], null, null);
        }

        return (result, passes);
    }

    // The quadrature nodes of every row in one batched run; then F(x') and F(x) of every row in a forward-only run.
    private static (Attribution[] Rows, int Passes) IntegratedGradients(Model model, TokenBatch inputs, ITarget target, IntegratedGradientsOptions options, float[][] x, RunControl control)
    {
        int d = model.Config.Hidden;
        int seq = inputs.SequenceLength;
        var (alphas, weights) = Quadrature.On01(options.Rule, options.Steps);
        int n = alphas.Length;
        control.Expect((long)inputs.BatchSize * (n + 2));
        var baselines = Enumerable.Range(0, inputs.BatchSize).Select(r => Baseline(model, inputs, options, x[r], r)).ToArray();
        var sums = Enumerable.Range(0, inputs.BatchSize).Select(_ => new double[seq * d]).ToArray();
        var inputValues = new double[inputs.BatchSize];
        var baselineValues = new double[inputs.BatchSize];
        int passes = GradientRunner.Run(
            model, inputs, target, inputs.BatchSize * n, job => job / n,
            (job, e) => Interpolate(baselines[job / n], x[job / n], (float)alphas[job % n], e),
            (job, _, g, _) =>
            {
                var sum = sums[job / n];
                double w = weights[job % n];
                for (int i = 0; i < sum.Length; i++)
                {
                    sum[i] += w * g[i];
                }
            },
            options.MemoryBudgetBytes,
            control: control);
        passes += GradientRunner.Run(
            model, inputs, target, 2 * inputs.BatchSize, job => job / 2,
            (job, e) => (job % 2 == 0 ? baselines[job / 2] : x[job / 2]).CopyTo(e),
            (job, value, _, _) => (job % 2 == 0 ? baselineValues : inputValues)[job / 2] = value,
            options.MemoryBudgetBytes,
            backward: false,
            control: control);

        var result = new Attribution[inputs.BatchSize];
        for (int r = 0; r < result.Length; r++)
        {
            var (sum, to, from) = (sums[r], x[r], baselines[r]);
            var (scores, embedding) = Reduce(inputs.Lengths[r], d, i => ((double)to[i] - from[i]) * sum[i], norm: false);
            double delta = scores.Sum() - (inputValues[r] - baselineValues[r]);
            var check = new CheckFigure("completeness delta", delta, "Σ attributions − (F(x) − F(x')): how far the quadrature is from the exact path integral.");
            result[r] = new Attribution(inputs.Texts[r], scores, embedding, d, inputValues[r], baselineValues[r], check);
        }

        return (result, passes);
    }

    // An attribution per token and dimension [length, d] → per-token scores: each token's L2 norm (norm) or sum.
    private static (double[] Scores, float[] Embedding) Reduce(int length, int d, Func<int, double> attribution, bool norm)
    {
        var scores = new double[length];
        var embedding = new float[length * d];
        for (int t = 0; t < length; t++)
        {
            double total = 0;
            for (int i = t * d; i < (t + 1) * d; i++)
            {
                double a = attribution(i);
                embedding[i] = (float)a;
                total += norm ? a * a : a;
            }

            scores[t] = norm ? Math.Sqrt(total) : total;
        }

        return (scores, embedding);
    }

    // e = from + α·(to − from)
    private static void Interpolate(float[] from, float[] to, float alpha, Span<float> e)
    {
        for (int i = 0; i < e.Length; i++)
        {
            e[i] = from[i] + (alpha * (to[i] - from[i]));
        }
    }

    // x' [seq, d]: the chosen baseline on real tokens, the input itself on padding (and on special tokens when kept).
    private static float[] Baseline(Model model, TokenBatch inputs, IntegratedGradientsOptions options, float[] x, int row)
    {
        int d = model.Config.Hidden;
        int? token = options.BaselineTokenId ?? options.Baseline switch
        {
            BaselineKind.Pad => model.Tokenizer?.PadTokenId ?? 0,
            BaselineKind.Mask => MaskToken(model)
                ?? throw new ArgumentException($"Model '{model.Name}' has no mask token ([MASK] or <mask> come with a BERT or RoBERTa tokenizer); use the zero or pad baseline, or a baseline token id.", nameof(options)),
            _ => null,
        };
        if (token is { } id && (uint)id >= (uint)model.Config.VocabSize)
        {
            throw new ArgumentOutOfRangeException(nameof(options), id, $"The baseline token id is outside the vocabulary [0, {model.Config.VocabSize}) of model '{model.Name}'.");
        }

        float[] row0 = token is { } tid ? HostWeights.Row(model.WordEmbeddings, tid) : new float[d];
        var baseline = (float[])x.Clone();
        var text = inputs.Texts[row];
        for (int t = 0; t < inputs.Lengths[row]; t++)
        {
            if (options.KeepSpecialTokens && text.WordIndices[t] < 0)
            {
                continue;
            }

            row0.CopyTo(baseline.AsSpan(t * d, d));
        }

        return baseline;
    }

    // Box–Muller: one standard normal value.
    private static double Gaussian(Random random)
    {
        double u = 1 - random.NextDouble();
        double v = random.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * v);
    }
}

/// <summary>Head-gate gradients <c>∂F/∂ξ</c> per input row, layer and head (Michel et al. 2019's head importance before the absolute value).</summary>
public sealed class HeadGateGradients
{
    private readonly float[] values;

    internal HeadGateGradients(int rows, int layers, int heads, float[] values, double[] targetValues, TimeSpan elapsed)
    {
        Rows = rows;
        Layers = layers;
        Heads = heads;
        this.values = values;
        TargetValues = targetValues;
        Elapsed = elapsed;
    }

    /// <summary>Input rows.</summary>
    public int Rows { get; }

    /// <summary>Layers of the model.</summary>
    public int Layers { get; }

    /// <summary>Heads per layer.</summary>
    public int Heads { get; }

    /// <summary>The explained value F(x) per row.</summary>
    public IReadOnlyList<double> TargetValues { get; }

    /// <summary>Wall-clock time.</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>All gradients, <c>[row, layer, head]</c>.</summary>
    public ReadOnlySpan<float> Values => values;

    /// <summary>The gradient for one gate.</summary>
    public float this[int row, int layer, int head]
    {
        get
        {
            ArgumentOutOfRangeException.ThrowIfNegative(row);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, Rows);
            ArgumentOutOfRangeException.ThrowIfNegative(layer);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, Layers);
            ArgumentOutOfRangeException.ThrowIfNegative(head);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(head, Heads);
            return values[(((row * Layers) + layer) * Heads) + head];
        }
    }
}
