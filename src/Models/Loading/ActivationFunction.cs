namespace Headlight.Models.Loading;

/// <summary>The feed-forward activation of a transformer block.</summary>
internal enum ActivationFunction
{
    /// <summary>Exact GELU: x·Φ(x) with the error function (BERT's <c>gelu</c>).</summary>
    GeluErf,

    /// <summary>GELU's tanh approximation (GPT-2's <c>gelu_new</c>).</summary>
    GeluTanh,

    /// <summary>max(0, x).</summary>
    Relu,
}
