using Headlight.Kernels;

namespace Headlight.Models;

/// <summary>
/// Gates on head outputs for the length of one pass. A head's output reaches the stream only through its rows of the output
/// projection <c>[d, d]</c> (rows h·headDim.. are the inputs its values feed), so scaling those rows by the gate is the gate, in the
/// forward and the backward pass alike; a gate of 0 zeroes them. The rows are saved first and put back by <see cref="Restore"/>. The
/// <c>cpu</c> device's forward pass reads a packed copy of the projection, so it is packed again after each change.
/// </summary>
internal sealed class HeadGating
{
    private readonly DeviceWeights weights;
    private readonly PackedWeights? packed;
    private readonly List<(int Layer, Tensor<float> Rows, float[] Saved)> changed = [];

    private HeadGating(DeviceWeights weights, PackedWeights? packed)
    {
        this.weights = weights;
        this.packed = packed;
    }

    /// <summary>Checks that <paramref name="gates"/> is empty or holds one finite gate per head <c>[layer, head]</c>.</summary>
    public static void Check(ModelConfig config, string model, ReadOnlySpan<float> gates)
    {
        if (gates.IsEmpty)
        {
            return;
        }

        int count = config.Layers * config.Heads;
        if (gates.Length != count)
        {
            throw new ArgumentException($"Model '{model}': head gates hold {gates.Length} values; [layer, head] = [{config.Layers}, {config.Heads}] needs {count}.", nameof(gates));
        }

        for (int i = 0; i < gates.Length; i++)
        {
            if (!float.IsFinite(gates[i]))
            {
                throw new ArgumentException($"Model '{model}': the gate of layer {i / config.Heads}, head {i % config.Heads} is {gates[i]}; gates must be finite.", nameof(gates));
            }
        }
    }

    /// <summary>Applies every gate that is not 1 (call under the model's lock); null when there is none.</summary>
    public static HeadGating? Apply(ModelConfig config, DeviceWeights weights, PackedWeights? packed, ReadOnlySpan<float> gates)
    {
        HeadGating? gating = null;
        int headDim = config.HeadDim;
        int d = config.Hidden;
        for (int i = 0; i < gates.Length; i++)
        {
            float gate = gates[i];
            if (gate == 1f)
            {
                continue;
            }

            int layer = i / config.Heads;
            int head = i % config.Heads;
            gating ??= new HeadGating(weights, packed);
            var rows = weights.Layers[layer].OutWeight.Slice((long)head * headDim * d, headDim, d); // [headDim, d]
            gating.changed.Add((layer, rows, rows.ToArray()));
            if (gate == 0f)
            {
                rows.Fill(0f);
            }
            else
            {
                Elementwise.Scale(rows, gate, rows);
            }
        }

        if (gating is not null)
        {
            foreach (int layer in gating.changed.Select(c => c.Layer).Distinct())
            {
                gating.Repack(layer);
            }
        }

        return gating;
    }

    /// <summary>Puts every changed row back as it was.</summary>
    public void Restore()
    {
        foreach (var (_, rows, saved) in changed)
        {
            rows.CopyFrom(saved);
        }

        foreach (int layer in changed.Select(c => c.Layer).Distinct())
        {
            Repack(layer);
        }

        changed.Clear();
    }

    private void Repack(int layer) => packed?.RepackOut(layer, weights.Layers[layer]);
}
