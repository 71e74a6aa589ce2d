using System.Diagnostics;
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
    public static (RowRelevance[] Rows, int Passes) Run(Model model, TokenBatch inputs, ITarget target, LrpOptions options, RunControl control)
    {
        var config = model.Config;
        int seq = inputs.SequenceLength;
        int d = config.Hidden;
        int layers = config.Layers;
        int heads = config.Heads;
        var backward = new BackwardOptions
        {
            Rule = options.Rules == LrpRules.CpLrp ? BackwardRule.CpLrp : BackwardRule.AttnLrp,
            Epsilon = (float)options.Epsilon,
            HeadGates = true,
            Boundaries = true,
        };
        var shape = new PassRequest { Rows = 1, SequenceLength = seq, Backward = backward };
        var result = new RowRelevance[inputs.BatchSize];
        PassRunner.Rows batch = null!;
        float[] seed = [], signal = [], sum = [], words = [], hidden = [], streams = [], gates = [];
        double[] values = [];

        PassRequest Build(int start, int count, int rows)
        {
            batch = PassRunner.Rows.Of(inputs, start, count);
            seed = new float[count * seq * d];
            values = new double[count];
            values.AsSpan().Fill(double.NaN);
            return batch.Request(seq) with { Backward = backward };
        }

        void Use(ModelPass pass, int start, int count)
        {
            var context = new TargetContext(model, pass.LastHiddenState, count, seq, batch.Mask, batch.InputRows, batch.Lengths, seed, values);
            LrpHeads.Evaluate(target, context, options.Epsilon);
            hidden = context.LastHiddenState.ToArray();
            pass.Backward(seed);
            signal = pass.InputSignal.ToArray();
            sum = pass.EmbeddingSum.ToArray();
            words = pass.TokenEmbeddings.ToArray();
            streams = pass.BoundarySignal.ToArray();
            gates = pass.HeadGateSignal.ToArray();
        }

        void Done(int start, int count)
        {
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
        }

        int passes = PassRunner.Run(model, inputs.BatchSize, shape, options.MemoryBudgetBytes, equalBatches: false, control, Build, Use, Done);
        return (result, passes);
    }
}
