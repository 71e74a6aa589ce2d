using Headlight.Kernels;

namespace Headlight.Models.Training;

/// <summary>One trainable tensor on the device: its weight, its gradient and whether weight decay applies.</summary>
/// <param name="Name">A stable name (the device layout's, e.g. <c>layers.0.qkv.weight</c>), used for optimizer state.</param>
/// <param name="Weight">The weight, as the forward pass reads it.</param>
/// <param name="Gradient">Its gradient, same shape, accumulated by the backward pass.</param>
/// <param name="Decays">True for matrices and embeddings; false for norms and biases (no decay there, as usual for AdamW).</param>
internal sealed record Parameter(string Name, Tensor<float> Weight, Tensor<float> Gradient, bool Decays);

/// <summary>The weight gradients of one block, in <see cref="LayerWeights"/>' layout; null where the block has no such parameter.</summary>
internal sealed class LayerGradients
{
    public required Tensor<float> QkvWeight { get; init; }      // [d, (heads + 2·kv)·hd]
    public Tensor<float>? QkvBias { get; init; }                // [(heads + 2·kv)·hd]
    public required Tensor<float> OutWeight { get; init; }      // [heads·hd, d]
    public Tensor<float>? OutBias { get; init; }                // [d]
    public required Tensor<float> Norm1Gamma { get; init; }     // [d]
    public Tensor<float>? Norm1Beta { get; init; }              // [d] LayerNorm only
    public required Tensor<float> FfnInWeight { get; init; }    // [d, intermediate] or [d, 2·intermediate] (gate | up)
    public Tensor<float>? FfnInBias { get; init; }
    public required Tensor<float> FfnOutWeight { get; init; }   // [intermediate, d]
    public Tensor<float>? FfnOutBias { get; init; }
    public required Tensor<float> Norm2Gamma { get; init; }
    public Tensor<float>? Norm2Beta { get; init; }
}

/// <summary>
/// A gradient buffer for every parameter of a decoder, owned here, with the list that pairs each with its weight.
/// Parameters a family does not have (Llama's biases, RMSNorm's β) have no gradient and are never updated.
/// </summary>
internal sealed class ParameterGradients : IDisposable
{
    private readonly List<Tensor<float>> owned = [];
    private readonly List<Parameter> parameters = [];

    public ParameterGradients(Device device, ModelConfig config, DeviceWeights weights)
    {
        if (!config.IsDecoder)
        {
            throw new ArgumentException("Training is implemented for decoders.", nameof(config));
        }

        bool layerNorm = config.Norm == NormKind.LayerNorm;
        try
        {
            TokenEmbeddings = Add("embed_tokens.weight", weights.TokenEmbeddings, decays: true);
            PositionEmbeddings = weights.PositionEmbeddings is { } positions ? Add("embed_positions.weight", positions, decays: true) : null;
            UntiedHead = weights.UntiedHead is { } head ? Add("lm_head.weight", head, decays: true) : null;
            var layers = new List<LayerGradients>();
            for (int l = 0; l < config.Layers; l++)
            {
                var w = weights.Layers[l];
                string p = $"layers.{l}.";
                layers.Add(new LayerGradients
                {
                    QkvWeight = Add(p + "qkv.weight", w.QkvWeight, true),
                    QkvBias = config.HasQkvBias ? Add(p + "qkv.bias", w.QkvBias, false) : null,
                    OutWeight = Add(p + "out.weight", w.OutWeight, true),
                    OutBias = config.HasOutputBias ? Add(p + "out.bias", w.OutBias, false) : null,
                    Norm1Gamma = Add(p + "norm1.weight", w.Norm1Gamma, false),
                    Norm1Beta = layerNorm ? Add(p + "norm1.bias", w.Norm1Beta, false) : null,
                    FfnInWeight = Add(p + "ffn_in.weight", w.FfnInWeight, true),
                    FfnInBias = config.HasMlpBias ? Add(p + "ffn_in.bias", w.FfnInBias, false) : null,
                    FfnOutWeight = Add(p + "ffn_out.weight", w.FfnOutWeight, true),
                    FfnOutBias = config.HasMlpBias ? Add(p + "ffn_out.bias", w.FfnOutBias, false) : null,
                    Norm2Gamma = Add(p + "norm2.weight", w.Norm2Gamma, false),
                    Norm2Beta = layerNorm ? Add(p + "norm2.bias", w.Norm2Beta, false) : null,
                });
            }

            Layers = layers;
            FinalNormGamma = Add("final_norm.weight", weights.FinalNormGamma!, false);
            FinalNormBeta = layerNorm ? Add("final_norm.bias", weights.FinalNormBeta!, false) : null;
        }
        catch
        {
            Dispose();
            throw;
        }

        Tensor<float> Add(string name, Tensor<float> weight, bool decays)
        {
            var gradient = device.Allocate<float>(weight.Shape.Dims.ToArray());
            gradient.Fill(0f);
            owned.Add(gradient);
            parameters.Add(new Parameter(name, weight, gradient, decays));
            return gradient;
        }
    }

    public Tensor<float> TokenEmbeddings { get; } = null!;       // [vocab, d]; with a tied head, also the head's gradient

    public Tensor<float>? PositionEmbeddings { get; }            // [positions, d] learned positions (GPT-2)

    public Tensor<float>? UntiedHead { get; }                    // [vocab, d]

    /// <summary>The gradient of the output projection: the untied head's, or the token embeddings' when tied.</summary>
    public Tensor<float> OutputEmbeddings => UntiedHead ?? TokenEmbeddings;

    public IReadOnlyList<LayerGradients> Layers { get; } = [];

    public Tensor<float> FinalNormGamma { get; } = null!;

    public Tensor<float>? FinalNormBeta { get; }

    /// <summary>Every trainable tensor, in a fixed order (embeddings, head, blocks, final norm).</summary>
    public IReadOnlyList<Parameter> Parameters => parameters;

    /// <summary>Number of trainable weights.</summary>
    public long Count => parameters.Sum(p => p.Weight.Length);

    /// <summary>Clears every gradient (before a step's first micro-batch).</summary>
    public void Zero()
    {
        foreach (var p in parameters)
        {
            p.Gradient.Fill(0f);
        }
    }

    public void Dispose()
    {
        foreach (var t in owned)
        {
            t.Dispose();
        }

        owned.Clear();
    }
}
