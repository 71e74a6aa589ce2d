namespace Headlight.Tests.Ops;

/// <summary>
/// Every op's allowed error against its float64 reference, in one place. Inputs are O(1); the
/// absolute part covers results that cancel to near zero, the relative part covers the rest.
/// </summary>
public static class Tolerances
{
    /// <summary>One rounding per element: add, scale, multiply.</summary>
    public static readonly Tolerance Elementwise = new(1e-6, 1e-6);

    /// <summary>Sums of up to a few hundred O(1) terms in float32: error grows like √n · 6e-8 · Σ|x|.</summary>
    public static readonly Tolerance Reduce = new(2e-5, 1e-5);

    /// <summary>GELU and its derivative: the erfc fit has 1.2e-7 fractional error; exp adds a few ulps.</summary>
    public static readonly Tolerance Gelu = new(1e-6, 2e-6);

    /// <summary>GEMM: dot products of up to 130 O(1) terms accumulated in float32.</summary>
    public static readonly Tolerance Gemm = new(1e-4, 1e-4);

    /// <summary>LayerNorm forward and backward: mean and variance reductions, then a division by σ.</summary>
    public static readonly Tolerance LayerNorm = new(1e-5, 1e-4);

    /// <summary>Masked scaled softmax forward and backward: exp, a row sum and a division.</summary>
    public static readonly Tolerance Softmax = new(1e-6, 1e-5);

    /// <summary>Fused attention: online softmax plus two dot products per key, in float32.</summary>
    public static readonly Tolerance Attention = new(2e-5, 1e-4);

    /// <summary>Embedding gather copies exactly; scatter-add sums duplicates in any order.</summary>
    public static readonly Tolerance Embedding = new(1e-6, 1e-6);

    /// <summary>Rope: two products and a sum per element, against a float32-rounded angle table.</summary>
    public static readonly Tolerance Rope = new(1e-6, 1e-5);

    /// <summary>SwiGLU: a sigmoid (exp, a few ulps) and up to three products per element.</summary>
    public static readonly Tolerance SwiGlu = new(1e-6, 1e-5);

    /// <summary>Central finite differences of float32 forward passes: O(h²) truncation plus rounding over h.</summary>
    public static readonly Tolerance FiniteDifference = new(2e-3, 2e-3);

    /// <summary>Cross-entropy with O(1) logits: float32 GEMM logits (d ≤ 64 terms), a log-sum-exp over the vocabulary, and the gradient GEMMs.</summary>
    public static readonly Tolerance CrossEntropy = new(2e-5, 1e-4);

    /// <summary>Cross-entropy with logits near ±80: the logits' float32 rounding (≈ 80 · 6e-8 · √d) passes into loss and softmax.</summary>
    public static readonly Tolerance CrossEntropyExtreme = new(1e-3, 1e-3);

    /// <summary>AdamW: a handful of roundings per element per step, a square root and a division.</summary>
    public static readonly Tolerance AdamW = new(1e-6, 1e-5);
}
