using System.Diagnostics;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain;

public static partial class Explainer
{
    /// <summary>
    /// LRP of <paramref name="target"/> on every row of <paramref name="inputs"/> (see <see cref="LrpOptions"/>), with
    /// relevance per token, word, layer and head and the conservation figures. One forward pass and one relevance pass
    /// per row, batched within the memory budget.
    /// </summary>
    /// <exception cref="TargetException">The target does not fit the model or the inputs.</exception>
    /// <exception cref="ArgumentOutOfRangeException">ε is not positive (or another option is out of range).</exception>
    /// <exception cref="MissingRelevanceRuleException">The model or a custom target has a part without a relevance rule.</exception>
    /// <exception cref="InvalidOperationException">The model produced a value or relevance that is not finite.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled; the run stops before its next batch of rows.</exception>
    public static RelevanceResult Relevance(Model model, TokenBatch inputs, ITarget target, LrpOptions options, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(target);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var clock = Stopwatch.StartNew();
        CheckInputs(model, inputs);
        LrpHeads.Check(model.Config, model.Name);
        target.Prepare(model, inputs);
        var control = new RunControl(options.Method, "rows", progress, cancellationToken);
        control.Expect(inputs.BatchSize);
        var (rows, passes) = LrpRunner.Run(model, inputs, target, options, control);
        var attributions = new AttributionResult(options.Method, target.Description, options.Describe(), model.Name, model.Device.Name, clock.Elapsed, passes,
            rows.Select(r => r.Attribution).ToArray());
        return new RelevanceResult(attributions, rows, model.Config.Layers, model.Config.Heads);
    }
}

/// <summary>
/// Runs the input rows through the forward pass and the relevance pass, as many per batch as the memory budget
/// allows, and reads back the relevance at the input, at every block boundary, per head and at the last hidden state.
/// </summary>
internal static class LrpRunner
{
    private static readonly HashSet<string> NoCapture = [];

    public static (RowRelevance[] Rows, int Passes) Run(Model model, TokenBatch inputs, ITarget target, LrpOptions options, RunControl control)
    {
        var config = model.Config;
        int seq = inputs.SequenceLength;
        int d = config.Hidden;
        int layers = config.Layers;
        int heads = config.Heads;
        long perRow = TransformerBackward.BytesPerRow(config, seq) + (4L * seq * (Math.Max(3 * d, config.Intermediate) + layers + 1));
        int chunk = (int)Math.Clamp(options.MemoryBudgetBytes / perRow, 1, inputs.BatchSize);
        var rule = options.Rules == LrpRules.CpLrp ? AttentionRelevanceRule.Conservative : AttentionRelevanceRule.Uniform;
        var result = new RowRelevance[inputs.BatchSize];
        for (int start = 0; start < inputs.BatchSize; start += chunk)
        {
            control.ThrowIfCancelled();
            int count = Math.Min(chunk, inputs.BatchSize - start);
            var batch = Rows.Of(inputs, start, count);
            int n = count * seq;
            var seed = new float[n * d];
            var values = new double[count];
            values.AsSpan().Fill(double.NaN);
            float[] signal, sum, words, hidden, streams, gates;
            lock (model.Gate)
            {
                model.ThrowIfDisposed();
                var state = model.Prepare(batch.Ids, batch.Mask, batch.Types, count, seq, savesForBackward: true);
                TransformerForward.Run(config, model.Weights, state, NoCapture, null, packed: model.Packed);
                var context = new TargetContext(model, TransformerForward.LastHidden(config, state), count, seq, batch.Mask, batch.InputRows, batch.Lengths, seed, values);
                LrpHeads.Evaluate(target, context, options.Epsilon);
                hidden = context.LastHiddenState.ToArray();
                var grads = state.BackwardBuffers(config);
                grads.Seed.CopyFrom(seed);
                using var boundaries = model.Device.Allocate<float>(layers + 1, count, seq);
                var rules = BackwardRules.Relevance(rule, (float)options.Epsilon, grads.RelevanceScratch);
                TransformerBackward.Run(config, model.Weights, state, grads, rules, gates: true, new BackwardTaps { Streams = boundaries });
                signal = grads.TokenEmbeds.ToArray();
                sum = state.EmbedSum.ToArray();
                words = state.TokenEmbeds.ToArray();
                streams = boundaries.ToArray();
                gates = grads.Gates.ToArray();
            }

            for (int r = 0; r < count; r++)
            {
                int row = start + r;
                int length = inputs.Lengths[row];
                var tokens = new double[length];
                var wordPart = new double[length];
                var output = new double[length];
                var embedding = new float[length * d];
                for (int t = 0; t < length; t++)
                {
                    int at = ((r * seq) + t) * d;
                    for (int i = 0; i < d; i++)
                    {
                        double g = signal[at + i];
                        double relevance = sum[at + i] * g;
                        embedding[(t * d) + i] = (float)relevance;
                        tokens[t] += relevance;
                        wordPart[t] += words[at + i] * g;
                        output[t] += (double)hidden[at + i] * seed[at + i];
                    }
                }

                var layerRelevance = new double[layers + 1][];
                for (int l = 0; l <= layers; l++)
                {
                    layerRelevance[l] = streams.AsSpan((((l * count) + r) * seq), length).ToArray().Select(v => (double)v).ToArray();
                }

                var headRelevance = new double[layers][];
                for (int l = 0; l < layers; l++)
                {
                    headRelevance[l] = gates.AsSpan(((l * count) + r) * heads, heads).ToArray().Select(v => (double)v).ToArray();
                }

                double value = values[r];
                if (!double.IsFinite(value) || !tokens.All(double.IsFinite) || !layerRelevance.All(l => l.All(double.IsFinite)))
                {
                    throw new InvalidOperationException(
                        $"LRP of '{target.Description}' on model '{model.Name}': the {(double.IsFinite(value) ? "relevance" : $"value ({value})")} of input row {row} is not finite.");
                }

                double gap = tokens.Sum() - value;
                var check = new CheckFigure("conservation gap", gap,
                    "Σ input relevance − F: what biases, ε and (AttnLRP) the softmax rule absorb or add between the target and the input.");
                var attribution = new Attribution(inputs.Texts[row], tokens, embedding, d, value, null, check);
                result[row] = new RowRelevance(attribution, output, layerRelevance, headRelevance, wordPart);
            }

            control.Advance(count);
        }

        return (result, inputs.BatchSize);
    }

    /// <summary>Ids, mask and token types of input rows [start, start + count), with their lengths and indices, for one batch.</summary>
    internal sealed record Rows(int[] Ids, int[] Mask, int[] Types, int[] InputRows, int[] Lengths)
    {
        public static Rows Of(TokenBatch inputs, int start, int count)
        {
            int seq = inputs.SequenceLength;
            return new Rows(
                inputs.InputIds.Span.Slice(start * seq, count * seq).ToArray(),
                inputs.AttentionMask.Span.Slice(start * seq, count * seq).ToArray(),
                inputs.TokenTypeIds.Span.Slice(start * seq, count * seq).ToArray(),
                Enumerable.Range(start, count).ToArray(),
                inputs.Lengths.Skip(start).Take(count).ToArray());
        }
    }
}
