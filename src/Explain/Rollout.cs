using System.Diagnostics;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain;

public static partial class Explainer
{
    /// <summary>
    /// Attention rollout or gradient-weighted attention (see <see cref="AttentionRolloutOptions"/> and
    /// <see cref="GradientAttentionOptions"/>) of every row of <paramref name="inputs"/>: the combined
    /// <c>[query, key]</c> matrix over the real tokens, and token scores for the positions <paramref name="target"/> reads.
    /// </summary>
    /// <exception cref="TargetException">The target does not fit the model or the inputs.</exception>
    /// <exception cref="InvalidOperationException">The model produced a value or gradient that is not finite.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled; the run stops before its next batch of rows.</exception>
    public static RolloutResult Rollout(Model model, TokenBatch inputs, ITarget target, RolloutOptions options, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var clock = Stopwatch.StartNew();
        CheckInputs(model, inputs);
        target.Prepare(model, inputs);
        var control = new RunControl(options.Method, "rows", progress, cancellationToken);
        control.Expect(inputs.BatchSize);
        var (rows, matrices, passes) = RolloutRunner.Run(model, inputs, target, options, control);
        var attributions = new AttributionResult(options.Method, target.Description, options.Describe(), model.Name, model.Device.Name, clock.Elapsed, passes, rows);
        return new RolloutResult(attributions, matrices);
    }
}

/// <summary>What <see cref="Explainer.Rollout"/> returns: token scores, and the combined matrix of every input row.</summary>
public sealed class RolloutResult
{
    internal RolloutResult(AttributionResult attributions, IReadOnlyList<double[,]> matrices)
    {
        Attributions = attributions;
        Matrices = matrices;
    }

    /// <summary>Token and word scores (no check figure), one row per input row.</summary>
    public AttributionResult Attributions { get; }

    /// <summary>Per input row, the combined matrix <c>[query, key]</c> over its real tokens.</summary>
    public IReadOnlyList<double[,]> Matrices { get; }
}

/// <summary>
/// Captures every layer's attention probabilities [batch, head, query, key] in the forward pass and, for the
/// gradient-weighted form, their gradients from a backward pass, then combines them per row on the host in float64.
/// </summary>
internal static class RolloutRunner
{
    public static (Attribution[] Rows, double[][,] Matrices, int Passes) Run(Model model, TokenBatch inputs, ITarget target, RolloutOptions options, RunControl control)
    {
        var config = model.Config;
        int seq = inputs.SequenceLength;
        int d = config.Hidden;
        int layers = config.Layers;
        int heads = config.Heads;
        bool gradient = options is GradientAttentionOptions;
        var capture = Enumerable.Range(0, layers).Select(ActivationNames.AttentionProbs).ToArray();
        var backward = gradient ? new BackwardOptions { AttentionGradients = true } : null;
        var shape = new PassRequest { Rows = 1, SequenceLength = seq, Capture = capture, Backward = backward };
        var rows = new Attribution[inputs.BatchSize];
        var matrices = new double[inputs.BatchSize][,];
        PassRunner.Rows batch = null!;
        float[] seed = [];
        double[] values = [];
        var probabilities = new float[layers][];
        var gradients = new float[layers][];

        PassRequest Build(int start, int count, int size)
        {
            batch = PassRunner.Rows.Of(inputs, start, count);
            seed = new float[count * seq * d];
            values = new double[count];
            values.AsSpan().Fill(double.NaN);
            return batch.Request(seq) with { Capture = capture, Backward = backward };
        }

        void Use(ModelPass pass, int start, int count)
        {
            target.Evaluate(new TargetContext(model, pass.LastHiddenState, count, seq, batch.Mask, batch.InputRows, batch.Lengths, seed, values));
            for (int l = 0; l < layers; l++)
            {
                probabilities[l] = pass.Activations[capture[l]].Data;
            }

            if (gradient)
            {
                pass.Backward(seed);
                for (int l = 0; l < layers; l++)
                {
                    gradients[l] = pass.AttentionGradient(l).ToArray();
                }
            }
        }

        void Done(int start, int count)
        {
            for (int r = 0; r < count; r++)
            {
                int row = start + r;
                int n = inputs.Lengths[row];
                if (!double.IsFinite(values[r]))
                {
                    throw new InvalidOperationException($"Explaining '{target.Description}' on model '{model.Name}': the value ({values[r]}) of input row {row} is not finite.");
                }

                // Head-averaged [n, n] per layer: A (rollout) or (∂F/∂A ⊙ A)⁺ (gradient-weighted).
                var perLayer = new double[layers][,];
                for (int l = 0; l < layers; l++)
                {
                    perLayer[l] = HeadMean(probabilities[l], gradient ? gradients[l] : null, r, heads, seq, n);
                }

                var matrix = options is AttentionRolloutOptions rollout ? Rollout(perLayer, rollout.ResidualWeight, n) : Accumulate(perLayer, n);
                if (!AllFinite(matrix))
                {
                    throw new InvalidOperationException($"Explaining '{target.Description}' on model '{model.Name}': the attention gradients of input row {row} are not finite.");
                }

                var queries = Queries(seed.AsSpan(r * seq * d, seq * d), d, n);
                var scores = new double[n];
                for (int j = 0; j < n; j++)
                {
                    foreach (int i in queries)
                    {
                        scores[j] += matrix[i, j] / queries.Length;
                    }
                }

                matrices[row] = matrix;
                rows[row] = new Attribution(inputs.Texts[row], scores, [], 0, values[r], null, null);
            }
        }

        int passes = PassRunner.Run(model, inputs.BatchSize, shape, options.MemoryBudgetBytes, equalBatches: false, control, Build, Use, Done);
        return (rows, matrices, passes);
    }

