using System.Text;
using System.Text.Json.Nodes;
using Headlight.Tests.Explain;
using Headlight.Tests.Loading;

namespace Headlight.Tests.Model;

/// <summary>The decoder families a <see cref="TinyDecoder"/> can be.</summary>
public enum TinyFamily
{
    /// <summary>GPT-NeoX: d = 40, 4 heads of 10, 4 rotary dimensions, parallel residual, untied head, biases.</summary>
    NeoX,

    /// <summary>Llama: d = 36, 6 query heads of 6 over 2 key/value heads, SwiGLU, RMSNorm, no biases, untied head.</summary>
    Llama,

    /// <summary>Qwen2: d = 40, 4 query heads of 10 over 2 key/value heads, q/k/v biases, tied head.</summary>
    Qwen2,
}

/// <summary>
/// A tiny random decoder of one family written as a Hugging Face folder (config.json, model.safetensors and a byte-level
/// BPE tokenizer.json whose vocabulary fits the model), odd-sized so that no dimension is a power of two.
/// </summary>
public sealed class TinyDecoder : IDisposable
{
    /// <summary>vocab_size of every tiny decoder: the tokenizer's 256 bytes, its merges and its special tokens, plus spare rows.</summary>
    public const int Vocab = 300;

    /// <summary>The end-of-sequence token (<c>&lt;|endoftext|&gt;</c>), also the pad token.</summary>
    public const int EndOfText = 0;

    private readonly TempFolder temp = new();

    private TinyDecoder(TinyFamily family) => Family = family;

    public TinyFamily Family { get; }

    /// <summary>The folder to load.</summary>
    public string Folder => temp.Path;

    public static readonly TinyFamily[] All = [TinyFamily.NeoX, TinyFamily.Llama, TinyFamily.Qwen2];

    /// <summary>Writes a random model of <paramref name="family"/>; with <paramref name="zeroBiases"/> every bias (LayerNorm shifts too) is 0.</summary>
    public static TinyDecoder Create(TinyFamily family, int seed, bool zeroBiases = false)
    {
        var model = new TinyDecoder(family);
        var weights = new RandomWeights(seed);
        const int layers = 2;
        JsonObject config;
        if (family == TinyFamily.NeoX)
        {
            const int d = 40, inter = 72;
            weights.Add("gpt_neox.embed_in.weight", [Vocab, d], 1f);
            for (int l = 0; l < layers; l++)
            {
                string p = $"gpt_neox.layers.{l}.";
                weights.Add(p + "input_layernorm.weight", [d], 0.2f, 1f);
                weights.Add(p + "input_layernorm.bias", [d], 0.1f);
                weights.Add(p + "post_attention_layernorm.weight", [d], 0.2f, 1f);
                weights.Add(p + "post_attention_layernorm.bias", [d], 0.1f);
                weights.Add(p + "attention.query_key_value.weight", [3 * d, d], 0.4f);
                weights.Add(p + "attention.query_key_value.bias", [3 * d], 0.1f);
                weights.Add(p + "attention.dense.weight", [d, d], 0.3f);
                weights.Add(p + "attention.dense.bias", [d], 0.1f);
                weights.Add(p + "mlp.dense_h_to_4h.weight", [inter, d], 0.4f);
                weights.Add(p + "mlp.dense_h_to_4h.bias", [inter], 0.1f);
                weights.Add(p + "mlp.dense_4h_to_h.weight", [d, inter], 0.2f);
                weights.Add(p + "mlp.dense_4h_to_h.bias", [d], 0.1f);
            }

            weights.Add("gpt_neox.final_layer_norm.weight", [d], 0.2f, 1f);
            weights.Add("gpt_neox.final_layer_norm.bias", [d], 0.1f);
            weights.Add("embed_out.weight", [Vocab, d], 0.5f);
            config = new JsonObject
            {
                ["architectures"] = new JsonArray("GPTNeoXForCausalLM"),
                ["model_type"] = "gpt_neox",
                ["hidden_size"] = d,
                ["num_attention_heads"] = 4,
                ["num_hidden_layers"] = layers,
                ["intermediate_size"] = inter,
                ["hidden_act"] = "gelu",
                ["rotary_pct"] = 0.4,
                ["rotary_emb_base"] = 10000,
                ["layer_norm_eps"] = 1e-5,
                ["use_parallel_residual"] = true,
                ["tie_word_embeddings"] = false,
                ["bos_token_id"] = EndOfText,
                ["eos_token_id"] = EndOfText,
            };
        }
        else
        {
            bool llama = family == TinyFamily.Llama;
            int d = llama ? 36 : 40;
            int heads = llama ? 6 : 4;
            int kvHeads = 2;
            int hd = d / heads;
            int inter = llama ? 70 : 56;
            weights.Add("model.embed_tokens.weight", [Vocab, d], 1f);
            for (int l = 0; l < layers; l++)
            {
                string p = $"model.layers.{l}.";
                weights.Add(p + "input_layernorm.weight", [d], 0.2f, 1f);
                weights.Add(p + "post_attention_layernorm.weight", [d], 0.2f, 1f);
                weights.Add(p + "self_attn.q_proj.weight", [heads * hd, d], 0.4f);
                weights.Add(p + "self_attn.k_proj.weight", [kvHeads * hd, d], 0.4f);
                weights.Add(p + "self_attn.v_proj.weight", [kvHeads * hd, d], 0.4f);
                if (!llama)
                {
                    weights.Add(p + "self_attn.q_proj.bias", [heads * hd], 0.1f);
                    weights.Add(p + "self_attn.k_proj.bias", [kvHeads * hd], 0.1f);
                    weights.Add(p + "self_attn.v_proj.bias", [kvHeads * hd], 0.1f);
                }

                weights.Add(p + "self_attn.o_proj.weight", [d, heads * hd], 0.3f);
                weights.Add(p + "mlp.gate_proj.weight", [inter, d], 0.4f);
                weights.Add(p + "mlp.up_proj.weight", [inter, d], 0.4f);
                weights.Add(p + "mlp.down_proj.weight", [d, inter], 0.2f);
            }

            weights.Add("model.norm.weight", [d], 0.2f, 1f);
            if (llama)
            {
                weights.Add("lm_head.weight", [Vocab, d], 0.5f);
            }

            config = new JsonObject
            {
                ["architectures"] = new JsonArray(llama ? "LlamaForCausalLM" : "Qwen2ForCausalLM"),
                ["model_type"] = llama ? "llama" : "qwen2",
                ["hidden_size"] = d,
                ["num_attention_heads"] = heads,
                ["num_key_value_heads"] = kvHeads,
                ["num_hidden_layers"] = layers,
                ["intermediate_size"] = inter,
                ["hidden_act"] = "silu",
                ["rms_norm_eps"] = 1e-5,
                ["rope_theta"] = llama ? 10000.0 : 1e6,
                ["tie_word_embeddings"] = !llama,
                ["bos_token_id"] = EndOfText,
                ["eos_token_id"] = EndOfText,
            };
        }

        config["vocab_size"] = Vocab;
        config["max_position_embeddings"] = 64;
        if (zeroBiases)
        {
            foreach (var (name, values) in weights.Values)
            {
                if (name.EndsWith(".bias", StringComparison.Ordinal))
                {
                    Array.Clear(values);
                }
            }
        }

        File.WriteAllText(Path.Combine(model.Folder, "config.json"), config.ToJsonString());
        var entries = weights.Shapes.Select(e => (e.Name, "F32", e.Shape, LoadingFiles.F32(weights.Values[e.Name]))).ToList();
        File.WriteAllBytes(Path.Combine(model.Folder, "model.safetensors"), LoadingFiles.SafeTensors(entries));
        File.WriteAllText(Path.Combine(model.Folder, "tokenizer.json"), TinyByteLevelTokenizer.Json(), Encoding.UTF8);
        return model;
    }

