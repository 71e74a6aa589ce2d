using Headlight.Kernels;

namespace Headlight.Models.Loading;

/// <summary>
/// A model's weights by canonical name, loaded from an ONNX graph, a safetensors file or a Hugging
/// Face folder. Matrices carry their <see cref="TensorLayout"/> so the model can choose the GEMM
/// transpose without caring where the weights came from.
/// </summary>
public sealed class WeightSet
{
    private readonly Dictionary<string, Weight> weights = new(StringComparer.Ordinal);
    private readonly List<string> order = [];

    /// <summary>Creates an empty set whose errors name <paramref name="sourcePath"/>.</summary>
    public WeightSet(string sourcePath)
    {
        SourcePath = sourcePath;
    }

    /// <summary>The file the weights came from.</summary>
    public string SourcePath { get; }

    /// <summary>The number of weights.</summary>
    public int Count => weights.Count;

    /// <summary>Weight names in insertion order.</summary>
    public IReadOnlyList<string> Names => order;

    /// <summary>A weight by name.</summary>
    /// <exception cref="KeyNotFoundException">No weight has that name.</exception>
    public Weight this[string name] => weights.TryGetValue(name, out var w) ? w : throw new KeyNotFoundException($"{SourcePath}: no weight named '{name}'.");

    /// <summary>Whether a weight of that name exists.</summary>
    public bool Contains(string name) => weights.ContainsKey(name);

    /// <summary>A weight, or null.</summary>
    public Weight? TryGet(string name) => weights.TryGetValue(name, out var w) ? w : null;

    /// <summary>Adds a weight.</summary>
    /// <exception cref="ModelFormatException">A weight of that name exists, the data does not match the shape, or it holds NaN or ±∞ (unless HEADLIGHT_ALLOW_NONFINITE_WEIGHTS=1).</exception>
    public void Add(Weight weight)
    {
        ArgumentNullException.ThrowIfNull(weight);
        long count;
        try
        {
            count = TensorShape.Create(weight.Shape, weight.Source).ElementCount;
        }
        catch (ArgumentException e)
        {
            throw new ModelFormatException(SourcePath, weight.Source, "non-negative dimensions whose product fits 64 bits", weight.ShapeText, e);
        }

        if (count != weight.Data.Length)
        {
            throw new ModelFormatException(SourcePath, weight.Source, $"{count} elements for {weight.ShapeText}", $"{weight.Data.Length}");
        }

        if (NonFiniteWeights.Enabled)
        {
            NonFiniteWeights.Check(SourcePath, weight.Source, weight.Data.Span);
        }

        if (weight.Layout != TensorLayout.None && weight.Shape.Length != 2)
        {
            throw new ModelFormatException(SourcePath, weight.Source, "a 2-D matrix for a linear layer", weight.ShapeText);
        }

        if (!weights.TryAdd(weight.Name, weight))
        {
            throw new ModelFormatException(SourcePath, weight.Name, "one weight of this name", $"a second one from '{weight.Source}' (first from '{weights[weight.Name].Source}')");
        }

        order.Add(weight.Name);
    }

    /// <summary>A weight that must exist with exactly <paramref name="shape"/>.</summary>
    /// <exception cref="ModelFormatException">It is missing or shaped differently; the message names tensor, expected and found shape.</exception>
    public Weight Require(string name, params int[] shape)
    {
        ArgumentNullException.ThrowIfNull(shape);
        if (!weights.TryGetValue(name, out var weight))
        {
            throw new ModelFormatException(SourcePath, name, $"a tensor of shape {TensorShape.Format(shape)}", "no such tensor");
        }

        if (!weight.Shape.AsSpan().SequenceEqual(shape))
        {
            throw new ModelFormatException(SourcePath, name, $"shape {TensorShape.Format(shape)}", weight.ShapeText);
        }

        return weight;
    }

    /// <summary>A linear layer's matrix that must exist with <paramref name="inFeatures"/> inputs and <paramref name="outFeatures"/> outputs, whatever its layout.</summary>
    /// <exception cref="ModelFormatException">It is missing, not a matrix, or shaped differently.</exception>
    public Weight RequireMatrix(string name, int inFeatures, int outFeatures)
    {
        var weight = TryGet(name) ?? throw new ModelFormatException(SourcePath, name, $"a matrix of {inFeatures} inputs x {outFeatures} outputs", "no such tensor");
        int[] expected = weight.Layout == TensorLayout.OutIn ? [outFeatures, inFeatures] : [inFeatures, outFeatures];
        if (weight.Layout == TensorLayout.None || !weight.Shape.AsSpan().SequenceEqual(expected))
        {
            throw new ModelFormatException(SourcePath, name, $"shape {TensorShape.Format(expected)} ({weight.Layout})", weight.ShapeText);
        }

        return weight;
    }

    /// <summary>Forgets a weight (the loader drops each one once it is on the device); a no-op when absent.</summary>
    internal void Release(string name)
    {
        if (weights.Remove(name))
        {
            order.Remove(name);
        }
    }
}
