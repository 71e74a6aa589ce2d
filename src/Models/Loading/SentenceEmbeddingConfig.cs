using System.Text.Json;

namespace Headlight.Models.Loading;

/// <summary>A sentence-transformers pipeline after the transformer: pooling and optional L2 normalisation.</summary>
/// <param name="Pooling">The pooling mode.</param>
/// <param name="Normalize">Whether a <c>Normalize</c> module follows pooling.</param>
/// <param name="Dimension">The token vector width the pooling module declares (0 if it does not).</param>
internal sealed record SentenceEmbeddingConfig(PoolingMode Pooling, bool Normalize, int Dimension)
{
    /// <summary><c>sentence_bert_config.json</c>'s <c>max_seq_length</c>: the tokenizer truncates to it; null when the file or key is absent.</summary>
    public int? MaxSequenceLength { get; init; }

    private const string ModuleTypePrefix = "sentence_transformers.models.";

    /// <summary>
    /// Reads a sentence-transformers folder: <c>modules.json</c> lists the modules in order; the
    /// Pooling module's folder holds <c>config.json</c> with one <c>pooling_mode_*</c> flag set.
    /// </summary>
    /// <exception cref="FileNotFoundException">modules.json or the pooling config is missing.</exception>
    /// <exception cref="ModelFormatException">A module is unsupported, or the pooling config is not exactly one known mode.</exception>
    public static SentenceEmbeddingConfig Read(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        string modulesPath = Path.Combine(folder, "modules.json");
        using var modules = Json.Parse(modulesPath);
        if (modules.RootElement.ValueKind != JsonValueKind.Array)
        {
            throw new ModelFormatException(modulesPath, "(root)", "an array of modules", modules.RootElement.ValueKind.ToString());
        }

        string? poolingFolder = null;
        bool normalize = false;
        int index = 0;
        foreach (var module in modules.RootElement.EnumerateArray())
        {
            string field = $"[{index++}]";
            string type = Json.RequiredString(modulesPath, module, "type", field);
            string path = module.TryGetProperty("path", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString()! : string.Empty;
            string shortType = type.StartsWith(ModuleTypePrefix, StringComparison.Ordinal) ? type[ModuleTypePrefix.Length..] : type;
            switch (shortType)
            {
                case "Transformer":
                    break;
                case "Pooling":
                    poolingFolder = path;
                    break;
                case "Normalize":
                    normalize = true;
                    break;
                default:
                    throw new ModelFormatException(modulesPath, $"{field}.type", "Transformer, Pooling or Normalize modules", $"'{type}' (not supported)");
            }
        }

        if (poolingFolder is null)
        {
            throw new ModelFormatException(modulesPath, "type", "a sentence_transformers.models.Pooling module", "none");
        }

        var (pooling, dimension) = ReadPooling(Path.Combine(folder, poolingFolder, "config.json"));
        return new SentenceEmbeddingConfig(pooling, normalize, dimension) { MaxSequenceLength = ReadMaxSequenceLength(folder) };
    }

    /// <summary>max_seq_length from <c>sentence_bert_config.json</c> (null when absent or null; sentence-transformers then uses the tokenizer's limit).</summary>
    /// <exception cref="ModelFormatException">The value is not a positive integer.</exception>
    public static int? ReadMaxSequenceLength(string folder)
    {
        string path = Path.Combine(folder, "sentence_bert_config.json");
        if (!File.Exists(path))
        {
            return null;
        }

        using var document = Json.Parse(path);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, "(root)", "a JSON object", root.ValueKind.ToString());
        }

        return root.TryGetProperty("max_seq_length", out var value) && value.ValueKind != JsonValueKind.Null
            ? Json.PositiveInt(path, value, "max_seq_length")
            : null;
    }

    /// <summary>Reads a Pooling module's <c>config.json</c>.</summary>
    /// <exception cref="ModelFormatException">No mode, several modes, or an unsupported mode is set.</exception>
    public static (PoolingMode Mode, int Dimension) ReadPooling(string configPath)
    {
        using var document = Json.Parse(configPath);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(configPath, "(root)", "a JSON object", root.ValueKind.ToString());
        }

        var modes = new List<(string Key, PoolingMode? Mode)>();
        foreach (var property in root.EnumerateObject())
        {
            if (!property.Name.StartsWith("pooling_mode_", StringComparison.Ordinal))
            {
                continue;
            }

            if (property.Value.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
            {
                throw new ModelFormatException(configPath, property.Name, "true or false", property.Value.GetRawText());
            }

            if (property.Value.ValueKind == JsonValueKind.True)
            {
                PoolingMode? mode = property.Name switch
                {
                    "pooling_mode_cls_token" => PoolingMode.Cls,
                    "pooling_mode_mean_tokens" => PoolingMode.Mean,
                    "pooling_mode_max_tokens" => PoolingMode.Max,
                    "pooling_mode_mean_sqrt_len_tokens" => PoolingMode.MeanSqrtLength,
                    "pooling_mode_lasttoken" => PoolingMode.LastToken,
                    _ => null,
                };
                modes.Add((property.Name, mode));
            }
        }

        if (modes.Count != 1)
        {
            throw new ModelFormatException(configPath, "pooling_mode_*", "exactly one pooling mode set to true", modes.Count == 0 ? "none" : string.Join(", ", modes.Select(m => m.Key)));
        }

        if (modes[0].Mode is not { } found)
        {
            throw new ModelFormatException(configPath, modes[0].Key, "cls, mean, max, mean_sqrt_len or lasttoken pooling", $"{modes[0].Key} (not supported yet)");
        }

        int dimension = 0;
        if (root.TryGetProperty("word_embedding_dimension", out var d))
        {
            dimension = Json.PositiveInt(configPath, d, "word_embedding_dimension");
        }

        return (found, dimension);
    }
}
