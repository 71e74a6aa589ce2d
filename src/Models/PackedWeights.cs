using Headlight.Kernels;

namespace Headlight.Models;

/// <summary>
/// Every block's four weight matrices packed once, at load, into the CPU GEMM's strip layout
/// (<see cref="Gemm.Prepack"/>), so the forward pass never packs a weight. Only the <c>cpu</c> device
/// has them; the plain tensors in <see cref="DeviceWeights"/> stay (the backward pass and ILGPU use them).
/// </summary>
internal sealed class PackedWeights : IDisposable
{
    private readonly PackedLayer[] layers;

    private PackedWeights(IReadOnlyList<LayerWeights> layers)
    {
        var packed = new PackedLayer[layers.Count];
        try
        {
            for (int i = 0; i < packed.Length; i++)
            {
                var w = layers[i];
                packed[i] = new PackedLayer(Gemm.Prepack(w.QkvWeight), Gemm.Prepack(w.OutWeight), Gemm.Prepack(w.FfnInWeight), Gemm.Prepack(w.FfnOutWeight));
            }
        }
        catch
        {
            foreach (var p in packed)
            {
                p?.Dispose();
            }

            throw;
        }

        this.layers = packed;
    }

    /// <summary>Block i's packed matrices.</summary>
    public IReadOnlyList<PackedLayer> Layers => layers;

    /// <summary>Packs the weights when they live on the managed CPU device; null elsewhere.</summary>
    public static PackedWeights? For(Device device, DeviceWeights weights) => device.Backend.PacksWeights ? new PackedWeights(weights.Layers) : null;

    /// <summary>
    /// Packs block <paramref name="layer"/>'s attention output projection again after its plain tensor was
    /// changed in place (the head census zeroes a head's rows to ablate it, then restores them).
    /// </summary>
    public void RepackOut(int layer, LayerWeights weights)
    {
        var old = layers[layer];
        layers[layer] = old with { Out = Gemm.Prepack(weights.OutWeight) };
        old.Out.Dispose();
    }

    public void Dispose()
    {
        foreach (var layer in layers)
        {
            layer.Dispose();
        }
    }
}

/// <summary>One block's packed matrices, [in, out] as in <see cref="LayerWeights"/>.</summary>
internal sealed record PackedLayer(PackedWeight Qkv, PackedWeight Out, PackedWeight FfnIn, PackedWeight FfnOut) : IDisposable
{
    public void Dispose()
    {
        Qkv.Dispose();
        Out.Dispose();
        FfnIn.Dispose();
        FfnOut.Dispose();
    }
}
