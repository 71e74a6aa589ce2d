namespace Headlight.Kernels;

/// <summary>
/// Layer normalisation over the last axis, <c>y = (v − mean)·rstd·gamma + beta</c> with
/// <c>rstd = 1/√(var + ε)</c> and the variance divided by d (as BERT and GPT-2 do), optionally
/// fused with the residual add that precedes it (<c>v = x + residual</c>).
/// </summary>
/// <remarks>
/// The statistics are computed by the corrected two-pass method: a first mean <c>m₀</c>, then
/// <c>Σ(v − m₀)</c> and <c>Σ(v − m₀)²</c>, whose first sum corrects the mean and the variance. The
/// differences <c>v − m₀</c> carry no cancellation, so rows with a large common offset and
/// ε = 1e-12 (BERT) stay accurate where <c>E[v²] − E[v]²</c> would not.
/// </remarks>
public static partial class LayerNorm
{
    /// <summary>
    /// <c>y = LN(x)</c>, or <c>y = LN(x + residual)</c> when <paramref name="residual"/> is given, over the last axis.
    /// </summary>
    /// <param name="x">The input <c>[rows..., d]</c>.</param>
    /// <param name="gamma">The scale <c>[d]</c>.</param>
    /// <param name="beta">The shift <c>[d]</c>.</param>
    /// <param name="y">The output, shaped like <paramref name="x"/>; may be <paramref name="x"/> or <paramref name="residual"/>.</param>
    /// <param name="epsilon">Added to the variance; positive (BERT uses 1e-12, GPT-2 1e-5).</param>
    /// <param name="mean">Optional <c>[rows]</c> (any shape of that many elements): receives each row's mean, for <see cref="Backward"/>.</param>
    /// <param name="rstd">Optional <c>[rows]</c>: receives each row's <c>1/√(var + ε)</c>, for <see cref="Backward"/>.</param>
    /// <param name="residual">Optional, shaped like <paramref name="x"/>: added to <paramref name="x"/> before normalising.</param>
    /// <param name="sum">
    /// Optional, shaped like <paramref name="x"/>, only with <paramref name="residual"/>: receives <c>x + residual</c>,
    /// the normalised input that <see cref="Backward"/> needs. May be <paramref name="x"/> or <paramref name="residual"/>.
    /// </param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, or ε is not positive.</exception>
    public static void Forward(Tensor<float> x, Tensor<float> gamma, Tensor<float> beta, Tensor<float> y,
        float epsilon, Tensor<float>? mean = null, Tensor<float>? rstd = null,
        Tensor<float>? residual = null, Tensor<float>? sum = null)
    {
        ForwardWith(x, gamma, beta, y, epsilon, mean, rstd, residual, sum, perThread: null);
    }

