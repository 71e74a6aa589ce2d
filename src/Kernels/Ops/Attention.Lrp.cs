namespace Headlight.Kernels;

/// <summary>LRP through attention: the rules the backward pass propagates, and the gradient with respect to the probabilities.</summary>
public static partial class Attention
{
    // What the backward kernels propagate (Layout.Rule): gradients, AttnLRP's uniform rule, or CP-LRP.
    internal const int RuleGradient = 0;
    internal const int RuleUniform = 1;
    internal const int RuleConservative = 2;

    /// <summary>
    /// LRP through fused attention in signal form (relevance = tensor ⊙ signal), from the signal at the output
    /// (<c>R_O = O ⊙ dOutput</c>) to the signals at Q, K and V, in one pass shaped like <see cref="Backward"/>.
    /// <list type="bullet">
    /// <item><see cref="AttentionRelevanceRule.Uniform"/> (AttnLRP): P·V and Q·Kᵀ are bilinear, and each operand gets
    /// half of the output's relevance, ε-normalised by twice the output: <c>g = dO ⊙ O/(2O + ε·sign O)</c>,
    /// <c>dV = Pᵀ·g</c>; the softmax rule <c>R_S = S ⊙ (R_P − P·ΣR_P)</c> (a Taylor expansion at the scores
    /// <c>S = scale·q·k</c>) is the gradient in signal form, <c>dS = P∘(g·Vᵀ − rowsum(g∘O))</c>; then
    /// <c>dS ← dS ⊙ S/(2S + ε·sign S)</c>, <c>dQ = scale·dS·K</c>, <c>dK = scale·dSᵀ·Q</c>. Masked keys get nothing.</item>
    /// <item><see cref="AttentionRelevanceRule.Conservative"/> (CP-LRP): the probabilities are held constant, so
    /// attention is a linear map of V: <c>dV = Pᵀ·(dO ⊙ O/(O + ε·sign O))</c>, and dQ, dK are 0.</item>
    /// </list>
    /// The operands are as in <see cref="Backward"/>; <paramref name="dq"/>, <paramref name="dk"/> and
    /// <paramref name="dv"/> are overwritten, and <paramref name="delta"/> holds <c>rowsum(g∘O)</c> afterwards.
    /// </summary>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, mis-shaped or overlaps an
    /// output, the rule is unknown, or ε is not positive and finite.</exception>
    public static void Relevance(
        AttentionOperand q,
        AttentionOperand k,
        AttentionOperand v,
        AttentionOperand output,
        AttentionOperand dOutput,
        Tensor<float> logSumExp,
        AttentionShape shape,
        float scale,
        Tensor<int>? keyMask,
        bool causal,
        AttentionOperand dq,
        AttentionOperand dk,
        AttentionOperand dv,
        Tensor<float> delta,
        AttentionRelevanceRule rule,
        float epsilon)
    {
        if (!Enum.IsDefined(rule))
        {
            new OpArgs("Attention.Relevance").Add("q", q.Tensor).Fail($"rule must be Uniform or Conservative, got {rule}");
        }

        int code = rule == AttentionRelevanceRule.Uniform ? RuleUniform : RuleConservative;
        BackwardCore("Attention.Relevance", q, k, v, output, dOutput, logSumExp, shape, scale, keyMask, causal, dq, dk, dv, delta, code, epsilon);
    }

    /// <summary>
    /// The gradient with respect to the attention probabilities, <c>dP[b, h, i, j] = dO[b, i, h]·v[b, j, g]</c>
    /// (<c>g = h / (heads / kvHeads)</c>) for every
    /// visible (query, key) pair and 0 for masked ones, as gradient-weighted attention (Chefer et al. 2021) needs.
    /// </summary>
    /// <param name="v">The forward values, <c>[batch, key, width]</c>.</param>
    /// <param name="dOutput">The gradient of the attention output, <c>[batch, query, width]</c>.</param>
    /// <param name="shape">The sizes.</param>
    /// <param name="keyMask">The forward's key mask, or null.</param>
    /// <param name="causal">The forward's causal flag.</param>
    /// <param name="dProbabilities">Written, <c>[batch, heads, query, key]</c>.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, mis-shaped or overlaps the output.</exception>
    public static void ProbabilityGradient(AttentionOperand v, AttentionOperand dOutput, AttentionShape shape, Tensor<int>? keyMask, bool causal, Tensor<float> dProbabilities)
    {
        var args = new OpArgs("Attention.ProbabilityGradient").Add("v", v.Tensor).Add("dOutput", dOutput.Tensor).AddOptional("keyMask", keyMask).Add("dProbabilities", dProbabilities);
        var layout = CheckShape(args, shape, 1f, causal, keyMask);
        (layout.VStride, layout.VColumn) = CheckOperand(args, "v", v, shape, shape.KeyLength, layout.KvHeads);
        (layout.GStride, layout.GColumn) = CheckOperand(args, "dOutput", dOutput, shape, shape.QueryLength);
        CheckDims(args, "dProbabilities", dProbabilities, shape.Batch, shape.Heads, shape.QueryLength, shape.KeyLength);
        int hd = layout.Heads * layout.HeadDim;
        CheckNoOverlap(args, [Region("dProbabilities", dProbabilities)], [Region("v", v, layout.KvHeads * layout.HeadDim), Region("dOutput", dOutput, hd)]);
        int n = args.ToInt32(dProbabilities.Length, "batch·heads·query·key");
        if (n == 0)
        {
            return;
        }

        args.Backend.AttentionProbabilityGradient(v.Tensor, dOutput.Tensor, keyMask, dProbabilities, layout, n);
    }

    // The signal at the output as a rule sees it: the gradient itself, or the ε-normalised share of R_O = O ⊙ dO
    // (two operands under the uniform rule, one when CP-LRP holds P constant).
    private static float OutputSignal(float g, float o, Layout p)
        => p.Rule == RuleGradient ? g : Elementwise.Share(g, o, p.Epsilon, p.Rule == RuleUniform ? 2f : 1f);

    // What of dS reaches Q and K: all of it (gradient), S/(2S + ε·sign S) (uniform rule), or nothing (CP-LRP).
    private static float ScoreShare(float s, Layout p)
        => p.Rule == RuleGradient ? 1f : p.Rule == RuleUniform ? Elementwise.Share(1f, s, p.Epsilon, 2f) : 0f;
}

/// <summary>Which LRP rule <see cref="Attention.Relevance"/> applies inside attention.</summary>
public enum AttentionRelevanceRule
{
    /// <summary>AttnLRP (Achtibat et al. 2024): the uniform rule for Q·Kᵀ and P·V and the Taylor rule for softmax; relevance reaches Q, K and V.</summary>
    Uniform,

    /// <summary>CP-LRP (Ali et al. 2022): the attention probabilities are held constant; all relevance goes to V, none to Q and K.</summary>
    Conservative,
}

/// <summary>Attention's LRP entry points on each backend (Attention.Lrp.Cpu.cs, Attention.Lrp.Ilgpu.cs).</summary>
internal abstract partial class Backend
{
    /// <summary><see cref="Attention.ProbabilityGradient"/> on validated operands; <paramref name="n"/> = batch·heads·query·key ≥ 1.</summary>
    internal abstract void AttentionProbabilityGradient(Tensor<float> v, Tensor<float> dOutput, Tensor<int>? mask, Tensor<float> dProbabilities, Attention.Layout layout, int n);
}
