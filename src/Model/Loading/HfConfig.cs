using System.Text.Json;

namespace Headlight.Models.Loading;

/// <summary>Reads Hugging Face <c>config.json</c> files into typed, validated configurations.</summary>
internal static class HfConfig
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
            "bert" => ParseBert(path, root),
            _ => ParseGpt2(path, root),
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
        return family == "bert" ? ParseBert(path, root) : throw new ModelFormatException(path, "model_type", "a BERT configuration", family);
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

    /// <summary>"bert" or "gpt2", from model_type when present, else from architectures.</summary>
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
                _ => throw new ModelFormatException(path, "model_type", "\"bert\" or \"gpt2\"", $"\"{modelType}\""),
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

        throw new ModelFormatException(path, "architectures", "Bert* or GPT2* classes", "[" + string.Join(", ", architectures) + "]");
    }

    private static BertConfig ParseBert(string path, JsonElement root)
    {
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

    private static Gpt2Config ParseGpt2(string path, JsonElement root)
    {
        string act = Json.RequiredString(path, root, "activation_function");
        var activation = ParseActivation(act) ?? throw new ModelFormatException(path, "activation_function", "gelu_new, gelu, gelu_pytorch_tanh or relu", $"\"{act}\"");
        int embed = Json.RequiredPositiveInt(path, root, "n_embd");
        int inner = 4 * embed;
        if (root.TryGetProperty("n_inner", out var innerElement) && innerElement.ValueKind != JsonValueKind.Null)
        {
            inner = Json.PositiveInt(path, innerElement, "n_inner");
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
    private static string[] Labels(string path, JsonElement root)
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

        int count = root.TryGetProperty("num_labels", out var n) ? Json.PositiveInt(path, n, "num_labels") : 2;
        return Enumerable.Range(0, count).Select(i => $"LABEL_{i}").ToArray();
    }
}
