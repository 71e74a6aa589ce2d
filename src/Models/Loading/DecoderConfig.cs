using System.Globalization;
using System.Text.Json;

namespace Headlight.Models.Loading;

/// <summary>
/// A GPT-NeoX, Llama or Qwen2 config.json: the sizes <see cref="TransformerConfig"/> holds, plus grouped-query heads,
/// rotary embeddings, the norm, the MLP and which projections carry biases.
/// </summary>
internal sealed record DecoderConfig(string ModelType, int HiddenSize, int Layers, int Heads, int IntermediateSize, ActivationFunction Activation, int MaxPositions, double LayerNormEps, int VocabSize)
    : TransformerConfig(HiddenSize, Layers, Heads, IntermediateSize, Activation, MaxPositions, LayerNormEps, VocabSize)
{
    private protected override string Family => ModelType;

    public required int KvHeads { get; init; }

    public required int RotaryDims { get; init; }

    public required double RopeTheta { get; init; }

    public Llama3RopeScaling? RopeScaling { get; init; }

    public bool TieWordEmbeddings { get; init; }

    public IReadOnlyList<int> EndOfSequenceIds { get; init; } = [];

    public bool IsNeoX => ModelType == "gpt_neox";

    /// <summary>GPT-NeoX's attention_bias (true by default) covers query_key_value and dense; Qwen2 has q/k/v biases only.</summary>
    public bool QkvBias { get; init; }

    public bool OutputBias { get; init; }

    public bool MlpBias { get; init; }
}

/// <summary>Parsing of the decoder families' config.json files.</summary>
internal static partial class HfConfig
{
    /// <summary>The decoder model_types besides GPT-2.</summary>
    public static readonly string[] DecoderTypes = ["gpt_neox", "llama", "qwen2"];

    /// <summary>Reads a GPT-NeoX, Llama or Qwen2 config.</summary>
    /// <exception cref="ModelFormatException">Another architecture, or a field missing, invalid or set to something not implemented.</exception>
    public static DecoderConfig ReadDecoder(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var document = Json.Parse(path);
        var root = Root(path, document);
        string family = Family(path, root);
        return DecoderTypes.Contains(family) ? ParseDecoder(path, root, family) : throw new ModelFormatException(path, "model_type", "\"gpt_neox\", \"llama\" or \"qwen2\"", $"\"{family}\"");
    }

    private static DecoderConfig ParseDecoder(string path, JsonElement root, string modelType)
    {
        bool neox = modelType == "gpt_neox";
        var ignored = HfConfigKeys.Check(path, modelType, root);
        string act = Json.RequiredString(path, root, "hidden_act");
        ActivationFunction activation;
        if (neox)
        {
            activation = ParseActivation(act) is { } a && a != ActivationFunction.Relu
                ? a
                : throw new ModelFormatException(path, "hidden_act", "gelu, gelu_new, gelu_fast or gelu_pytorch_tanh", $"\"{act}\"");
        }
        else
        {
            activation = act == "silu" ? ActivationFunction.GeluErf : throw new ModelFormatException(path, "hidden_act", "\"silu\" (the SwiGLU MLP)", $"\"{act}\"");
        }

        int hidden = Json.RequiredPositiveInt(path, root, "hidden_size");
        int heads = Json.RequiredPositiveInt(path, root, "num_attention_heads");
        if (hidden % heads != 0)
        {
            throw new ModelFormatException(path, "num_attention_heads", $"a divisor of hidden_size {hidden}", $"{heads}");
        }

        int headDim = hidden / heads;
        if (root.TryGetProperty("head_dim", out var headDimElement) && headDimElement.ValueKind != JsonValueKind.Null
            && Json.PositiveInt(path, headDimElement, "head_dim") != headDim)
        {
            throw new ModelFormatException(path, "head_dim", $"hidden_size / num_attention_heads = {headDim} (a head_dim of its own is not implemented)", headDimElement.GetRawText());
        }

        int kvHeads = heads;
        if (!neox && root.TryGetProperty("num_key_value_heads", out var kvElement) && kvElement.ValueKind != JsonValueKind.Null)
        {
            kvHeads = Json.PositiveInt(path, kvElement, "num_key_value_heads");
            if (heads % kvHeads != 0)
            {
                throw new ModelFormatException(path, "num_key_value_heads", $"a divisor of num_attention_heads {heads}", $"{kvHeads}");
            }
        }

        string thetaKey = neox && !root.TryGetProperty("rope_theta", out _) ? "rotary_emb_base" : "rope_theta";
        double theta = root.TryGetProperty(thetaKey, out _) ? Json.RequiredPositiveNumber(path, root, thetaKey) : 10000;
        int rotaryDims = headDim;
        if (neox)
        {
            string pctKey = root.TryGetProperty("partial_rotary_factor", out _) ? "partial_rotary_factor" : "rotary_pct";
            double pct = root.TryGetProperty(pctKey, out _) ? Json.RequiredPositiveNumber(path, root, pctKey) : 0.25;
            if (pct > 1)
            {
                throw new ModelFormatException(path, pctKey, "a fraction of the head in (0, 1]", pct.ToString(CultureInfo.InvariantCulture));
            }

            // Python's int() truncates.
            rotaryDims = (int)(headDim * pct);
            if (rotaryDims % 2 != 0)
            {
                throw new ModelFormatException(path, pctKey, $"a fraction giving an even number of rotary dimensions of the {headDim}-wide head", $"{pct.ToString(CultureInfo.InvariantCulture)} (int({headDim}·{pct.ToString(CultureInfo.InvariantCulture)}) = {rotaryDims})");
            }
        }

        string epsKey = neox ? "layer_norm_eps" : "rms_norm_eps";
        var config = new DecoderConfig(
            modelType,
            hidden,
            Json.RequiredPositiveInt(path, root, "num_hidden_layers"),
            heads,
            Json.RequiredPositiveInt(path, root, "intermediate_size"),
            activation,
            Json.RequiredPositiveInt(path, root, "max_position_embeddings"),
            root.TryGetProperty(epsKey, out _) ? Json.RequiredPositiveNumber(path, root, epsKey) : neox ? 1e-5 : 1e-6,
            Json.RequiredPositiveInt(path, root, "vocab_size"))
        {
            KvHeads = kvHeads,
            RotaryDims = rotaryDims,
            RopeTheta = theta,
            RopeScaling = RopeScaling(path, root),
            TieWordEmbeddings = HfConfigKeys.OptionalBool(path, root, "tie_word_embeddings", !neox && modelType != "llama"),
            EndOfSequenceIds = TokenIds(path, root, "eos_token_id"),
            QkvBias = modelType switch
            {
                "gpt_neox" => HfConfigKeys.OptionalBool(path, root, "attention_bias", true),
                "qwen2" => true,
                _ => HfConfigKeys.OptionalBool(path, root, "attention_bias", false),
            },
            OutputBias = modelType switch
            {
                "gpt_neox" => HfConfigKeys.OptionalBool(path, root, "attention_bias", true),
                "qwen2" => false,
                _ => HfConfigKeys.OptionalBool(path, root, "attention_bias", false),
            },
            MlpBias = neox || HfConfigKeys.OptionalBool(path, root, "mlp_bias", false),
            IgnoredKeys = ignored,
        };

        config.Validate(path);
        return config;
    }

