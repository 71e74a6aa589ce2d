namespace Headlight.Kernels;

/// <summary>
/// Softmax over the last axis with a scale, an optional key mask and optional causal masking, as
/// attention scores need. A tensor <c>[outer..., rows, cols]</c> is a stack of <c>[rows, cols]</c>
/// matrices: rows are queries, columns keys. Masked entries get exactly 0, and a row with every
/// entry masked becomes all 0, never NaN.
/// </summary>
public static partial class Softmax
{
    /// <summary>
    /// <c>y = softmax(scale·x)</c> per row over the allowed columns: column j of row i of matrix o is allowed
    /// when <c>keyMask[b, j] ≠ 0</c> with <c>b = o / (outer / batch)</c>, and, when <paramref name="causal"/>,
    /// when <c>j ≤ i + (cols − rows)</c> (the last query sees every key).
    /// </summary>
    /// <param name="x">Scores of rank 2 or more, <c>[outer..., rows, cols]</c>; e.g. <c>[batch, heads, q, k]</c>.</param>
    /// <param name="y">The probabilities, shaped like <paramref name="x"/>; may be <paramref name="x"/>.</param>
    /// <param name="scale">Multiplies the scores before the softmax (e.g. <c>1/√headDim</c>).</param>
    /// <param name="keyMask">Optional <c>[batch, cols]</c>, 1 = keep, 0 = masked; batch must divide the outer count.</param>
    /// <param name="causal">Mask the keys after each query (aligned so that the last query is last in the keys).</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, or the scale is not finite.</exception>
    public static void Forward(Tensor<float> x, Tensor<float> y, float scale = 1f, Tensor<int>? keyMask = null, bool causal = false)
    {
        var args = new OpArgs("Softmax.Forward").Add("x", x).Add("y", y).AddOptional("keyMask", keyMask)
            .Require(x.Shape.Rank >= 2, "x must have rank 2 or more: [outer..., rows, cols]")
            .Require(y.Shape == x.Shape, "y must have x's shape")
            .Require(float.IsFinite(scale), $"scale must be finite (got {scale})");
        int rows = x.Shape[-2];
        int cols = x.Shape[-1];
        int outer = rows == 0 ? 0 : args.ToInt32(x.Shape.Rows / rows, "outer");
        int perBatch = 1;
        if (keyMask is not null)
        {
            args.Require(keyMask.Shape.Rank == 2 && keyMask.Shape[1] == cols, $"keyMask must be [batch, cols] with cols = {cols}")
                .Require(keyMask.Shape[0] >= 1 && outer % keyMask.Shape[0] == 0,
                    $"keyMask's batch ({keyMask.Shape[0]}) must divide the number of [rows, cols] matrices ({outer})");
            perBatch = Math.Max(1, outer / keyMask.Shape[0]);
        }

        long totalRows = (long)outer * rows;
        if (totalRows == 0 || cols == 0)
        {
            return;
        }

        args.Backend.SoftmaxForward(x, y, keyMask, rows, cols, perBatch, args.ToInt32(totalRows, "outer·rows"), scale, causal);
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: <c>dx = scale · y ⊙ (dy − Σ_j dy·y)</c> per row. Masked entries, where
    /// <c>y = 0</c>, get 0.
    /// </summary>
    /// <param name="y">The forward's output, of rank 1 or more (rows over the last axis).</param>
    /// <param name="dy">The gradient of <paramref name="y"/>.</param>
    /// <param name="dx">The gradient of the scores <c>x</c>; may be <paramref name="dy"/> or <paramref name="y"/>.</param>
    /// <param name="scale">The forward's scale.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, or the scale is not finite.</exception>
    public static void Backward(Tensor<float> y, Tensor<float> dy, Tensor<float> dx, float scale = 1f)
    {
        var args = new OpArgs("Softmax.Backward").Add("y", y).Add("dy", dy).Add("dx", dx)
            .Require(y.Shape.Rank >= 1, "y must have at least one dimension")
            .Require(dy.Shape == y.Shape && dx.Shape == y.Shape, "y, dy and dx must have the same shape")
            .Require(float.IsFinite(scale), $"scale must be finite (got {scale})");
        int cols = y.Shape[-1];
        int rows = args.ToInt32(y.Shape.Rows, "rows");
        if (rows == 0 || cols == 0)
        {
            return;
        }

        args.Backend.SoftmaxBackward(y, dy, dx, rows, cols, scale);
    }

    #region LRP

    /// <summary>
    /// AttnLRP's softmax rule (a Taylor expansion at the input, bias included), on relevance itself:
    /// <c>R_x = (scale·x) ⊙ (R_y − y·Σ_j R_y)</c> per row over the allowed columns; masked columns get 0. In signal
    /// form (relevance = input ⊙ signal) the rule equals the gradient, which is <see cref="Backward"/>; this form
    /// serves relevance passes that carry relevance explicitly.
    /// </summary>
    /// <param name="x">The forward's scores <c>[outer..., rows, cols]</c>.</param>
    /// <param name="y">The forward's probabilities, shaped like <paramref name="x"/>.</param>
    /// <param name="relevance">The relevance at the output, shaped like <paramref name="x"/>.</param>
    /// <param name="result">Receives the relevance at the scores <c>scale·x</c>; may be <paramref name="relevance"/>.</param>
    /// <param name="scale">The forward's scale.</param>
    /// <param name="keyMask">The forward's key mask, or null.</param>
    /// <param name="causal">The forward's causal flag.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, or the scale is not finite.</exception>
    public static void Relevance(Tensor<float> x, Tensor<float> y, Tensor<float> relevance, Tensor<float> result,
        float scale = 1f, Tensor<int>? keyMask = null, bool causal = false)
    {
        var args = new OpArgs("Softmax.Relevance").Add("x", x).Add("y", y).Add("relevance", relevance).Add("result", result)
            .AddOptional("keyMask", keyMask)
            .Require(x.Shape.Rank >= 2, "x must have rank 2 or more: [outer..., rows, cols]")
            .Require(y.Shape == x.Shape && relevance.Shape == x.Shape && result.Shape == x.Shape, "x, y, relevance and result must have the same shape")
            .Require(!ReferenceEquals(result, x) && !ReferenceEquals(result, y), "result must not be x or y")
            .Require(float.IsFinite(scale), $"scale must be finite (got {scale})");
        int rows = x.Shape[-2];
        int cols = x.Shape[-1];
        int outer = rows == 0 ? 0 : args.ToInt32(x.Shape.Rows / rows, "outer");
        int perBatch = 1;
        if (keyMask is not null)
        {
            args.Require(keyMask.Shape.Rank == 2 && keyMask.Shape[1] == cols, $"keyMask must be [batch, cols] with cols = {cols}")
                .Require(keyMask.Shape[0] >= 1 && outer % keyMask.Shape[0] == 0,
                    $"keyMask's batch ({keyMask.Shape[0]}) must divide the number of [rows, cols] matrices ({outer})");
            perBatch = Math.Max(1, outer / keyMask.Shape[0]);
        }

        long totalRows = (long)outer * rows;
        if (totalRows == 0 || cols == 0)
        {
            return;
        }

        args.Backend.SoftmaxRelevance(x, y, relevance, result, keyMask, rows, cols, perBatch, args.ToInt32(totalRows, "outer·rows"), scale, causal);
    }

    #endregion
}

/// <summary>Softmax's entry points on each backend (Softmax.Cpu.cs, Softmax.Ilgpu.cs).</summary>
internal abstract partial class Backend
{
    /// <summary>
    /// <c>y = softmax(scale·x)</c> over the allowed columns of each of the <paramref name="count"/> rows (outer·rows, positive;
    /// cols positive) of x [outer, rows, cols]; keyMask [batch, cols] serves <paramref name="perBatch"/> matrices per batch.
    /// </summary>
    internal abstract void SoftmaxForward(Tensor<float> x, Tensor<float> y, Tensor<int>? keyMask,
        int rows, int cols, int perBatch, int count, float scale, bool causal);

    /// <summary><c>dx = scale · y ⊙ (dy − Σ_j dy·y)</c> per row of y [rows, cols] (both positive).</summary>
    internal abstract void SoftmaxBackward(Tensor<float> y, Tensor<float> dy, Tensor<float> dx, int rows, int cols, float scale);

    /// <summary>AttnLRP's softmax rule on relevance, over the same rows and masks as <see cref="SoftmaxForward"/>.</summary>
    internal abstract void SoftmaxRelevance(Tensor<float> x, Tensor<float> y, Tensor<float> relevance, Tensor<float> result, Tensor<int>? keyMask,
        int rows, int cols, int perBatch, int count, float scale, bool causal);
}
