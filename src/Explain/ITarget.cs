using System.Runtime.CompilerServices;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain;

/// <summary>
/// The scalar an explanation explains, one value per input row: a class logit, a next-token logit, a
/// similarity, one output unit. Implement it to explain a quantity of your own: <see cref="Evaluate"/>
/// reads the last hidden state of a batch and writes, per row, the value and its gradient with respect
/// to that hidden state (for decoders, the output of the final LayerNorm); the backward pass takes it
/// from there.
/// </summary>
/// <remarks>
/// <see cref="Prepare"/> runs once per explanation, before any batch, and may run the model (to embed a
/// reference text, say). <see cref="Evaluate"/> runs once per batch of rows; a row is always a variant
/// (noisy, interpolated) of one input row, given by <see cref="TargetContext.InputRow"/>.
/// </remarks>
public interface ITarget
{
    /// <summary>What is explained, in words, e.g. <c>logit of class 1</c>.</summary>
    string Description { get; }

    /// <summary>Checks the target fits the model and the inputs, and prepares what it needs.</summary>
    /// <exception cref="TargetException">The target does not fit (wrong kind of model, index out of range, ...).</exception>
    void Prepare(Model model, TokenBatch inputs);

    /// <summary>Writes every row's value into <see cref="TargetContext.Values"/> and its gradient through <see cref="TargetContext.Seed"/>.</summary>
    void Evaluate(TargetContext context);
}

/// <summary>A target that does not fit the model or the inputs: a class index out of range, a similarity target on a decoder, a token id outside the vocabulary.</summary>
public sealed class TargetException : ArgumentException
{
    /// <summary>Creates the exception with a message that names the target and what it needed.</summary>
    public TargetException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and the cause.</summary>
    public TargetException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>Creates the exception with no message.</summary>
    public TargetException() { }
}

/// <summary>
/// One batch as a target sees it: the model's last hidden state <c>[rows, seq, d]</c> (for decoders after
/// the final LayerNorm), the key mask, and where to write each row's value and gradient.
/// </summary>
public sealed class TargetContext
{
    private readonly Tensor<float> lastHidden;
    private readonly int[] mask;
    private readonly int[] inputRows;
    private readonly int[] lengths;
    private readonly float[] seed;
    private readonly double[] values;
    private float[]? hostHidden;

    // A null seed means no gradient is wanted: Seed then hands out one scratch vector whose writes are dropped.
    internal TargetContext(Model model, Tensor<float> lastHidden, int rows, int seq, int[] mask, int[] inputRows, int[] lengths, float[]? seed, double[] values)
    {
        Model = model;
        this.lastHidden = lastHidden;
        Rows = rows;
        SequenceLength = seq;
        Hidden = model.Config.Hidden;
        this.mask = mask;
        this.inputRows = inputRows;
        this.lengths = lengths;
        WantsGradient = seed is not null;
        this.seed = seed ?? new float[model.Config.Hidden];
        this.values = values;
    }

    /// <summary>The model.</summary>
    public Model Model { get; }

    /// <summary>Rows in this batch.</summary>
    public int Rows { get; }

    /// <summary>Tokens per row (padded).</summary>
    public int SequenceLength { get; }

    /// <summary>Width of the hidden state, d.</summary>
    public int Hidden { get; }

    /// <summary>
    /// False when only the values are needed (Kernel SHAP): <see cref="ITarget.Evaluate"/> may then skip the
    /// gradient, and <see cref="Seed"/> returns scratch whose contents are thrown away.
    /// </summary>
    public bool WantsGradient { get; }

    /// <summary>The key mask <c>[rows, seq]</c>: 1 for real tokens, 0 for padding (and for tokens Kernel SHAP drops from attention).</summary>
    public ReadOnlySpan<int> AttentionMask => mask.AsSpan(0, Rows * SequenceLength);

    /// <summary>The whole last hidden state <c>[rows, seq, d]</c>, copied to the host on first use.</summary>
    public ReadOnlySpan<float> LastHiddenState => hostHidden ??= lastHidden.ToArray();

    /// <summary>One row's values, one per row, written by <see cref="ITarget.Evaluate"/>.</summary>
    public Span<double> Values => values.AsSpan(0, Rows);

    /// <summary>The input row (of the explained batch) that row <paramref name="row"/> is a variant of.</summary>
    public int InputRow(int row) => inputRows[CheckRow(row)];

    /// <summary>The number of real (unpadded) tokens of row <paramref name="row"/>.</summary>
    public int Length(int row) => lengths[CheckRow(row)];

    /// <summary>The hidden state <c>[d]</c> of one token; reads only that vector from the device unless the whole state was read.</summary>
    public ReadOnlySpan<float> HiddenAt(int row, int position)
    {
        long offset = Offset(row, position);
        if (hostHidden is not null)
        {
            return hostHidden.AsSpan((int)offset, Hidden);
        }

        var vector = new float[Hidden];
        lastHidden.Slice(offset, Hidden).CopyTo(vector);
        return vector;
    }

    /// <summary>
    /// The gradient of row <paramref name="row"/>'s value with respect to the hidden state of one token,
    /// <c>[d]</c>, zero until written. Positions a target does not touch keep gradient 0.
    /// </summary>
    public Span<float> Seed(int row, int position)
    {
        long offset = Offset(row, position);
        if (!WantsGradient)
        {
            Array.Clear(seed);
            return seed;
        }

        return seed.AsSpan((int)offset, Hidden);
    }

    private long Offset(int row, int position)
    {
        CheckRow(row);
        if ((uint)position >= (uint)SequenceLength)
        {
            throw new ArgumentOutOfRangeException(nameof(position), $"Position {position} is outside [0, {SequenceLength}).");
        }

        return (((long)row * SequenceLength) + position) * Hidden;
    }

    private int CheckRow(int row) => (uint)row < (uint)Rows ? row : throw new ArgumentOutOfRangeException(nameof(row), $"Row {row} is outside [0, {Rows}).");
}

/// <summary>Host copies of weights the targets read (pooler, classifier, embedding rows), made once per weight tensor.</summary>
internal static class HostWeights
{
    private static readonly ConditionalWeakTable<Tensor<float>, float[]> Copies = new();

    public static float[] Get(Tensor<float> weight) => Copies.GetValue(weight, static w => w.ToArray());

    /// <summary>One row <c>[d]</c> of an embedding table <c>[vocab, d]</c>.</summary>
    public static float[] Row(Tensor<float> table, int row)
    {
        int d = table.Shape[-1];
        var values = new float[d];
        table.Slice((long)row * d, d).CopyTo(values);
        return values;
    }
}