    // mean over heads of A[h] (or of max(0, dA[h]·A[h])) for row r, restricted to the first n queries and keys.
    private static double[,] HeadMean(float[] probabilities, float[]? gradients, int r, int heads, int seq, int n)
    {
        var mean = new double[n, n];
        for (int h = 0; h < heads; h++)
        {
            long head = ((long)r * heads + h) * seq * seq;
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    long at = head + ((long)i * seq) + j;
                    double a = probabilities[at];
                    mean[i, j] += (gradients is null ? a : Math.Max(0, gradients[at] * a)) / heads;
                }
            }
        }

        return mean;
    }

    // M = Ã_L ⋯ Ã_1 with Ã = (1 − w)·Ā + w·I.
    private static double[,] Rollout(double[][,] perLayer, double w, int n)
    {
        double[,]? m = null;
        foreach (var a in perLayer)
        {
            var mixed = new double[n, n];
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    mixed[i, j] = ((1 - w) * a[i, j]) + (i == j ? w : 0);
                }
            }

            m = m is null ? mixed : Multiply(mixed, m, n);
        }

        return m ?? Identity(n);
    }

    // R = I, then R ← R + Ā_l·R for l = 1..L; returns R − I.
    private static double[,] Accumulate(double[][,] perLayer, int n)
    {
        var r = Identity(n);
        foreach (var a in perLayer)
        {
            var product = Multiply(a, r, n);
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    r[i, j] += product[i, j];
                }
            }
        }

        for (int i = 0; i < n; i++)
        {
            r[i, i] -= 1;
        }

        return r;
    }

    private static double[,] Multiply(double[,] a, double[,] b, int n)
    {
        var c = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            for (int k = 0; k < n; k++)
            {
                double x = a[i, k];
                if (x == 0)
                {
                    continue;
                }

                for (int j = 0; j < n; j++)
                {
                    c[i, j] += x * b[k, j];
                }
            }
        }

        return c;
    }

    private static double[,] Identity(int n)
    {
        var m = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            m[i, i] = 1;
        }

        return m;
    }

    // The positions the target reads: where its seed [seq, d] is not zero; every real token if none is.
    private static int[] Queries(ReadOnlySpan<float> seed, int d, int n)
    {
        var read = new List<int>();
        for (int t = 0; t < n; t++)
        {
            foreach (float v in seed.Slice(t * d, d))
            {
                if (v != 0)
                {
                    read.Add(t);
                    break;
                }
            }
        }

        return read.Count > 0 ? read.ToArray() : Enumerable.Range(0, n).ToArray();
    }

    private static bool AllFinite(double[,] m)
    {
        foreach (double v in m)
        {
            if (!double.IsFinite(v))
            {
                return false;
            }
        }

        return true;
    }
}
