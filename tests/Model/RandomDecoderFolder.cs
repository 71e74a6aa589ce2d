using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;

namespace Headlight.Tests.Model;

/// <summary>
/// Random GPT-NeoX, Llama and Qwen2 checkpoints as Hugging Face folders: config.json and model.safetensors, or shards with
/// model.safetensors.index.json, stored as F32, F16 or BF16. The tensor list is derived here from the config's own keys
/// (not from the loader), and tensors are written a chunk at a time, so a 1B-parameter folder needs a few hundred KB of
/// memory. Shared by the tests and the benchmarks (bench links this file).
/// </summary>
internal static class RandomDecoderFolder
{
    /// <summary>Llama-3.2-1B's config.json (values as on the Hub): 1,235,814,400 parameters, tied head.</summary>
    public const long Llama32OneBParameters = 1_235_814_400;

    /// <summary>Pythia-160M's parameter count (untied embed_out, vocabulary padded to 50,304).</summary>
    public const long Pythia160MParameters = 162_322_944;

    /// <summary>Llama-3.2-1B's config.json.</summary>
    public static JsonObject Llama32OneB() => new()
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["attention_bias"] = false,
        ["attention_dropout"] = 0.0,
        ["bos_token_id"] = 128000,
        ["eos_token_id"] = new JsonArray(128001, 128008, 128009),
        ["head_dim"] = 64,
        ["hidden_act"] = "silu",
        ["hidden_size"] = 2048,
        ["initializer_range"] = 0.02,
        ["intermediate_size"] = 8192,
        ["max_position_embeddings"] = 131072,
        ["mlp_bias"] = false,
        ["model_type"] = "llama",
        ["num_attention_heads"] = 32,
        ["num_hidden_layers"] = 16,
        ["num_key_value_heads"] = 8,
        ["pretraining_tp"] = 1,
        ["rms_norm_eps"] = 1e-5,
        ["rope_scaling"] = new JsonObject
        {
            ["factor"] = 32.0,
            ["high_freq_factor"] = 4.0,
            ["low_freq_factor"] = 1.0,
            ["original_max_position_embeddings"] = 8192,
            ["rope_type"] = "llama3",
        },
        ["rope_theta"] = 500000.0,
        ["tie_word_embeddings"] = true,
        ["torch_dtype"] = "bfloat16",
        ["use_cache"] = true,
        ["vocab_size"] = 128256,
    };

    /// <summary>Pythia-160M's config.json.</summary>
    public static JsonObject Pythia160M() => new()
    {
        ["architectures"] = new JsonArray("GPTNeoXForCausalLM"),
        ["bos_token_id"] = 0,
        ["eos_token_id"] = 0,
        ["hidden_act"] = "gelu",
        ["hidden_size"] = 768,
        ["initializer_range"] = 0.02,
        ["intermediate_size"] = 3072,
        ["layer_norm_eps"] = 1e-5,
        ["max_position_embeddings"] = 2048,
        ["model_type"] = "gpt_neox",
        ["num_attention_heads"] = 12,
        ["num_hidden_layers"] = 12,
        ["rotary_emb_base"] = 10000,
        ["rotary_pct"] = 0.25,
        ["tie_word_embeddings"] = false,
        ["torch_dtype"] = "float16",
        ["use_cache"] = true,
        ["use_parallel_residual"] = true,
        ["vocab_size"] = 50304,
    };

    /// <summary>
    /// A Llama of Pythia-160M's width and depth for the benchmarks: hidden 768, 12 layers, 12 heads / 4 kv heads (head 64),
    /// SwiGLU intermediate 2048, vocabulary 50,304, untied head (162.7 M parameters, 161.9 M of them in matrix products).
    /// </summary>
    public static JsonObject Llama160M() => new()
    {
        ["architectures"] = new JsonArray("LlamaForCausalLM"),
        ["attention_bias"] = false,
        ["bos_token_id"] = 1,
        ["eos_token_id"] = 2,
        ["head_dim"] = 64,
        ["hidden_act"] = "silu",
        ["hidden_size"] = 768,
        ["intermediate_size"] = 2048,
        ["max_position_embeddings"] = 2048,
        ["mlp_bias"] = false,
        ["model_type"] = "llama",
        ["num_attention_heads"] = 12,
        ["num_hidden_layers"] = 12,
        ["num_key_value_heads"] = 4,
        ["rms_norm_eps"] = 1e-5,
        ["rope_theta"] = 10000.0,
        ["tie_word_embeddings"] = false,
        ["vocab_size"] = 50304,
    };

    /// <summary>A tiny config of <paramref name="modelType"/> (llama, qwen2 or gpt_neox) for exact-equality tests.</summary>
    public static JsonObject Tiny(string modelType)
    {
        var config = new JsonObject
        {
            ["model_type"] = modelType,
            ["hidden_size"] = 64,
            ["num_hidden_layers"] = 2,
            ["num_attention_heads"] = 4,
            ["intermediate_size"] = 96,
            ["max_position_embeddings"] = 32,
            ["vocab_size"] = 96,
            ["bos_token_id"] = 0,
            ["eos_token_id"] = 1,
        };
        if (modelType == "gpt_neox")
        {
            config["architectures"] = new JsonArray("GPTNeoXForCausalLM");
            config["hidden_act"] = "gelu";
            config["layer_norm_eps"] = 1e-5;
            config["rotary_pct"] = 0.25;
            config["rotary_emb_base"] = 10000;
            config["use_parallel_residual"] = true;
            config["tie_word_embeddings"] = false;
        }
        else
        {
            config["architectures"] = new JsonArray(modelType == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM");
            config["hidden_act"] = "silu";
            config["num_key_value_heads"] = 2;
            config["rms_norm_eps"] = 1e-6;
            config["rope_theta"] = modelType == "qwen2" ? 1e6 : 10000.0;
            config["tie_word_embeddings"] = modelType == "qwen2";
        }

        return config;
    }

    /// <summary>
    /// Writes config.json and the weights into <paramref name="path"/> (which must exist). <paramref name="dtype"/> is the
    /// stored type (F32, F16, BF16); <paramref name="roundTo"/> (F16 or BF16), when given, rounds every value to that type
    /// first, so an F32 folder holds exactly the values a folder of that type holds for the same seed. More than one
    /// shard splits the tensors by size and writes model-0000i-of-0000n.safetensors and the index. GPT-NeoX folders carry
    /// the buffers real Pythia files do (attention.bias BOOL [1, 1, positions, positions], attention.masked_bias F32 [],
    /// attention.rotary_emb.inv_freq F32 [rotary/2]), which a loader must skip.
    /// </summary>
    public static void Write(string path, JsonObject config, int seed, string dtype = "F32", int shards = 1, string? roundTo = null)
    {
        if (dtype is not ("F32" or "F16" or "BF16") || roundTo is not (null or "F16" or "BF16") || shards < 1)
        {
            throw new ArgumentException($"dtype {dtype}, roundTo {roundTo}, shards {shards}: expected F32/F16/BF16, null/F16/BF16 and at least one shard.");
        }

        File.WriteAllText(Path.Combine(path, "config.json"), config.ToJsonString());
        var tensors = Tensors(config);
        int width = dtype == "F32" ? 4 : 2;
        long Bytes(Entry e) => e.Kind switch
        {
            Fill.Mask => e.Count,
            Fill.Buffer => 4 * e.Count,
            _ => width * e.Count,
        };

        // Shard boundaries by cumulative size: shard s takes the tensors that start before (s + 1) / n of the total.
        long total = tensors.Sum(Bytes);
        var shardOf = new int[tensors.Count];
        long running = 0;
        for (int i = 0; i < tensors.Count; i++)
        {
            shardOf[i] = (int)Math.Min(shards - 1, running * shards / total);
            running += Bytes(tensors[i]);
        }

        var random = new Random(seed);
        var weightMap = new JsonObject();
        for (int s = 0; s < shards; s++)
        {
            string file = shards == 1 ? "model.safetensors" : string.Create(CultureInfo.InvariantCulture, $"model-{s + 1:D5}-of-{shards:D5}.safetensors");
            var mine = Enumerable.Range(0, tensors.Count).Where(i => shardOf[i] == s).Select(i => tensors[i]).ToList();
            var header = new StringBuilder("{\"__metadata__\":{\"format\":\"pt\"},");
            long offset = 0;
            foreach (var e in mine)
            {
                string type = e.Kind switch { Fill.Mask => "BOOL", Fill.Buffer => "F32", _ => dtype };
                header.Append(CultureInfo.InvariantCulture, $"\"{e.Name}\":{{\"dtype\":\"{type}\",\"shape\":[{string.Join(",", e.Shape)}],\"data_offsets\":[{offset},{offset + Bytes(e)}]}},");
                offset += Bytes(e);
                weightMap[e.Name] = file;
            }

            header.Length--;
            header.Append('}');
            while (header.Length % 8 != 0)
            {
                header.Append(' ');
            }

            byte[] headerBytes = Encoding.UTF8.GetBytes(header.ToString());
            using var stream = new FileStream(Path.Combine(path, file), FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
            var length = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)headerBytes.Length);
            stream.Write(length);
            stream.Write(headerBytes);
            foreach (var e in mine)
            {
                WriteData(stream, e, config, random, dtype, roundTo);
            }
        }

        if (shards > 1)
        {
            var index = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = total }, ["weight_map"] = weightMap };
            File.WriteAllText(Path.Combine(path, "model.safetensors.index.json"), index.ToJsonString());
        }
    }

    /// <summary>The parameters in matrix products per token (every linear layer and the LM head; not embeddings lookups, norms or biases).</summary>
    public static long MatmulParameters(JsonObject config) =>
        Tensors(config).Where(e => e.Kind == Fill.Random && e.Shape.Length == 2 && (!e.Name.Contains("embed", StringComparison.Ordinal) || e.Name == "embed_out.weight"))
            .Sum(e => e.Count)
        + (Bool(config, "tie_word_embeddings", true) ? Int(config, "vocab_size") * (long)Int(config, "hidden_size") : 0);

    /// <summary>Every stored parameter (buffers excluded).</summary>
    public static long Parameters(JsonObject config) => Tensors(config).Where(e => e.Kind is not (Fill.Mask or Fill.Buffer)).Sum(e => e.Count);

    private enum Fill { Random, One, Zero, Mask, Buffer }

    private sealed record Entry(string Name, long[] Shape, Fill Kind, float Scale)
    {
        public long Count => Shape.Aggregate(1L, (a, b) => a * b);
    }

    private static int Int(JsonObject c, string key) => c[key]!.GetValue<int>();

    private static bool Bool(JsonObject c, string key, bool fallback) => c[key] is { } v ? v.GetValue<bool>() : fallback;

    private static List<Entry> Tensors(JsonObject c)
    {
        int d = Int(c, "hidden_size"), layers = Int(c, "num_hidden_layers"), heads = Int(c, "num_attention_heads");
        int inter = Int(c, "intermediate_size"), vocab = Int(c, "vocab_size");
        int hd = c["head_dim"] is { } h ? h.GetValue<int>() : d / heads;
        bool tied = Bool(c, "tie_word_embeddings", true);
        string type = c["model_type"]!.GetValue<string>();

        // Uniform ±scale: about the N(0, 0.02) of the Hub's initialisers, smaller on the output projections so activations stay O(1).
        const float W = 0.035f, Out = 0.01f;
        var list = new List<Entry>();
        if (type == "gpt_neox")
        {
            int positions = Int(c, "max_position_embeddings");
            int rotary = (int)(hd * double.Parse(c["rotary_pct"]!.ToJsonString(), CultureInfo.InvariantCulture));
            list.Add(new("gpt_neox.embed_in.weight", [vocab, d], Fill.Random, W));
            for (int l = 0; l < layers; l++)
            {
                string p = $"gpt_neox.layers.{l}.";
                list.AddRange(
                [
                    new(p + "input_layernorm.weight", [d], Fill.One, 0), new(p + "input_layernorm.bias", [d], Fill.Zero, 0),
                    new(p + "post_attention_layernorm.weight", [d], Fill.One, 0), new(p + "post_attention_layernorm.bias", [d], Fill.Zero, 0),
                    new(p + "attention.bias", [1, 1, positions, positions], Fill.Mask, 0),
                    new(p + "attention.masked_bias", [], Fill.Buffer, 0),
                    new(p + "attention.rotary_emb.inv_freq", [rotary / 2], Fill.Buffer, 0),
                    new(p + "attention.query_key_value.weight", [3 * d, d], Fill.Random, W), new(p + "attention.query_key_value.bias", [3 * d], Fill.Random, W),
                    new(p + "attention.dense.weight", [d, d], Fill.Random, Out), new(p + "attention.dense.bias", [d], Fill.Random, Out),
                    new(p + "mlp.dense_h_to_4h.weight", [inter, d], Fill.Random, W), new(p + "mlp.dense_h_to_4h.bias", [inter], Fill.Random, W),
                    new(p + "mlp.dense_4h_to_h.weight", [d, inter], Fill.Random, Out), new(p + "mlp.dense_4h_to_h.bias", [d], Fill.Random, Out),
                ]);
            }

            list.Add(new("gpt_neox.final_layer_norm.weight", [d], Fill.One, 0));
            list.Add(new("gpt_neox.final_layer_norm.bias", [d], Fill.Zero, 0));
            if (!tied)
            {
                list.Add(new("embed_out.weight", [vocab, d], Fill.Random, W));
            }

            return list;
        }

        int kv = (c["num_key_value_heads"] is { } k ? k.GetValue<int>() : heads) * hd;
        bool qkvBias = type == "qwen2" || Bool(c, "attention_bias", false);
        list.Add(new("model.embed_tokens.weight", [vocab, d], Fill.Random, W));
        for (int l = 0; l < layers; l++)
        {
            string p = $"model.layers.{l}.";
            list.Add(new(p + "input_layernorm.weight", [d], Fill.One, 0));
            list.Add(new(p + "self_attn.q_proj.weight", [heads * hd, d], Fill.Random, W));
            list.Add(new(p + "self_attn.k_proj.weight", [kv, d], Fill.Random, W));
            list.Add(new(p + "self_attn.v_proj.weight", [kv, d], Fill.Random, W));
            if (qkvBias)
            {
                list.Add(new(p + "self_attn.q_proj.bias", [heads * hd], Fill.Random, W));
                list.Add(new(p + "self_attn.k_proj.bias", [kv], Fill.Random, W));
                list.Add(new(p + "self_attn.v_proj.bias", [kv], Fill.Random, W));
            }

            list.Add(new(p + "self_attn.o_proj.weight", [d, heads * hd], Fill.Random, Out));
            list.Add(new(p + "post_attention_layernorm.weight", [d], Fill.One, 0));
            list.Add(new(p + "mlp.gate_proj.weight", [inter, d], Fill.Random, W));
            list.Add(new(p + "mlp.up_proj.weight", [inter, d], Fill.Random, W));
            list.Add(new(p + "mlp.down_proj.weight", [d, inter], Fill.Random, Out));
        }

        list.Add(new("model.norm.weight", [d], Fill.One, 0));
        if (!tied)
        {
            list.Add(new("lm_head.weight", [vocab, d], Fill.Random, W));
        }

        return list;
    }

    private static void WriteData(Stream stream, Entry e, JsonObject config, Random random, string dtype, string? roundTo)
    {
        if (e.Kind == Fill.Mask)
        {
            // Lower-triangular causal mask, one byte per entry, a row at a time.
            int n = (int)e.Shape[^1];
            var row = new byte[n];
            for (int i = 0; i < n; i++)
            {
                row[i] = 1;
                stream.Write(row);
            }

            return;
        }

        if (e.Kind == Fill.Buffer)
        {
            var values = new float[e.Count];
            if (e.Shape.Length == 0)
            {
                values[0] = -1e9f;
            }
            else
            {
                double theta = double.Parse(config["rotary_emb_base"]!.ToJsonString(), CultureInfo.InvariantCulture);
                for (int i = 0; i < values.Length; i++)
                {
                    values[i] = (float)(1 / Math.Pow(theta, 2.0 * i / (2 * values.Length)));
                }
            }

            stream.Write(MemoryMarshal.AsBytes(values.AsSpan()));
            return;
        }

        var chunk = new float[1 << 16];
        var half = new ushort[chunk.Length];
        for (long left = e.Count; left > 0; left -= chunk.Length)
        {
            int n = (int)Math.Min(left, chunk.Length);
            for (int i = 0; i < n; i++)
            {
                chunk[i] = e.Kind switch
                {
                    Fill.One => 1,
                    Fill.Zero => 0,
                    _ => e.Scale * ((2 * random.NextSingle()) - 1),
                };
            }

            string? round = dtype == "F32" ? roundTo : dtype;
            for (int i = 0; i < n && round is not null; i++)
            {
                half[i] = round == "BF16" ? ToBFloat16(chunk[i]) : BitConverter.HalfToUInt16Bits((Half)chunk[i]);
                if (dtype == "F32")
                {
                    chunk[i] = round == "BF16" ? BitConverter.UInt32BitsToSingle((uint)half[i] << 16) : (float)BitConverter.UInt16BitsToHalf(half[i]);
                }
            }

            if (dtype == "F32")
            {
                stream.Write(MemoryMarshal.AsBytes(chunk.AsSpan(0, n)));
            }
            else
            {
                stream.Write(MemoryMarshal.AsBytes(half.AsSpan(0, n)));
            }
        }
    }

    // Round to nearest, ties to even (the values are finite).
    private static ushort ToBFloat16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1)) >> 16);
    }
}
