using System.Globalization;
using System.Text.RegularExpressions;
using Headlight.Kernels;

namespace Headlight.Models.Loading;

/// <summary>A GPT-NeoX, Llama or Qwen2 folder: its configuration and weights under their Hugging Face names.</summary>
internal sealed record DecoderCheckpoint(string Folder, DecoderConfig Config, WeightSet Weights);

internal static partial class HfCheckpoint
{
    /// <summary>
    /// Loads a GPT-NeoX (Pythia), Llama or Qwen2 folder. Every tensor's shape is checked against the configuration
    /// from the file headers before any weight is read; buffers that are not parameters (GPT-NeoX's
    /// <c>attention.bias</c>, <c>attention.masked_bias</c>, the <c>rotary_emb.inv_freq</c> of either) are skipped, as is a
    /// stored <c>lm_head.weight</c> of a tied model. Linear weights are <c>[out, in]</c>.
    /// </summary>
    /// <exception cref="FileNotFoundException">config.json or every weight file is missing.</exception>
    /// <exception cref="ModelFormatException">A file is malformed, a tensor is missing, unexpected, or shaped against the configuration.</exception>
    public static DecoderCheckpoint LoadDecoder(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        string configPath = Path.Combine(folder, "config.json");
        var config = HfConfig.ReadDecoder(configPath);
        var expected = DecoderShapes(config);
        using var file = CheckpointTensors.Open(folder);
        string weightsPath = file.SourcePath;
        var keep = new List<string>();
        foreach (string stored in file.Names)
        {
            if (DecoderBuffer().IsMatch(stored) || (stored is "lm_head.weight" or "embed_out.weight" && config.TieWordEmbeddings))
            {
                continue;
            }

            var info = file.Info(stored);
            if (!expected.TryGetValue(stored, out var shape))
            {
                var layer = DecoderLayer().Match(stored);
                string why = layer.Success && int.TryParse(layer.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int l) && l >= config.Layers
                    ? $"layers 0..{config.Layers - 1} (num_hidden_layers = {config.Layers})"
                    : $"only the tensors of a {config.ModelType} with this config";
                throw new ModelFormatException(weightsPath, stored, why, "a tensor it does not have");
            }

            if (!IsFloat(info.DType))
            {
                throw new ModelFormatException(weightsPath, $"{stored}.dtype", "a floating-point weight (F32, F16, BF16 or F64)", info.DType.ToString());
            }

            if (!info.Shape.Select(d => (long)d).SequenceEqual(shape.Select(d => (long)d)))
            {
                throw new ModelFormatException(weightsPath, stored, $"shape {TensorShape.Format(shape)} (from {configPath}: {ShapeKeys(config)})", info.ShapeText);
            }

            keep.Add(stored);
        }

        foreach (string name in expected.Keys)
        {
            if (!keep.Contains(name))
            {
                string why = name == "lm_head.weight" || name == "embed_out.weight"
                    ? $"an untied LM head {TensorShape.Format(expected[name])}, as config.json sets tie_word_embeddings: false"
                    : $"a tensor of shape {TensorShape.Format(expected[name])}";
                throw new ModelFormatException(weightsPath, name, why, "no such tensor");
            }
        }

        var weights = new WeightSet(weightsPath);
        foreach (string stored in keep)
        {
            var info = file.Info(stored);
            bool linear = info.Shape.Count == 2 && !stored.Contains("embed", StringComparison.Ordinal) && stored != "lm_head.weight";
            weights.Add(new Weight(stored, Shape(weightsPath, info), file.ReadFloat32(stored), linear ? TensorLayout.OutIn : TensorLayout.None, stored));
        }

        return new DecoderCheckpoint(folder, config, weights);
    }

