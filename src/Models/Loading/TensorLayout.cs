namespace Headlight.Models.Loading;

/// <summary>How a weight's two axes map to a linear layer's input and output.</summary>
public enum TensorLayout
{
    /// <summary>Not a linear layer's matrix: a vector, or an embedding table [rows, width].</summary>
    None,

    /// <summary>[in, out]: y = x·W (ONNX MatMul initializers, GPT-2 Conv1D). GEMM with transposeB = false.</summary>
    InOut,

    /// <summary>[out, in]: y = x·Wᵀ (PyTorch nn.Linear, Hugging Face BERT). GEMM with transposeB = true.</summary>
    OutIn,
}
