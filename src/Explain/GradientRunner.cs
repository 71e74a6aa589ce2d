using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain;

/// <summary>
/// Runs many variants ("jobs") of the input rows — noisy copies, points along a path — through the model
/// forward and backward through <see cref="PassRunner"/>. Each job is one row whose word embeddings the
/// caller fills (or the input row's own, looked up on the device); it gets back the target's value and d(target)/d(word embeddings), and
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
    /// only the values are computed (the gradient handed to <paramref name="consume"/> is empty). Without
    /// <paramref name="fill"/> each job runs its input row's own word embeddings, looked up on the device.
    /// </summary>
    /// <exception cref="InvalidOperationException">A value or gradient is not finite.</exception>
    public static int Run(Model model, TokenBatch inputs, ITarget target, int jobs, Func<int, int> inputOf, FillEmbeddings? fill, Consume consume, long memoryBudget, bool gates = false, bool backward = true, RunControl? control = null)
    {
        control ??= RunControl.None;
        var config = model.Config;
        int seq = inputs.SequenceLength;
        int d = config.Hidden;
        int rowSize = seq * d;
        var shape = new PassRequest { Rows = 1, SequenceLength = seq, Backward = new BackwardOptions { HeadGates = gates } };
        float[] embeddings = [], seed = [], gradient = [], gateHost = [];
        int[] idRows = [], maskRows = [], typeRows = [], inputRows = [], lengths = [];
        double[] values = [];
        int layers = config.Layers;
        int heads = config.Heads;
        var gateRow = gates ? new float[layers * heads] : [];

        PassRequest Build(int start, int count, int chunk)
        {
            if (inputRows.Length != chunk)
            {
                (idRows, maskRows, typeRows) = (new int[chunk * seq], new int[chunk * seq], new int[chunk * seq]);
                (inputRows, lengths, values) = (new int[chunk], new int[chunk], new double[chunk]);
                (seed, gradient) = (new float[chunk * rowSize], new float[chunk * rowSize]);
                embeddings = fill is null ? [] : new float[chunk * rowSize];
                gateHost = gates ? new float[layers * chunk * heads] : [];
            }

            for (int r = 0; r < chunk; r++)
            {
                int input = inputOf(start + Math.Min(r, count - 1));
                inputs.InputIds.Span.Slice(input * seq, seq).CopyTo(idRows.AsSpan(r * seq, seq));
                inputs.AttentionMask.Span.Slice(input * seq, seq).CopyTo(maskRows.AsSpan(r * seq, seq));
                inputs.TokenTypeIds.Span.Slice(input * seq, seq).CopyTo(typeRows.AsSpan(r * seq, seq));
                inputRows[r] = input;
                lengths[r] = inputs.Lengths[input];
                if (fill is null)
                {
                    continue;
                }

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

            return new PassRequest
            {
                Rows = chunk,
                SequenceLength = seq,
                InputIds = idRows,
                AttentionMask = maskRows,
                TokenTypeIds = typeRows,
                TokenEmbeddings = embeddings,
                Backward = shape.Backward,
            };
        }

        void Use(ModelPass pass, int start, int count)
        {
            Array.Clear(seed);
            values.AsSpan().Fill(double.NaN);
            target.Evaluate(new TargetContext(model, pass.LastHiddenState, pass.Rows, seq, maskRows, inputRows, lengths, seed, values));
            if (backward)
            {
                pass.Backward(seed);
                pass.InputSignal.CopyTo(gradient);
                if (gates)
                {
                    pass.HeadGateSignal.CopyTo(gateHost);
                }
            }
        }

        void Done(int start, int count)
        {
            int chunk = inputRows.Length;
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
        }

        return PassRunner.Run(model, jobs, shape, memoryBudget, equalBatches: true, control, Build, Use, Done);
    }

    /// <summary>
    /// The word embeddings <c>[seq, d]</c> of every input row (padding positions get their ids' rows too), gathered
    /// on the device in one op and read back once.
    /// </summary>
    public static float[][] InputEmbeddings(Model model, TokenBatch inputs)
    {
        int seq = inputs.SequenceLength;
        int d = model.Config.Hidden;
        var ids = inputs.InputIds.Span;
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)model.Config.VocabSize)
            {
                throw new ArgumentException($"Token id {ids[i]} at row {i / seq}, position {i % seq} is outside the vocabulary [0, {model.Config.VocabSize}) of model '{model.Name}'.", nameof(inputs));
            }
        }

        var table = model.WordEmbeddings;
        using var deviceIds = model.Device.FromHost<int>(ids, inputs.BatchSize, seq);
        using var gathered = model.Device.Allocate<float>(inputs.BatchSize, seq, d);
        Embedding.Gather(table, deviceIds, gathered);
        var host = gathered.ToArray();
        return Enumerable.Range(0, inputs.BatchSize).Select(r => host.AsSpan(r * seq * d, seq * d).ToArray()).ToArray();
    }

    /// <summary>The word embeddings <c>[seq, d]</c> of one input row (see <see cref="InputEmbeddings(Model, TokenBatch)"/>).</summary>
    public static float[] InputEmbeddings(Model model, TokenBatch inputs, int row) => InputEmbeddings(model, inputs)[row];

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