    // null, {"rope_type": "default"} or Llama 3's {"rope_type": "llama3", factor, low_freq_factor, high_freq_factor,
    // original_max_position_embeddings}; every other type (linear, dynamic, yarn, longrope, …) is refused.
    private static Llama3RopeScaling? RopeScaling(string path, JsonElement root)
    {
        if (!root.TryGetProperty("rope_scaling", out var scaling) || scaling.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (scaling.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, "rope_scaling", "null or an object", scaling.GetRawText());
        }

        string typeKey = scaling.TryGetProperty("rope_type", out _) ? "rope_type" : "type";
        string? type = Json.OptionalString(path, scaling, typeKey);
        switch (type)
        {
            case "default":
                return null;
            case "llama3":
                var result = new Llama3RopeScaling(
                    Json.RequiredPositiveNumber(path, scaling, "factor"),
                    Json.RequiredPositiveNumber(path, scaling, "low_freq_factor"),
                    Json.RequiredPositiveNumber(path, scaling, "high_freq_factor"),
                    Json.RequiredPositiveInt(path, scaling, "original_max_position_embeddings"));
                if (result.HighFrequencyFactor <= result.LowFrequencyFactor)
                {
                    throw new ModelFormatException(path, "rope_scaling.high_freq_factor", $"above low_freq_factor ({result.LowFrequencyFactor.ToString(CultureInfo.InvariantCulture)})", result.HighFrequencyFactor.ToString(CultureInfo.InvariantCulture));
                }

                return result;
            default:
                throw new ModelFormatException(path, $"rope_scaling.{typeKey}", "\"default\" or \"llama3\" (other rotary scalings are not implemented)", type is null ? "nothing" : $"\"{type}\"");
        }
    }

    // An id or a list of ids (Llama 3 lists several end-of-turn tokens); null or absent gives none.
    private static int[] TokenIds(string path, JsonElement root, string key)
    {
        if (!root.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return [];
        }

        static bool Id(JsonElement e, out int id) { id = -1; return e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out id) && id >= 0; }
        if (Id(value, out int single))
        {
            return [single];
        }

        if (value.ValueKind == JsonValueKind.Array)
        {
            var ids = new List<int>();
            foreach (var e in value.EnumerateArray())
            {
                if (!Id(e, out int id))
                {
                    throw new ModelFormatException(path, key, "a non-negative token id or a list of them", value.GetRawText());
                }

                ids.Add(id);
            }

            return ids.ToArray();
        }

        throw new ModelFormatException(path, key, "a non-negative token id or a list of them", value.GetRawText());
    }
}