    /// <summary>Every parameter a decoder of this configuration has, with its stored shape ([out, in] for linear layers).</summary>
    public static Dictionary<string, int[]> DecoderShapes(DecoderConfig c)
    {
        int d = c.HiddenSize;
        int hd = c.HeadDim;
        int kv = c.KvHeads * hd;
        int i = c.IntermediateSize;
        var shapes = new Dictionary<string, int[]>(StringComparer.Ordinal);
        if (c.IsNeoX)
        {
            shapes["gpt_neox.embed_in.weight"] = [c.VocabSize, d];
            for (int l = 0; l < c.Layers; l++)
            {
                string p = $"gpt_neox.layers.{l}.";
                shapes[p + "input_layernorm.weight"] = [d];
                shapes[p + "input_layernorm.bias"] = [d];
                shapes[p + "post_attention_layernorm.weight"] = [d];
                shapes[p + "post_attention_layernorm.bias"] = [d];
                shapes[p + "attention.query_key_value.weight"] = [3 * d, d];
                shapes[p + "attention.dense.weight"] = [d, d];
                if (c.QkvBias)
                {
                    shapes[p + "attention.query_key_value.bias"] = [3 * d];
                    shapes[p + "attention.dense.bias"] = [d];
                }

                shapes[p + "mlp.dense_h_to_4h.weight"] = [i, d];
                shapes[p + "mlp.dense_h_to_4h.bias"] = [i];
                shapes[p + "mlp.dense_4h_to_h.weight"] = [d, i];
                shapes[p + "mlp.dense_4h_to_h.bias"] = [d];
            }

            shapes["gpt_neox.final_layer_norm.weight"] = [d];
            shapes["gpt_neox.final_layer_norm.bias"] = [d];
            if (!c.TieWordEmbeddings)
            {
                shapes["embed_out.weight"] = [c.VocabSize, d];
            }

            return shapes;
        }

        shapes["model.embed_tokens.weight"] = [c.VocabSize, d];
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"model.layers.{l}.";
            shapes[p + "input_layernorm.weight"] = [d];
            shapes[p + "post_attention_layernorm.weight"] = [d];
            shapes[p + "self_attn.q_proj.weight"] = [c.Heads * hd, d];
            shapes[p + "self_attn.k_proj.weight"] = [kv, d];
            shapes[p + "self_attn.v_proj.weight"] = [kv, d];
            shapes[p + "self_attn.o_proj.weight"] = [d, c.Heads * hd];
            if (c.QkvBias)
            {
                shapes[p + "self_attn.q_proj.bias"] = [c.Heads * hd];
                shapes[p + "self_attn.k_proj.bias"] = [kv];
                shapes[p + "self_attn.v_proj.bias"] = [kv];
            }

            if (c.OutputBias)
            {
                shapes[p + "self_attn.o_proj.bias"] = [d];
            }

            shapes[p + "mlp.gate_proj.weight"] = [i, d];
            shapes[p + "mlp.up_proj.weight"] = [i, d];
            shapes[p + "mlp.down_proj.weight"] = [d, i];
            if (c.MlpBias)
            {
                shapes[p + "mlp.gate_proj.bias"] = [i];
                shapes[p + "mlp.up_proj.bias"] = [i];
                shapes[p + "mlp.down_proj.bias"] = [d];
            }
        }

        shapes["model.norm.weight"] = [d];
        if (!c.TieWordEmbeddings)
        {
            shapes["lm_head.weight"] = [c.VocabSize, d];
        }

        return shapes;
    }

    private static string ShapeKeys(DecoderConfig c) => string.Create(
        CultureInfo.InvariantCulture,
        $"hidden_size {c.HiddenSize}, num_attention_heads {c.Heads}, num_key_value_heads {c.KvHeads}, intermediate_size {c.IntermediateSize}, vocab_size {c.VocabSize}");

    [GeneratedRegex(@"^(gpt_neox\.layers\.\d+\.attention\.(bias|masked_bias|rotary_emb\.inv_freq)|model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq)$")]
    private static partial Regex DecoderBuffer();

    [GeneratedRegex(@"^(?:gpt_neox|model)\.layers\.(\d+)\.")]
    private static partial Regex DecoderLayer();
}
