using System.Text.Json;

namespace Headlight.Models.Loading;

/// <summary>Reads Hugging Face <c>config.json</c> files into typed, validated configurations.</summary>
internal static partial class HfConfig
{
    /// <summary>Reads a BERT or GPT-2 config, chosen by <c>model_type</c> or <c>architectures</c>.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The architecture is unknown or a field is missing or invalid.</exception>
    public static TransformerConfig Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var document = Json.Parse(path);
        var root = Root(path, document);
        return Family(path, root) switch
        {
            "gpt2" => ParseGpt2(path, root),
            var decoder when DecoderTypes.Contains(decoder) => ParseDecoder(path, root, decoder),
            var encoder => ParseEncoder(path, root, encoder),
        };
    }

    /// <summary>Reads a BERT config.</summary>
    /// <exception cref="ModelFormatException">The file describes another architecture, or a field is missing or invalid.</exception>
    public static BertConfig ReadBert(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var document = Json.Parse(path);
        var root = Root(path, document);
        string family = Family(path, root);
        return family != "gpt2" && !DecoderTypes.Contains(family) ? ParseEncoder(path, root, family) : throw new ModelFormatException(path, "model_type", "a BERT, RoBERTa or DistilBERT configuration", family);
    }

    /// <summary>Reads a GPT-2 config.</summary>
    /// <exception cref="ModelFormatException">The file describes another architecture, or a field is missing or invalid.</exception>
    public static Gpt2Config ReadGpt2(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var document = Json.Parse(path);
        var root = Root(path, document);
        string family = Family(path, root);
        return family == "gpt2" ? ParseGpt2(path, root) : throw new ModelFormatException(path, "model_type", "a GPT-2 configuration", family);
    }

    /// <summary>Maps a Hugging Face activation name to <see cref="ActivationFunction"/>, or null when unknown.</summary>
    public static ActivationFunction? ParseActivation(string name) => name switch
    {
        "gelu" or "gelu_python" => ActivationFunction.GeluErf,
        "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => ActivationFunction.GeluTanh,
        "relu" => ActivationFunction.Relu,
        _ => null,
    };

    private static JsonElement Root(string path, JsonDocument document)
    {
        var root = document.RootElement;
        return root.ValueKind == JsonValueKind.Object ? root : throw new ModelFormatException(path, "(root)", "a JSON object", root.ValueKind.ToString());
    }

    /// <summary>"bert", "roberta", "distilbert" or "gpt2", from model_type when present, else from architectures.</summary>
    private static string Family(string path, JsonElement root)
    {
        string? modelType = Json.OptionalString(path, root, "model_type");
        string[] architectures = Json.OptionalStrings(path, root, "architectures");
        if (modelType is not null)
        {
            return modelType switch
            {
                "bert" => "bert",
                "gpt2" => "gpt2",
                _ when DecoderTypes.Contains(modelType) => modelType,
                _ when EncoderFamilies.ContainsKey(modelType) => modelType,
                _ => throw new ModelFormatException(path, "model_type", "\"bert\", \"roberta\", \"distilbert\", \"gpt2\", \"gpt_neox\", \"llama\" or \"qwen2\"", $"\"{modelType}\""),
            };
        }

        if (architectures.Length == 0)
        {
            throw new ModelFormatException(path, "architectures", "model_type or an architectures list naming a Bert* or GPT2* class", "neither");
        }

        if (architectures.All(a => a.StartsWith("Bert", StringComparison.Ordinal)))
        {
            return "bert";
        }

        if (architectures.All(a => a.StartsWith("GPT2", StringComparison.Ordinal)))
        {
            return "gpt2";
        }

        foreach (var (family, prefix) in new[] { ("gpt_neox", "GPTNeoX"), ("llama", "Llama"), ("qwen2", "Qwen2") })
        {
            if (architectures.All(a => a.StartsWith(prefix, StringComparison.Ordinal)))
            {
                return family;
            }
        }

        foreach (var (family, prefix) in EncoderFamilies)
        {
            if (architectures.All(a => a.StartsWith(prefix, StringComparison.Ordinal)))
            {
                return family;
            }
        }

        throw new ModelFormatException(path, "architectures", "Bert*, Roberta*, DistilBert*, GPT2*, GPTNeoX*, Llama* or Qwen2* classes", "[" + string.Join(", ", architectures) + "]");
    }

    private static BertConfig ParseBert(string path, JsonElement root)
    {
        RefuseTokenClassifier(path, root);
        string act = Json.RequiredString(path, root, "hidden_act");
        var activation = ParseActivation(act) ?? throw new ModelFormatException(path, "hidden_act", "gelu, gelu_new, gelu_pytorch_tanh or relu", $"\"{act}\"");
        var config = new BertConfig(
            Json.RequiredPositiveInt(path, root, "hidden_size"),
            Json.RequiredPositiveInt(path, root, "num_hidden_layers"),
            Json.RequiredPositiveInt(path, root, "num_attention_heads"),
            Json.RequiredPositiveInt(path, root, "intermediate_size"),
            activation,
            Json.RequiredPositiveInt(path, root, "max_position_embeddings"),
            Json.RequiredPositiveNumber(path, root, "layer_norm_eps"),
            Json.RequiredPositiveInt(path, root, "vocab_size"),
            Json.RequiredPositiveInt(path, root, "type_vocab_size"))
        {
            Architectures = Json.OptionalStrings(path, root, "architectures"),
            IgnoredKeys = HfConfigKeys.Check(path, "bert", root),
        };

        if (config.HiddenSize % config.Heads != 0)
        {
            throw new ModelFormatException(path, "num_attention_heads", $"a divisor of hidden_size {config.HiddenSize}", $"{config.Heads}");
        }

        if (config.IsSequenceClassifier)
        {
            config = config with { Labels = Labels(path, root) };
        }

        config.Validate(path);
        return config;
    }

    // ---- RoBERTa and DistilBERT: BERT-shaped encoders with their own config keys ----

    /// <summary>The encoder families besides BERT, by model_type, with their architectures' class prefix.</summary>
    private static readonly Dictionary<string, string> EncoderFamilies = new(StringComparer.Ordinal)
    {
        ["roberta"] = "Roberta",
        ["distilbert"] = "DistilBert",
    };

    private static BertConfig ParseEncoder(string path, JsonElement root, string family) => family switch
    {
        "roberta" => ParseRoberta(path, root),
        "distilbert" => ParseDistilBert(path, root),
        _ => ParseBert(path, root),
    };

    // RoBERTa has BERT's keys; positions count from pad_token_id + 1 (HF create_position_ids_from_input_ids).
    private static BertConfig ParseRoberta(string path, JsonElement root)
    {
        int pad = 1;
        if (root.TryGetProperty("pad_token_id", out var padElement) && padElement.ValueKind != JsonValueKind.Null)
        {
            pad = padElement.ValueKind == JsonValueKind.Number && padElement.TryGetInt32(out int p) && p >= 0
                ? p
                : throw new ModelFormatException(path, "pad_token_id", "a non-negative integer", padElement.GetRawText());
        }

        var config = ParseBert(path, root) with { ModelType = "roberta", PositionPaddingId = pad };
        if (pad + 1 >= config.MaxPositions)
        {
            throw new ModelFormatException(path, "max_position_embeddings", $"more than pad_token_id + 1 = {pad + 1} (RoBERTa positions start after the pad row)", $"{config.MaxPositions}");
        }

        return config;
    }

    // DistilBERT: dim, n_layers, n_heads, hidden_dim, activation; no token types; LayerNorm eps fixed at 1e-12.
    private static BertConfig ParseDistilBert(string path, JsonElement root)
    {
        RefuseTokenClassifier(path, root);
        if (root.TryGetProperty("sinusoidal_pos_embds", out var sinusoidal) && sinusoidal.ValueKind == JsonValueKind.True)
        {
            throw new ModelFormatException(path, "sinusoidal_pos_embds", "false (learned position embeddings)", "true (sinusoidal positions are not supported yet)");
        }

        string act = root.TryGetProperty("activation", out _) ? Json.RequiredString(path, root, "activation") : "gelu";
        var activation = ParseActivation(act) ?? throw new ModelFormatException(path, "activation", "gelu, gelu_new, gelu_pytorch_tanh or relu", $"\"{act}\"");
        var config = new BertConfig(
            Json.RequiredPositiveInt(path, root, "dim"),
            Json.RequiredPositiveInt(path, root, "n_layers"),
            Json.RequiredPositiveInt(path, root, "n_heads"),
            Json.RequiredPositiveInt(path, root, "hidden_dim"),
            activation,
            Json.RequiredPositiveInt(path, root, "max_position_embeddings"),
            1e-12,
            Json.RequiredPositiveInt(path, root, "vocab_size"),
            TypeVocabSize: 0)
        {
            Architectures = Json.OptionalStrings(path, root, "architectures"),
            ModelType = "distilbert",
            IgnoredKeys = HfConfigKeys.Check(path, "distilbert", root),
        };

        if (config.HiddenSize % config.Heads != 0)
        {
            throw new ModelFormatException(path, "n_heads", $"a divisor of dim {config.HiddenSize}", $"{config.Heads}");
        }

        if (config.IsSequenceClassifier)
        {
            config = config with { Labels = Labels(path, root) };
        }

        config.Validate(path);
        return config;
    }

    // Token classification (NER) heads have per-token outputs that no target or command reads yet.
    private static void RefuseTokenClassifier(string path, JsonElement root)
    {
        string? token = Json.OptionalStrings(path, root, "architectures").FirstOrDefault(a => a.EndsWith("ForTokenClassification", StringComparison.Ordinal));
        if (token is not null)
        {
            throw new ModelFormatException(path, "architectures", "a base model or a *ForSequenceClassification head", $"{token} (token classification is not supported yet)");
        }
    }

    // ---- end of RoBERTa and DistilBERT ----

    private static Gpt2Config ParseGpt2(string path, JsonElement root)
    {
        string act = Json.RequiredString(path, root, "activation_function");
        var activation = ParseActivation(act) ?? throw new ModelFormatException(path, "activation_function", "gelu_new, gelu, gelu_pytorch_tanh or relu", $"\"{act}\"");
        int embed = Json.RequiredPositiveInt(path, root, "n_embd");
        int inner;
        if (root.TryGetProperty("n_inner", out var innerElement) && innerElement.ValueKind != JsonValueKind.Null)
        {
            inner = Json.PositiveInt(path, innerElement, "n_inner");
        }
        else if (4L * embed > int.MaxValue)
        {
            throw new ModelFormatException(path, "n_embd", $"at most {int.MaxValue / 4} when n_inner is null (the inner width is 4·n_embd)", $"{embed}");
        }
        else
        {
            inner = 4 * embed;
        }

        var config = new Gpt2Config(
            embed,
            Json.RequiredPositiveInt(path, root, "n_layer"),
            Json.RequiredPositiveInt(path, root, "n_head"),
            inner,
            activation,
            Json.RequiredPositiveInt(path, root, "n_positions"),
            Json.RequiredPositiveNumber(path, root, "layer_norm_epsilon"),
            Json.RequiredPositiveInt(path, root, "vocab_size"))
        {
            Architectures = Json.OptionalStrings(path, root, "architectures"),
            IgnoredKeys = HfConfigKeys.Check(path, "gpt2", root),
            TieWordEmbeddings = HfConfigKeys.OptionalBool(path, root, "tie_word_embeddings", true),
        };

        if (config.HiddenSize % config.Heads != 0)
        {
            throw new ModelFormatException(path, "n_head", $"a divisor of n_embd {config.HiddenSize}", $"{config.Heads}");
        }

        config.Validate(path);
        return config;
    }

    /// <summary>Class labels from id2label ({"0": "NEGATIVE", …}, ids 0..n-1), else num_labels (default 2) placeholders.</summary>
    private static IReadOnlyList<string> Labels(string path, JsonElement root)
    {
        if (root.TryGetProperty("id2label", out var map) && map.ValueKind == JsonValueKind.Object)
        {
            var labels = new SortedDictionary<int, string>();
            foreach (var entry in map.EnumerateObject())
            {
                if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int id) || entry.Value.ValueKind != JsonValueKind.String)
                {
                    throw new ModelFormatException(path, $"id2label.{entry.Name}", "integer ids mapping to label strings", entry.Value.GetRawText());
                }

                labels[id] = entry.Value.GetString()!;
            }

            if (labels.Count == 0 || labels.Keys.First() != 0 || labels.Keys.Last() != labels.Count - 1)
            {
                throw new ModelFormatException(path, "id2label", "ids 0..n-1", "[" + string.Join(", ", labels.Keys) + "]");
            }

            return labels.Values.ToArray();
        }

        // Made on demand: num_labels alone must not cost memory (100,000,000 labels took 12.5 GB).
        int count = root.TryGetProperty("num_labels", out var n) ? Json.PositiveInt(path, n, "num_labels") : 2;
        return new PlaceholderLabels(count);
    }
}
