using System.Runtime.CompilerServices;
using ILGPU.Algorithms;

namespace Headlight.Kernels;

/// <summary>
/// The SwiGLU product of Llama's MLP: <c>gateUp [.., 2n]</c> holds the gate in columns <c>[0, n)</c> and up in
/// <c>[n, 2n)</c> (one fused GEMM); <c>y [.., n] = silu(gate) ⊙ up</c>, <c>silu(u) = u·sigmoid(u)</c>, with the sigmoid
/// written so that it stays accurate for large |u|.
/// </summary>
public static partial class SwiGlu
{
    /// <summary><c>y = silu(gate) ⊙ up</c> per row.</summary>
    /// <param name="gateUp">Gate and up, <c>[rows..., 2n]</c>.</param>
    /// <param name="y">The product, <c>[rows..., n]</c>; must not overlap <paramref name="gateUp"/>.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped.</exception>
    public static void Forward(Tensor<float> gateUp, Tensor<float> y)
    {
        var args = new OpArgs("SwiGlu.Forward").Add("gateUp", gateUp).Add("y", y);
        int n = Check(args, gateUp, y, "y");
        int rows = args.ToInt32(gateUp.Shape.Rows, "rows");
        args.Require(!args.Backend.AttentionSharesMemory(gateUp, y), "y must not overlap gateUp");
        if (rows == 0 || n == 0)
        {
            return;
        }

        args.Backend.SwiGluForward(gateUp, y, rows, n);
    }

    /// <summary>
    /// <c>dGateUp [.., 2n]</c> (overwritten) from <c>dy [.., n]</c>: <c>d gate = dy·up·silu′(gate)</c>, <c>d up = dy·silu(gate)</c>,
    /// <c>silu′(u) = s·(1 + u·(1 − s))</c> with <c>s = sigmoid(u)</c>.
    /// </summary>
    /// <param name="gateUp">The forward's input, <c>[rows..., 2n]</c>.</param>
    /// <param name="dy">The gradient of the product, <c>[rows..., n]</c>.</param>
    /// <param name="dGateUp">The gradient of gate and up, shaped like <paramref name="gateUp"/>; may be <paramref name="gateUp"/>, must not overlap <paramref name="dy"/>.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped.</exception>
    public static void Backward(Tensor<float> gateUp, Tensor<float> dy, Tensor<float> dGateUp) => Run("SwiGlu.Backward", gateUp, dy, dGateUp, relevance: false);

    #region LRP

    /// <summary>
    /// AttnLRP in signal form (relevance = tensor ⊙ signal): the identity rule through SiLU and the uniform (½, ½) rule
    /// through the product: <c>d gate = dy·up·sigmoid(gate)/2</c> and <c>d up = dy·silu(gate)/2</c>, so
    /// <c>gate ⊙ d gate = up ⊙ d up = y ⊙ dy / 2</c> and relevance is conserved.
    /// </summary>
    /// <param name="gateUp">The forward's input, <c>[rows..., 2n]</c>.</param>
    /// <param name="dy">The signal at the product, <c>[rows..., n]</c>.</param>
    /// <param name="dGateUp">The signal at gate and up (overwritten), shaped like <paramref name="gateUp"/>; may be <paramref name="gateUp"/>.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped.</exception>
    public static void Relevance(Tensor<float> gateUp, Tensor<float> dy, Tensor<float> dGateUp) => Run("SwiGlu.Relevance", gateUp, dy, dGateUp, relevance: true);

    #endregion

    private static void Run(string op, Tensor<float> gateUp, Tensor<float> dy, Tensor<float> dGateUp, bool relevance)
    {
        var args = new OpArgs(op).Add("gateUp", gateUp).Add("dy", dy).Add("dGateUp", dGateUp)
            .Require(dGateUp.Shape == gateUp.Shape, "dGateUp must have gateUp's shape");
        int n = Check(args, gateUp, dy, "dy");
        int rows = args.ToInt32(gateUp.Shape.Rows, "rows");
        args.Require(!args.Backend.AttentionSharesMemory(dGateUp, dy), "dGateUp must not overlap dy")
            .Require(ReferenceEquals(dGateUp, gateUp) || (dGateUp.Offset == gateUp.Offset && dGateUp.Shape == gateUp.Shape)
                || !args.Backend.AttentionSharesMemory(dGateUp, gateUp), "dGateUp may be gateUp, but must not overlap it otherwise");
        if (rows == 0 || n == 0)
        {
            return;
        }

        args.Backend.SwiGluBackward(gateUp, dy, dGateUp, rows, n, relevance);
    }

    // gateUp [rows..., 2n] and half [rows..., n]; returns n.
    private static int Check(OpArgs args, Tensor<float> gateUp, Tensor<float> half, string halfName)
    {
        args.Require(gateUp.Shape.Rank >= 1 && gateUp.Shape[-1] % 2 == 0, "gateUp must have at least one dimension, and its last (2n) must be even");
        int n = gateUp.Shape[-1] / 2;
        bool matches = half.Shape.Rank == gateUp.Shape.Rank && half.Shape[-1] == n
            && half.Shape.Dims[..^1].SequenceEqual(gateUp.Shape.Dims[..^1]);
        args.Require(matches, $"'{halfName}' must be gateUp's shape with the last dimension halved (n = {n})");
        return n;
    }

    /// <summary><c>sigmoid(u)</c>, accurate in both tails (no <c>exp</c> of a large positive argument); usable inside ILGPU kernels.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Sigmoid(float u)
    {
        float e = XMath.Exp(-XMath.Abs(u));
        float r = 1f / (1f + e);
        return u >= 0f ? r : e * r;
    }
}

/// <summary>SwiGLU's entry points on each backend (SwiGlu.Cpu.cs, SwiGlu.Ilgpu.cs).</summary>
internal abstract partial class Backend
{
    /// <summary><c>y = silu(gate) ⊙ up</c> over [rows, 2n] → [rows, n], both positive; operands validated.</summary>
    internal abstract void SwiGluForward(Tensor<float> gateUp, Tensor<float> y, int rows, int n);

    /// <summary>dGateUp [rows, 2n] from dy [rows, n]: the gradient, or with <paramref name="relevance"/> AttnLRP's rule.</summary>
    internal abstract void SwiGluBackward(Tensor<float> gateUp, Tensor<float> dy, Tensor<float> dGateUp, int rows, int n, bool relevance);
}