    public void Dispose() => temp.Dispose();
}

/// <summary>
/// A byte-level BPE tokenizer.json: <c>&lt;|endoftext|&gt;</c> (id 0), the 256 byte symbols (ids 1..256, in GPT-2's
/// byte-to-character order) and a handful of merges of common English pairs.
/// </summary>
internal static class TinyByteLevelTokenizer
{
    private static readonly string[] Merges = ["Ġ t", "h e", "Ġt he", "i n", "a n", "e r", "Ġ a", "o n", "r e", "Ġ s", "Ġ c", "a t", "e n", "o r", "Ġ o", "Ġ w", "in g", "e d", "Ġ f", "Ġ b"];

    public static string Json()
    {
        var vocab = new JsonObject { ["<|endoftext|>"] = 0 };
        int next = 1;
        foreach (char c in ByteSymbols())
        {
            vocab[c.ToString()] = next++;
        }

        foreach (string merge in Merges)
        {
            vocab[merge.Replace(" ", string.Empty, StringComparison.Ordinal)] = next++;
        }

        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var root = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = new JsonArray(new JsonObject
            {
                ["id"] = 0, ["content"] = "<|endoftext|>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            }),
            ["normalizer"] = null,
            ["pre_tokenizer"] = byteLevel.DeepClone(),
            ["post_processor"] = byteLevel.DeepClone(),
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE",
                ["dropout"] = null,
                ["unk_token"] = null,
                ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null,
                ["fuse_unk"] = false,
                ["byte_fallback"] = false,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray(Merges.Select(m => (JsonNode)m).ToArray()),
            },
        };
        return root.ToJsonString();
    }

    // GPT-2's printable stand-ins for the 256 bytes: printable Latin-1 bytes stand for themselves, the rest take 256 + n.
    private static IEnumerable<char> ByteSymbols()
    {
        int shifted = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            yield return printable ? (char)b : (char)(256 + shifted++);
        }
    }
}
