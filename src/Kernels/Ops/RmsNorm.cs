namespace Headlight.Kernels;

/// <summary>
/// RMSNorm over the last dimension (Llama, Qwen2): <c>y = x · rstd · gamma</c>, <c>rstd = 1/√(mean(x²) + ε)</c>, the
/// statistics in float32; the weight is used as is (not <c>1 + weight</c>), with no bias and no mean subtraction.
/// </summary>
public static partial class RmsNorm
{
    /// <summary><c>y = x · rstd · gamma</c> per row of the last axis.</summary>
    /// <param name="x">The input <c>[rows..., d]</c>.</param>
    /// <param name="gamma">The weight <c>[d]</c>.</param>
    /// <param name="y">The output, shaped like <paramref name="x"/>; may be <paramref name="x"/>.</param>
    /// <param name="epsilon">Added to the mean square; positive (Llama uses 1e-5 or 1e-6).</param>
    /// <param name="rstd">Optional <c>[rows]</c> (any shape of that many elements, rows = x.Length / d): receives each row's <c>1/√(mean(x²) + ε)</c>, for <see cref="Backward"/>.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, or ε is not positive.</exception>
    public static void Forward(Tensor<float> x, Tensor<float> gamma, Tensor<float> y, float epsilon, Tensor<float>? rstd = null)
    {
        var args = new OpArgs("RmsNorm.Forward").Add("x", x).Add("gamma", gamma).Add("y", y).AddOptional("rstd", rstd)
            .Require(x.Shape.Rank >= 1 && x.Shape[-1] >= 1, "x must have at least one dimension, and its last (d) must be at least 1")
            .Require(y.Shape == x.Shape, "y must have x's shape")
            .Require(float.IsFinite(epsilon) && epsilon > 0, $"epsilon must be positive and finite (got {epsilon})");
        int d = x.Shape[-1];
        int rows = args.ToInt32(x.Shape.Rows, "rows");
        args.Require(gamma.Shape.Rank == 1 && gamma.Length == d, $"gamma must be [d] = [{d}]")
            .Require(rstd is null || rstd.Length == rows, $"rstd must have one element per row ({rows})");
        if (rows == 0)
        {
            return;
        }

        args.Backend.RmsNormForward(x, gamma, y, epsilon, rstd, rows, d);
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: with <c>x̂ = input·rstd</c> and <c>g = dOutput ⊙ gamma</c>,
    /// <c>dInput = rstd·(g − x̂·mean(g ⊙ x̂))</c> per row. As in <see cref="LayerNorm.Backward"/>, the parameter gradient
    /// is accumulated: <paramref name="dGamma"/> gets <c>Σ_rows dOutput ⊙ x̂</c> added to what it holds (clear it first
    /// for a fresh gradient), while <paramref name="dInput"/> is overwritten unless <paramref name="accumulateInput"/>.
    /// </summary>
    /// <param name="dOutput">The gradient of the output <c>[rows..., d]</c>.</param>
    /// <param name="input">The forward's input <c>x</c>, shaped like <paramref name="dOutput"/>.</param>
    /// <param name="gamma">The weight <c>[d]</c>.</param>
    /// <param name="rstd">The forward's saved <c>1/√(mean(x²) + ε)</c> <c>[rows]</c>.</param>
    /// <param name="dInput">The input gradient, shaped like <paramref name="dOutput"/>; may be <paramref name="dOutput"/>, or <paramref name="input"/> when overwritten.</param>
    /// <param name="dGamma">Optional <c>[d]</c>: <c>Σ_rows dOutput ⊙ input ⊙ rstd</c> is added to it.</param>
    /// <param name="accumulateInput">Add to <paramref name="dInput"/> instead of overwriting it (a residual branch's gradient already there).</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped.</exception>
    public static void Backward(Tensor<float> dOutput, Tensor<float> input, Tensor<float> gamma, Tensor<float> rstd,
        Tensor<float> dInput, Tensor<float>? dGamma = null, bool accumulateInput = false)
    {
        var args = new OpArgs("RmsNorm.Backward").Add("dOutput", dOutput).Add("input", input).Add("gamma", gamma)
            .Add("rstd", rstd).Add("dInput", dInput).AddOptional("dGamma", dGamma)
            .Require(dOutput.Shape.Rank >= 1 && dOutput.Shape[-1] >= 1, "dOutput must have at least one dimension, and its last (d) must be at least 1")
            .Require(input.Shape == dOutput.Shape && dInput.Shape == dOutput.Shape, "dOutput, input and dInput must have the same shape");
        int d = dOutput.Shape[-1];
        int rows = args.ToInt32(dOutput.Shape.Rows, "rows");
        args.Require(gamma.Shape.Rank == 1 && gamma.Length == d, $"gamma must be [d] = [{d}]")
            .Require(dGamma is null || (dGamma.Shape.Rank == 1 && dGamma.Length == d), $"dGamma must be [d] = [{d}]")
            .Require(rstd.Length == rows, $"rstd must have one element per row ({rows})")
            .Require(!ReferenceEquals(dInput, input) || !accumulateInput, "dInput may be input only when it is overwritten");
        if (rows == 0)
        {
            return;
        }

        args.Backend.RmsNormBackward(dOutput, input, gamma, rstd, dInput, dGamma, accumulateInput, rows, d);
    }

    #region LRP

    /// <summary>
    /// The LRP identity rule through RMSNorm in signal form (relevance <c>R = x ⊙ signal</c>), with rstd held constant, which
    /// makes the layer the diagonal linear map <c>y = x ⊙ gamma·rstd</c>: <c>dInput = dOutput ⊙ gamma·rstd</c>, so
    /// <c>x ⊙ dInput = y ⊙ dOutput</c> exactly.
    /// </summary>
    /// <param name="dOutput">The signal at the output <c>[rows..., d]</c>.</param>
    /// <param name="gamma">The weight <c>[d]</c>.</param>
    /// <param name="rstd">The forward's saved <c>1/√(mean(x²) + ε)</c> <c>[rows]</c>.</param>
    /// <param name="dInput">The signal at the input, shaped like <paramref name="dOutput"/>; may be <paramref name="dOutput"/> unless accumulating.</param>
    /// <param name="accumulate">Add to <paramref name="dInput"/> instead of overwriting it.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped.</exception>
    public static void Relevance(Tensor<float> dOutput, Tensor<float> gamma, Tensor<float> rstd, Tensor<float> dInput, bool accumulate = false)
    {
        var args = new OpArgs("RmsNorm.Relevance").Add("dOutput", dOutput).Add("gamma", gamma).Add("rstd", rstd).Add("dInput", dInput)
            .Require(dOutput.Shape.Rank >= 1 && dOutput.Shape[-1] >= 1, "dOutput must have at least one dimension, and its last (d) must be at least 1")
            .Require(dInput.Shape == dOutput.Shape, "dOutput and dInput must have the same shape")
            .Require(!ReferenceEquals(dInput, dOutput) || !accumulate, "dInput may be dOutput only when it is overwritten");
        int d = dOutput.Shape[-1];
        int rows = args.ToInt32(dOutput.Shape.Rows, "rows");
        args.Require(gamma.Shape.Rank == 1 && gamma.Length == d, $"gamma must be [d] = [{d}]")
            .Require(rstd.Length == rows, $"rstd must have one element per row ({rows})");
        if (rows == 0)
        {
            return;
        }

        args.Backend.RmsNormRelevance(dOutput, gamma, rstd, dInput, accumulate, rows, d);
    }

    #endregion
}

/// <summary>RmsNorm's entry points on each backend (RmsNorm.Cpu.cs, RmsNorm.Ilgpu.cs).</summary>
internal abstract partial class Backend
{
    /// <summary><c>y = x·rstd·gamma</c> over rows [rows (positive), d]; operands validated.</summary>
    internal abstract void RmsNormForward(Tensor<float> x, Tensor<float> gamma, Tensor<float> y, float epsilon, Tensor<float>? rstd, int rows, int d);

    /// <summary>dInput [rows, d] (overwritten or added) and, when given, <c>dGamma += Σ_rows dy·x·rstd</c>, rows positive.</summary>
    internal abstract void RmsNormBackward(Tensor<float> dOutput, Tensor<float> input, Tensor<float> gamma, Tensor<float> rstd,
        Tensor<float> dInput, Tensor<float>? dGamma, bool accumulateInput, int rows, int d);

    /// <summary>The identity rule <c>dInput = dOutput·gamma·rstd</c> (overwritten or added), rows positive.</summary>
    internal abstract void RmsNormRelevance(Tensor<float> dOutput, Tensor<float> gamma, Tensor<float> rstd, Tensor<float> dInput, bool accumulate, int rows, int d);
}