    /// <summary>
    /// <see cref="Forward"/> with the ILGPU kernel chosen: <paramref name="perThread"/> true runs one thread per row
    /// without barriers, false one group per row; null chooses (tests run both kernels on every backend this way).
    /// </summary>
    internal static void ForwardWith(Tensor<float> x, Tensor<float> gamma, Tensor<float> beta, Tensor<float> y,
        float epsilon, Tensor<float>? mean, Tensor<float>? rstd, Tensor<float>? residual, Tensor<float>? sum, bool? perThread)
    {
        var args = new OpArgs("LayerNorm.Forward").Add("x", x).Add("gamma", gamma).Add("beta", beta).Add("y", y)
            .AddOptional("mean", mean).AddOptional("rstd", rstd).AddOptional("residual", residual).AddOptional("sum", sum)
            .Require(x.Shape.Rank >= 1 && x.Shape[-1] >= 1, "x must have at least one dimension, and its last (d) must be at least 1")
            .Require(y.Shape == x.Shape, "y must have x's shape")
            .Require(residual is null || residual.Shape == x.Shape, "residual must have x's shape")
            .Require(sum is null || residual is not null, "sum is written only when residual is given")
            .Require(sum is null || sum.Shape == x.Shape, "sum must have x's shape")
            .Require(sum is null || !ReferenceEquals(sum, y), "sum and y must be different tensors")
            .Require(float.IsFinite(epsilon) && epsilon > 0, $"epsilon must be positive and finite (got {epsilon})");
        int d = x.Shape[-1];
        args.Require(gamma.Shape.Rank == 1 && gamma.Length == d, $"gamma must be [d] = [{d}]")
            .Require(beta.Shape.Rank == 1 && beta.Length == d, $"beta must be [d] = [{d}]");
        int rows = args.ToInt32(x.Shape.Rows, "rows");
        args.Require(mean is null || mean.Length == rows, $"mean must have one element per row ({rows})")
            .Require(rstd is null || rstd.Length == rows, $"rstd must have one element per row ({rows})");
        if (rows == 0)
        {
            return;
        }

        args.Backend.LayerNormForward(x, gamma, beta, y, epsilon, mean, rstd, residual, sum, perThread, rows, d);
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: with <c>x̂ = (input − mean)·rstd</c> and <c>g = dy ⊙ gamma</c>,
    /// <c>dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂))</c> per row, <c>dgamma = Σ_rows dy ⊙ x̂</c>, <c>dbeta = Σ_rows dy</c>.
    /// </summary>
    /// <param name="dy">The gradient of the output <c>[rows..., d]</c>.</param>
    /// <param name="input">The normalised input: <c>x</c>, or <c>x + residual</c> (the forward's <c>sum</c>).</param>
    /// <param name="gamma">The scale <c>[d]</c>.</param>
    /// <param name="mean">The forward's saved means <c>[rows]</c>.</param>
    /// <param name="rstd">The forward's saved <c>1/√(var + ε)</c> <c>[rows]</c>.</param>
    /// <param name="dx">The input gradient, shaped like <paramref name="dy"/>; may be <paramref name="dy"/>.</param>
    /// <param name="dgamma">Optional <c>[d]</c>: the gradient of gamma.</param>
    /// <param name="dbeta">Optional <c>[d]</c>: the gradient of beta.</param>
    /// <param name="accumulate">Add to <paramref name="dgamma"/> and <paramref name="dbeta"/> instead of overwriting them.</param>
    /// <param name="accumulateInput">Add to <paramref name="dx"/> instead of overwriting it (a residual branch's gradient already there).</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped.</exception>
    public static void Backward(Tensor<float> dy, Tensor<float> input, Tensor<float> gamma,
        Tensor<float> mean, Tensor<float> rstd, Tensor<float> dx, Tensor<float>? dgamma, Tensor<float>? dbeta,
        bool accumulate = false, bool accumulateInput = false)
    {
        var args = new OpArgs("LayerNorm.Backward").Add("dy", dy).Add("input", input).Add("gamma", gamma)
            .Add("mean", mean).Add("rstd", rstd).Add("dx", dx).AddOptional("dgamma", dgamma).AddOptional("dbeta", dbeta)
            .Require(dy.Shape.Rank >= 1 && dy.Shape[-1] >= 1, "dy must have at least one dimension, and its last (d) must be at least 1")
            .Require(input.Shape == dy.Shape && dx.Shape == dy.Shape, "dy, input and dx must have the same shape");
        int d = dy.Shape[-1];
        int rows = args.ToInt32(dy.Shape.Rows, "rows");
        args.Require(gamma.Shape.Rank == 1 && gamma.Length == d, $"gamma must be [d] = [{d}]")
            .Require(dgamma is null || (dgamma.Shape.Rank == 1 && dgamma.Length == d), $"dgamma must be [d] = [{d}]")
            .Require(dbeta is null || (dbeta.Shape.Rank == 1 && dbeta.Length == d), $"dbeta must be [d] = [{d}]")
            .Require(mean.Length == rows && rstd.Length == rows, $"mean and rstd must have one element per row ({rows})")
            .Require(!ReferenceEquals(dx, input) || !accumulateInput, "dx may be input only when it is overwritten");

        args.Backend.LayerNormBackward(dy, input, gamma, mean, rstd, dx, dgamma, dbeta, accumulate, accumulateInput, rows, d);
    }

    #region LRP

    /// <summary>
    /// AttnLRP's identity rule through LayerNorm, in signal form (relevance <c>R = x ⊙ signal</c>): <c>1/σ</c> is held
    /// constant, which makes the layer linear in its input, and the relevance follows that linear map (ε = 0):
    /// <c>dx = rstd·(g − mean(g))</c> per row with <c>g = dy ⊙ gamma</c>. The shift beta absorbs its share, as a bias does.
    /// </summary>
    /// <param name="dy">The signal at the output <c>[rows..., d]</c>.</param>
    /// <param name="gamma">The scale <c>[d]</c>.</param>
    /// <param name="rstd">The forward's saved <c>1/√(var + ε)</c> <c>[rows]</c>.</param>
    /// <param name="dx">The signal at the input, shaped like <paramref name="dy"/>; may be <paramref name="dy"/> unless accumulating.</param>
    /// <param name="accumulateInput">Add to <paramref name="dx"/> instead of overwriting it (a residual branch's signal already there).</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped.</exception>
    public static void Relevance(Tensor<float> dy, Tensor<float> gamma, Tensor<float> rstd, Tensor<float> dx, bool accumulateInput = false)
    {
        var args = new OpArgs("LayerNorm.Relevance").Add("dy", dy).Add("gamma", gamma).Add("rstd", rstd).Add("dx", dx)
            .Require(dy.Shape.Rank >= 1 && dy.Shape[-1] >= 1, "dy must have at least one dimension, and its last (d) must be at least 1")
            .Require(dx.Shape == dy.Shape, "dy and dx must have the same shape")
            .Require(!ReferenceEquals(dx, dy) || !accumulateInput, "dx may be dy only when it is overwritten");
        int d = dy.Shape[-1];
        int rows = args.ToInt32(dy.Shape.Rows, "rows");
        args.Require(gamma.Shape.Rank == 1 && gamma.Length == d, $"gamma must be [d] = [{d}]")
            .Require(rstd.Length == rows, $"rstd must have one element per row ({rows})");
        if (rows == 0)
        {
            return;
        }

        args.Backend.LayerNormRelevance(dy, gamma, rstd, dx, accumulateInput, rows, d);
    }

    #endregion
}

/// <summary>LayerNorm's entry points on each backend (LayerNorm.Cpu.cs, LayerNorm.Ilgpu.cs).</summary>
internal abstract partial class Backend
{
    /// <summary>
    /// <c>y = LN(x)</c> or <c>LN(x + residual)</c> over rows [rows (positive), d]; operands validated. <paramref name="perThread"/>
    /// picks the ILGPU kernel (null: the backend chooses).
    /// </summary>
    internal abstract void LayerNormForward(Tensor<float> x, Tensor<float> gamma, Tensor<float> beta, Tensor<float> y, float epsilon,
        Tensor<float>? mean, Tensor<float>? rstd, Tensor<float>? residual, Tensor<float>? sum, bool? perThread, int rows, int d);

    /// <summary>dx [rows, d] and, when given, dgamma and dbeta [d] (cleared or kept, as accumulate says, when rows is 0).</summary>
    internal abstract void LayerNormBackward(Tensor<float> dy, Tensor<float> input, Tensor<float> gamma, Tensor<float> mean, Tensor<float> rstd,
        Tensor<float> dx, Tensor<float>? dgamma, Tensor<float>? dbeta, bool accumulate, bool accumulateInput, int rows, int d);

    /// <summary>AttnLRP's identity rule: <c>dx = rstd·(g − mean(g))</c> per row with <c>g = dy ⊙ gamma</c>, rows positive.</summary>
    internal abstract void LayerNormRelevance(Tensor<float> dy, Tensor<float> gamma, Tensor<float> rstd, Tensor<float> dx, bool accumulateInput, int rows, int d);
}
