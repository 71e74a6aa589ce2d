using System.Text.Json.Nodes;
using Headlight.Kernels;
using Headlight.Models.Loading;

namespace Headlight.Models.Training;

/// <summary>
/// New decoders and their checkpoints as Hugging Face folders: the config of a Llama- or GPT-2-style model of a chosen size,
/// its random initialisation, and config.json + model.safetensors written from the weights on the device, so every command
/// loads a checkpoint as it loads a downloaded model.
/// </summary>
internal static class DecoderFolder
{
    /// <summary>A Llama (RMSNorm, SwiGLU, rotary, grouped-query) or GPT-2 (LayerNorm, GELU, learned positions) configuration.</summary>
    public static ModelConfig Config(string family, int layers, int width, int heads, int kvHeads, int intermediate, int context, int vocab, int endOfText)
    {
        var config = family switch
        {
            "llama" => new ModelConfig
            {
                Family = ModelFamily.LlamaDecoder,
                Layers = layers,
                Hidden = width,
                Heads = heads,
                KvHeads = kvHeads,
                Intermediate = intermediate,
                VocabSize = vocab,
                MaxPositions = context,
                LayerNormEpsilon = 1e-5f,
                Activation = GeluForm.Erf,
                Norm = NormKind.RmsNorm,
                Mlp = MlpKind.SwiGlu,
                RotaryDims = width / heads,
                RopeTheta = 10000,
                HasQkvBias = false,
                HasOutputBias = false,
                HasMlpBias = false,
                HasUntiedHead = false,
                EndOfSequenceIds = [endOfText],
            },
            "gpt2" => new ModelConfig
            {
                Family = ModelFamily.Gpt2Decoder,
                Layers = layers,
                Hidden = width,
                Heads = heads,
                Intermediate = intermediate,
                VocabSize = vocab,
                MaxPositions = context,
                LayerNormEpsilon = 1e-5f,
                Activation = GeluForm.Tanh,
                EndOfSequenceIds = [endOfText],
            },
            _ => throw new ArgumentException($"Training makes \"llama\" or \"gpt2\" models, not \"{family}\".", nameof(family)),
        };
        config.Validate("training options");
        return config;
    }

    /// <summary>
    /// Random weights under Hugging Face names, GPT-2's initialisation: matrices and embeddings N(0, 0.02²), the projections
    /// into the residual stream scaled by 1/√(2·layers), norm gains 1, biases 0. The same seed gives the same weights.
    /// </summary>
    public static WeightSet Initial(ModelConfig c, int seed)
    {
        var random = new Random(seed);
        var weights = new WeightSet("random initialisation");
        int d = c.Hidden;
        int hd = c.HeadDim;
        int q = c.Heads * hd;
        int kv = c.KeyValueHeads * hd;
        int i = c.Intermediate;
        float residual = 0.02f / MathF.Sqrt(2f * c.Layers);
        void Add(string name, int[] shape, float std, TensorLayout layout = TensorLayout.None, float fill = 0f)
        {
            var data = new float[shape.Aggregate(1, (a, b) => a * b)];
            for (int k = 0; k < data.Length; k++)
            {
                data[k] = std == 0 ? fill : std * Normal(random);
            }

            weights.Add(new Weight(name, shape, data, layout, name));
        }

        if (c.Family == ModelFamily.LlamaDecoder)
        {
            Add("model.embed_tokens.weight", [c.VocabSize, d], 0.02f);
            for (int l = 0; l < c.Layers; l++)
            {
                string p = $"model.layers.{l}.";
                Add(p + "input_layernorm.weight", [d], 0, fill: 1);
                Add(p + "post_attention_layernorm.weight", [d], 0, fill: 1);
                Add(p + "self_attn.q_proj.weight", [q, d], 0.02f, TensorLayout.OutIn);
                Add(p + "self_attn.k_proj.weight", [kv, d], 0.02f, TensorLayout.OutIn);
                Add(p + "self_attn.v_proj.weight", [kv, d], 0.02f, TensorLayout.OutIn);
                Add(p + "self_attn.o_proj.weight", [d, q], residual, TensorLayout.OutIn);
                Add(p + "mlp.gate_proj.weight", [i, d], 0.02f, TensorLayout.OutIn);
                Add(p + "mlp.up_proj.weight", [i, d], 0.02f, TensorLayout.OutIn);
                Add(p + "mlp.down_proj.weight", [d, i], residual, TensorLayout.OutIn);
            }

            Add("model.norm.weight", [d], 0, fill: 1);
            return weights;
        }

        Add("wte.weight", [c.VocabSize, d], 0.02f);
        Add("wpe.weight", [c.MaxPositions, d], 0.01f);
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"h.{l}.";
            Add(p + "ln_1.weight", [d], 0, fill: 1);
            Add(p + "ln_1.bias", [d], 0);
            Add(p + "attn.c_attn.weight", [d, 3 * d], 0.02f, TensorLayout.InOut);
            Add(p + "attn.c_attn.bias", [3 * d], 0);
            Add(p + "attn.c_proj.weight", [d, d], residual, TensorLayout.InOut);
            Add(p + "attn.c_proj.bias", [d], 0);
            Add(p + "ln_2.weight", [d], 0, fill: 1);
            Add(p + "ln_2.bias", [d], 0);
            Add(p + "mlp.c_fc.weight", [d, i], 0.02f, TensorLayout.InOut);
            Add(p + "mlp.c_fc.bias", [i], 0);
            Add(p + "mlp.c_proj.weight", [i, d], residual, TensorLayout.InOut);
            Add(p + "mlp.c_proj.bias", [d], 0);
        }

