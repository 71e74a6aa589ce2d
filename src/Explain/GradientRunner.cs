using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain;

/// <summary>
/// Runs many variants ("jobs") of the input rows — noisy copies, points along a path — through the model
/// forward and backward, as many per batch as the memory budget allows. Each job is one row whose word
/// embeddings the caller fills; it gets back the target's value and d(target)/d(word embeddings), and
/// optionally the head-gate gradients. Batches all have one shape (the last is topped up with a repeated
/// row), so the model's cached buffers are made once.
/// </summary>
internal static class GradientRunner
{
    /// <summary>Writes job <paramref name="job"/>'s word embeddings <c>[seq, d]</c>.</summary>
    public delegate void FillEmbeddings(int job, Span<float> embeddings);

    /// <summary>Receives job <paramref name="job"/>'s value, its gradient <c>[seq, d]</c> and, when asked for, its gate gradients <c>[layer, head]</c>.</summary>
    public delegate void Consume(int job, double value, ReadOnlySpan<float> gradient, ReadOnlySpan<float> gates);

    /// <summary>
    /// Runs every job; returns the number of rows run (padding rows included). Without <paramref name="backward"/>
    /// only the values are computed (the gradient handed to <paramref name="consume"/> is empty).
    /// </summary>
    /// <exception cref="InvalidOperationException">A value or gradient is not finite.</exception>
    public static int Run(Model model, TokenBatch inputs, ITarget target, int jobs, Func<int, int> inputOf, FillEmbeddings fill, Consume consume, long memoryBudget, bool gates = false, bool backward = true, RunControl? control = null)
    {
        control ??= RunControl.None;
        var config = model.Config;
        int seq = inputs.SequenceLength;
        int d = config.Hidden;
        int rowSize = seq * d;
        long perRow = TransformerBackward.BytesPerRow(config, seq);
        int chunk = ChunkRows(jobs, (int)Math.Clamp(memoryBudget / perRow, 1, jobs));

        var ids = new int[chunk * seq];
        var mask = new int[chunk * seq];
        var types = new int[chunk * seq];
        var inputRows = new int[chunk];
        var lengths = new int[chunk];
        var embeddings = new float[chunk * rowSize];
        var seed = new float[chunk * rowSize];
        var gradient = new float[chunk * rowSize];
        var values = new double[chunk];
        int layers = config.Layers;
        int heads = config.Heads;
        var gateHost = gates ? new float[layers * chunk * heads] : [];
        var gateRow = gates ? new float[layers * heads] : [];
        var inputIds = inputs.InputIds.Span;
        var inputMask = inputs.AttentionMask.Span;
        var inputTypes = inputs.TokenTypeIds.Span;
        int passes = 0;

        for (int start = 0; start < jobs; start += chunk)
        {
            control.ThrowIfCancelled();
            int count = Math.Min(chunk, jobs - start);
            for (int r = 0; r < chunk; r++)
            {
                int input = inputOf(start + Math.Min(r, count - 1));
                inputIds.Slice(input * seq, seq).CopyTo(ids.AsSpan(r * seq, seq));
                inputMask.Slice(input * seq, seq).CopyTo(mask.AsSpan(r * seq, seq));
                inputTypes.Slice(input * seq, seq).CopyTo(types.AsSpan(r * seq, seq));
                inputRows[r] = input;
                lengths[r] = inputs.Lengths[input];
                var rowEmbeddings = embeddings.AsSpan(r * rowSize, rowSize);
                if (r < count)
                {
                    fill(start + r, rowEmbeddings);
                }
                else
                {
                    embeddings.AsSpan((count - 1) * rowSize, rowSize).CopyTo(rowEmbeddings);
                }
            }

            lock (model.Gate)
            {
                var state = model.ForwardForBackward(ids, mask, types, chunk, seq, embeddings);
                Array.Clear(seed);
                values.AsSpan().Fill(double.NaN);
                var context = new TargetContext(model, TransformerForward.LastHidden(config, state), chunk, seq, mask, inputRows, lengths, seed, values);
                target.Evaluate(context);
                if (backward)
                {
                    var grads = state.BackwardBuffers(config);
                    grads.Seed.CopyFrom(seed);
                    TransformerBackward.Run(config, model.Weights, state, grads, BackwardRules.Gradient, gates);
                    grads.TokenEmbeds.CopyTo(gradient);
                    if (gates)
                    {
                        grads.Gates.CopyTo(gateHost);
                    }
                }
            }

            passes += chunk;
            for (int r = 0; r < count; r++)
            {
                var rowGradient = backward ? gradient.AsSpan(r * rowSize, rowSize) : [];
                if (!double.IsFinite(values[r]) || !AllFinite(rowGradient))
                {
                    throw new InvalidOperationException(
                        $"Explaining '{target.Description}' on model '{model.Name}': the {(double.IsFinite(values[r]) ? "gradient" : $"value ({values[r]})")} of input row {inputRows[r]} is not finite.");
                }

                if (gates && backward)
                {
                    for (int l = 0; l < layers; l++)
                    {
                        gateHost.AsSpan(((l * chunk) + r) * heads, heads).CopyTo(gateRow.AsSpan(l * heads, heads));
                    }
                }

                consume(start + r, values[r], rowGradient, gateRow);
            }

            control.Advance(count);
        }

        return passes;
    }

    /// <summary>
    /// Rows per batch: at most <paramref name="maxRows"/>, all batches the same size, and as few padding rows as
    /// possible (52 jobs at most 19 per batch: 4 × 13, not 3 × 18 with 2 rows wasted); fewer batches on a tie.
    /// </summary>
    internal static int ChunkRows(int jobs, int maxRows)
    {
        int fewest = (jobs + maxRows - 1) / maxRows;
        int best = (jobs + fewest - 1) / fewest;
        long bestTotal = (long)best * fewest;
        for (int batches = fewest + 1; batches <= Math.Min(jobs, 2 * fewest) && bestTotal > jobs; batches++)
        {
            int rows = (jobs + batches - 1) / batches;
            if ((long)rows * batches < bestTotal)
            {
                best = rows;
                bestTotal = (long)rows * batches;
            }
        }

        return best;
    }

    /// <summary>The word embeddings <c>[seq, d]</c> of one input row, looked up on the host (padding positions get their ids' rows too).</summary>
    public static float[] InputEmbeddings(Model model, TokenBatch inputs, int row)
    {
        int seq = inputs.SequenceLength;
        int d = model.Config.Hidden;
        var result = new float[seq * d];
        var ids = inputs.InputIds.Span.Slice(row * seq, seq);
        for (int t = 0; t < seq; t++)
        {
            int id = ids[t];
            if ((uint)id >= (uint)model.Config.VocabSize)
            {
                throw new ArgumentException($"Token id {id} at row {row}, position {t} is outside the vocabulary [0, {model.Config.VocabSize}) of model '{model.Name}'.", nameof(inputs));
            }

            model.Weights.TokenEmbeddings.Slice((long)id * d, d).CopyTo(result.AsSpan(t * d, d));
        }

        return result;
    }

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        foreach (float v in values)
        {
            if (!float.IsFinite(v))
            {
                return false;
            }
        }

        return true;
    }
}
