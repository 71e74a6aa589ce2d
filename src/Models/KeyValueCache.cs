using Headlight.Kernels;

namespace Headlight.Models;

/// <summary>
/// The keys and values of the tokens a decoder has already seen, one buffer per block, so each generated token runs
/// the blocks on itself alone. A block's buffer holds the fused projection rows <c>[1, capacity, (heads + 2·kv)·hd]</c>
/// as the attention kernel reads them (rotary keys already rotated); only the key and value columns of earlier rows are
/// read again. One sequence (batch 1).
/// </summary>
internal sealed class KeyValueCache : IDisposable
{
    private readonly Tensor<float>[] layers;
    private readonly int width;

    public KeyValueCache(Device device, ModelConfig config, int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        width = config.QkvWidth;
        Capacity = capacity;
        layers = new Tensor<float>[config.Layers];
        try
        {
            for (int l = 0; l < layers.Length; l++)
            {
                layers[l] = device.Allocate<float>(1, capacity, width);
            }
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Tokens held.</summary>
    public int Length { get; private set; }

    /// <summary>The most tokens it can hold.</summary>
    public int Capacity { get; }

    /// <summary>Device bytes held.</summary>
    public long Bytes => (long)layers.Length * Capacity * width * sizeof(float);

    /// <summary>Rows [first, first + count) of block <paramref name="layer"/>'s buffer, as a [1, count, width] view.</summary>
    public Tensor<float> Rows(int layer, int first, int count)
    {
        if (first < 0 || count < 0 || first + count > Capacity)
        {
            throw new InvalidOperationException($"The key–value cache holds {Capacity} tokens; rows {first}..{first + count} do not fit.");
        }

        return layers[layer].Slice((long)first * width, 1, count, width);
    }

    /// <summary>Records that a forward pass appended <paramref name="count"/> tokens.</summary>
    public void Advance(int count) => Length += count;

    /// <summary>Forgets every token (the buffers are kept).</summary>
    public void Clear() => Length = 0;

    public void Dispose()
    {
        foreach (var t in layers)
        {
            t?.Dispose();
        }
    }
}