        Add("ln_f.weight", [d], 0, fill: 1);
        Add("ln_f.bias", [d], 0);
        return weights;
    }

    /// <summary>Writes config.json and model.safetensors for the weights on the device, in the family's Hugging Face layout.</summary>
    public static void Write(string folder, ModelConfig c, DeviceWeights w)
    {
        Directory.CreateDirectory(folder);
        var tensors = new List<(string, int[], float[])>();
        int d = c.Hidden;
        int hd = c.HeadDim;
        int q = c.Heads * hd;
        int kv = c.KeyValueHeads * hd;
        int i = c.Intermediate;
        JsonObject config;
        if (c.Family == ModelFamily.LlamaDecoder)
        {
            tensors.Add(("model.embed_tokens.weight", [c.VocabSize, d], w.TokenEmbeddings.ToArray()));
            for (int l = 0; l < c.Layers; l++)
            {
                var layer = w.Layers[l];
                string p = $"model.layers.{l}.";
                var qkv = layer.QkvWeight.ToArray();                       // [d, q + 2kv]
                var gateUp = layer.FfnInWeight.ToArray();                  // [d, 2i]
                tensors.Add((p + "input_layernorm.weight", [d], layer.Norm1Gamma.ToArray()));
                tensors.Add((p + "post_attention_layernorm.weight", [d], layer.Norm2Gamma.ToArray()));
                tensors.Add((p + "self_attn.q_proj.weight", [q, d], Columns(qkv, d, q + (2 * kv), 0, q)));
                tensors.Add((p + "self_attn.k_proj.weight", [kv, d], Columns(qkv, d, q + (2 * kv), q, kv)));
                tensors.Add((p + "self_attn.v_proj.weight", [kv, d], Columns(qkv, d, q + (2 * kv), q + kv, kv)));
                tensors.Add((p + "self_attn.o_proj.weight", [d, q], Columns(layer.OutWeight.ToArray(), q, d, 0, d)));
                tensors.Add((p + "mlp.gate_proj.weight", [i, d], Columns(gateUp, d, 2 * i, 0, i)));
                tensors.Add((p + "mlp.up_proj.weight", [i, d], Columns(gateUp, d, 2 * i, i, i)));
                tensors.Add((p + "mlp.down_proj.weight", [d, i], Columns(layer.FfnOutWeight.ToArray(), i, d, 0, d)));
            }

            tensors.Add(("model.norm.weight", [d], w.FinalNormGamma!.ToArray()));
            config = new JsonObject
            {
                ["architectures"] = new JsonArray("LlamaForCausalLM"),
                ["model_type"] = "llama",
                ["hidden_size"] = d,
                ["intermediate_size"] = i,
                ["num_hidden_layers"] = c.Layers,
                ["num_attention_heads"] = c.Heads,
                ["num_key_value_heads"] = c.KeyValueHeads,
                ["head_dim"] = hd,
                ["hidden_act"] = "silu",
                ["max_position_embeddings"] = c.MaxPositions,
                ["rms_norm_eps"] = c.LayerNormEpsilon,
                ["rope_theta"] = c.RopeTheta,
                ["rope_scaling"] = null,
                ["attention_bias"] = false,
                ["mlp_bias"] = false,
                ["tie_word_embeddings"] = !c.HasUntiedHead,
                ["vocab_size"] = c.VocabSize,
            };
        }
        else
        {
            tensors.Add(("wte.weight", [c.VocabSize, d], w.TokenEmbeddings.ToArray()));
            tensors.Add(("wpe.weight", [c.MaxPositions, d], w.PositionEmbeddings!.ToArray()));
            for (int l = 0; l < c.Layers; l++)
            {
                var layer = w.Layers[l];
                string p = $"h.{l}.";
                tensors.Add((p + "ln_1.weight", [d], layer.Norm1Gamma.ToArray()));
                tensors.Add((p + "ln_1.bias", [d], layer.Norm1Beta.ToArray()));
                tensors.Add((p + "attn.c_attn.weight", [d, 3 * d], layer.QkvWeight.ToArray()));
                tensors.Add((p + "attn.c_attn.bias", [3 * d], layer.QkvBias.ToArray()));
                tensors.Add((p + "attn.c_proj.weight", [d, d], layer.OutWeight.ToArray()));
                tensors.Add((p + "attn.c_proj.bias", [d], layer.OutBias.ToArray()));
                tensors.Add((p + "ln_2.weight", [d], layer.Norm2Gamma.ToArray()));
                tensors.Add((p + "ln_2.bias", [d], layer.Norm2Beta.ToArray()));
                tensors.Add((p + "mlp.c_fc.weight", [d, i], layer.FfnInWeight.ToArray()));
                tensors.Add((p + "mlp.c_fc.bias", [i], layer.FfnInBias.ToArray()));
                tensors.Add((p + "mlp.c_proj.weight", [i, d], layer.FfnOutWeight.ToArray()));
                tensors.Add((p + "mlp.c_proj.bias", [d], layer.FfnOutBias.ToArray()));
            }

            tensors.Add(("ln_f.weight", [d], w.FinalNormGamma!.ToArray()));
            tensors.Add(("ln_f.bias", [d], w.FinalNormBeta!.ToArray()));
            config = new JsonObject
            {
                ["architectures"] = new JsonArray("GPT2LMHeadModel"),
                ["model_type"] = "gpt2",
                ["n_embd"] = d,
                ["n_inner"] = i,
                ["n_layer"] = c.Layers,
                ["n_head"] = c.Heads,
                ["n_positions"] = c.MaxPositions,
                ["n_ctx"] = c.MaxPositions,
                ["activation_function"] = "gelu_new",
                ["layer_norm_epsilon"] = c.LayerNormEpsilon,
                ["tie_word_embeddings"] = true,
                ["vocab_size"] = c.VocabSize,
            };
        }

        if (c.EndOfSequenceIds.Count > 0)
        {
            config["bos_token_id"] = c.EndOfSequenceIds[0];
            config["eos_token_id"] = c.EndOfSequenceIds[0];
        }

        config["torch_dtype"] = "float32";
        SafeTensorsWriter.Write(Path.Combine(folder, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }

    // Columns [first, first + count) of a row-major [rows, columns] matrix, transposed: [count, rows] (the [out, in] of nn.Linear).
    private static float[] Columns(float[] matrix, int rows, int columns, int first, int count)
    {
        var result = new float[count * rows];
        for (int r = 0; r < rows; r++)
        {
            for (int k = 0; k < count; k++)
            {
                result[(k * rows) + r] = matrix[(r * columns) + first + k];
            }
        }

        return result;
    }

    // A standard normal draw (Box–Muller), from the seeded generator only, so weights are reproducible.
    private static float Normal(Random random)
    {
        double u = 1.0 - random.NextDouble();
        double v = random.NextDouble();
        return (float)(Math.Sqrt(-2.0 * Math.Log(u)) * Math.Cos(2 * Math.PI * v));
    }
}
