using Headlight.Kernels;

namespace Headlight.Models.Loading;

/// <summary>One named float32 weight.</summary>
/// <param name="Name">The canonical name (Hugging Face style, without a model prefix such as <c>bert.</c>).</param>
/// <param name="Shape">The dimensions as stored.</param>
/// <param name="Data">The elements, row-major.</param>
/// <param name="Layout">How the axes map to a linear layer, for matrices.</param>
/// <param name="Source">Where the weight came from in its file (initializer or tensor name).</param>
public sealed record Weight(string Name, int[] Shape, ReadOnlyMemory<float> Data, TensorLayout Layout, string Source)
{
    /// <summary>Formats the shape as <c>[2, 3]</c>.</summary>
    public string ShapeText => TensorShape.Format(Shape);

    /// <summary>The input width of a linear layer's matrix (or the last dimension otherwise).</summary>
    public int InFeatures => Layout == TensorLayout.OutIn ? Shape[1] : Shape[0];

    /// <summary>The output width of a linear layer's matrix.</summary>
    public int OutFeatures => Layout == TensorLayout.OutIn ? Shape[0] : Shape[^1];
}
