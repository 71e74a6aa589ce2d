using System.Text.Json;

namespace Headlight.Models.Loading;

/// <summary>The feed-forward activation of a transformer block.</summary>
public enum ActivationFunction
{
    /// <summary>Exact GELU: x·Φ(x) with the error function (BERT's <c>gelu</c>).</summary>
    GeluErf,

    /// <summary>GELU's tanh approximation (GPT-2's <c>gelu_new</c>).</summary>
    GeluTanh,

    /// <summary>max(0, x).</summary>
    Relu,
}

/// <summary>The shape of a transformer, whatever its family.</summary>
/// <param name="HiddenSize">The residual stream width d.</param>
/// <param name="Layers">The number of blocks.</param>
/// <param name="Heads">Attention heads per block.</param>
/// <param name="IntermediateSize">The feed-forward inner width.</param>
/// <param name="Activation">The feed-forward activation.</param>
/// <param name="MaxPositions">The number of learned position embeddings.</param>
/// <param name="LayerNormEps">LayerNorm's epsilon (added to the variance over d).</param>
/// <param name="VocabSize">The number of token embeddings.</param>
public abstract record TransformerConfig(int HiddenSize, int Layers, int Heads, int IntermediateSize, ActivationFunction Activation, int MaxPositions, double LayerNormEps, int VocabSize)
{
    /// <summary>The width of one head: <see cref="HiddenSize"/> / <see cref="Heads"/>.</summary>
    public int HeadDim => Heads > 0 ? HiddenSize / Heads : 0;

    /// <summary>Checks sizes are positive, the width splits into heads and epsilon is positive.</summary>
    /// <param name="source">The file or description named in errors.</param>
    /// <exception cref="ModelFormatException">A value is out of range.</exception>
    public virtual void Validate(string source)
    {
        Positive(source, Key(nameof(HiddenSize)), HiddenSize);
        Positive(source, Key(nameof(Layers)), Layers);
        Positive(source, Key(nameof(Heads)), Heads);
        Positive(source, Key(nameof(IntermediateSize)), IntermediateSize);
        Positive(source, Key(nameof(MaxPositions)), MaxPositions);
        Positive(source, Key(nameof(VocabSize)), VocabSize);
        if (HiddenSize % Heads != 0)
        {
            throw new ModelFormatException(source, Key(nameof(Heads)), $"a divisor of {Key(nameof(HiddenSize))} {HiddenSize}", $"{Heads}");
        }

        // The float the kernels use must hold it: 1e300 is finite as a double, infinite as a float.
        if (!double.IsFinite(LayerNormEps) || LayerNormEps <= 0 || !float.IsFinite((float)LayerNormEps) || (float)LayerNormEps <= 0)
        {
            throw new ModelFormatException(source, Key(nameof(LayerNormEps)), "a positive number a 32-bit float holds (1.2e-38 to 3.4e38)", LayerNormEps.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        // Every weight matrix the sizes imply must fit one tensor (checked 64-bit products).
        Fits(source, nameof(HiddenSize), 3L * HiddenSize, "3·{0} (the fused q, k, v width)", int.MaxValue);
        Fits(source, nameof(HiddenSize), 3L * HiddenSize * HiddenSize, "3·{0}² (the q, k, v weights)", Array.MaxLength);
        Fits(source, nameof(IntermediateSize), (long)HiddenSize * IntermediateSize, $"{Key(nameof(HiddenSize))}·{{0}} (a feed-forward weight)", Array.MaxLength);
        Fits(source, nameof(VocabSize), (long)VocabSize * HiddenSize, $"{{0}}·{Key(nameof(HiddenSize))} (the token embeddings)", Array.MaxLength);
        Fits(source, nameof(MaxPositions), (long)MaxPositions * HiddenSize, $"{{0}}·{Key(nameof(HiddenSize))} (the position embeddings)", Array.MaxLength);
    }

    /// <summary>The config.json key of a property: errors name what the user wrote.</summary>
    private protected string Key(string property) => (this is Gpt2Config, property) switch
    {
        (false, nameof(HiddenSize)) => "hidden_size",
        (false, nameof(Layers)) => "num_hidden_layers",
        (false, nameof(Heads)) => "num_attention_heads",
        (false, nameof(IntermediateSize)) => "intermediate_size",
        (false, nameof(MaxPositions)) => "max_position_embeddings",
        (false, nameof(LayerNormEps)) => "layer_norm_eps",
        (false, "TypeVocabSize") => "type_vocab_size",
        (true, nameof(HiddenSize)) => "n_embd",
        (true, nameof(Layers)) => "n_layer",
        (true, nameof(Heads)) => "n_head",
        (true, nameof(IntermediateSize)) => "n_inner",
        (true, nameof(MaxPositions)) => "n_positions",
        (true, nameof(LayerNormEps)) => "layer_norm_epsilon",
        (_, nameof(VocabSize)) => "vocab_size",
        _ => property,
    };

    private void Fits(string source, string property, long value, string what, long limit)
    {
        if (value > limit)
        {
            string key = Key(property);
            throw new ModelFormatException(source, key, string.Format(System.Globalization.CultureInfo.InvariantCulture, what, key) + $" of at most {limit} elements", $"{value} from {key} = {Size(property)}");
        }
    }

    private int Size(string property) => property switch
    {
        nameof(HiddenSize) => HiddenSize,
        nameof(IntermediateSize) => IntermediateSize,
        nameof(VocabSize) => VocabSize,
        _ => MaxPositions,
    };

    /// <summary>Throws unless <paramref name="value"/> is positive.</summary>
    protected static void Positive(string source, string field, int value)
    {
        if (value <= 0)
        {
            throw new ModelFormatException(source, field, "a positive integer", $"{value}");
        }
    }
}

/// <summary>A BERT encoder's configuration (post-LayerNorm blocks, learned positions and token types).</summary>
/// <param name="HiddenSize">The residual stream width d.</param>
/// <param name="Layers">The number of blocks.</param>
/// <param name="Heads">Attention heads per block.</param>
/// <param name="IntermediateSize">The feed-forward inner width.</param>
/// <param name="Activation">The feed-forward activation.</param>
/// <param name="MaxPositions">The number of learned position embeddings.</param>
/// <param name="LayerNormEps">LayerNorm's epsilon.</param>
/// <param name="VocabSize">The number of token embeddings.</param>
/// <param name="TypeVocabSize">The number of token type (segment) embeddings.</param>
public sealed record BertConfig(int HiddenSize, int Layers, int Heads, int IntermediateSize, ActivationFunction Activation, int MaxPositions, double LayerNormEps, int VocabSize, int TypeVocabSize)
    : TransformerConfig(HiddenSize, Layers, Heads, IntermediateSize, Activation, MaxPositions, LayerNormEps, VocabSize)
{
    /// <summary>The <c>architectures</c> list of config.json (empty when unknown).</summary>
    public IReadOnlyList<string> Architectures { get; init; } = [];

    /// <summary>Class labels of a sequence classifier (from <c>id2label</c>, else <c>num_labels</c> placeholders); empty for other heads.</summary>
    public IReadOnlyList<string> Labels { get; init; } = [];

    /// <summary>Whether the checkpoint is a <c>BertForSequenceClassification</c> (pooler plus a classifier layer).</summary>
    public bool IsSequenceClassifier => Architectures.Contains("BertForSequenceClassification");

    /// <inheritdoc />
    public override void Validate(string source)
    {
        base.Validate(source);
        Positive(source, Key(nameof(TypeVocabSize)), TypeVocabSize);
    }
}

/// <summary>A GPT-2 decoder's configuration (pre-LayerNorm blocks, causal attention, LM head tied to the token embeddings).</summary>
/// <param name="HiddenSize">n_embd.</param>
/// <param name="Layers">n_layer.</param>
/// <param name="Heads">n_head.</param>
/// <param name="IntermediateSize">n_inner (4·n_embd when null).</param>
/// <param name="Activation">activation_function.</param>
/// <param name="MaxPositions">n_positions.</param>
/// <param name="LayerNormEps">layer_norm_epsilon.</param>
/// <param name="VocabSize">vocab_size.</param>
public sealed record Gpt2Config(int HiddenSize, int Layers, int Heads, int IntermediateSize, ActivationFunction Activation, int MaxPositions, double LayerNormEps, int VocabSize)
    : TransformerConfig(HiddenSize, Layers, Heads, IntermediateSize, Activation, MaxPositions, LayerNormEps, VocabSize)
{
    /// <summary>The <c>architectures</c> list of config.json (empty when unknown).</summary>
    public IReadOnlyList<string> Architectures { get; init; } = [];
}

/// <summary>Reads Hugging Face <c>config.json</c> files into typed, validated configurations.</summary>
public static class HfConfig
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

/// <summary>The labels LABEL_0 … LABEL_{n−1} that Hugging Face gives a classifier without id2label, each made when read.</summary>
internal sealed class PlaceholderLabels(int count) : IReadOnlyList<string>
{
    public int Count => count;

    public string this[int index] => (uint)index < (uint)count
        ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"LABEL_{index}")
        : throw new ArgumentOutOfRangeException(nameof(index), index, $"labels are 0 to {count - 1}");

    public IEnumerator<string> GetEnumerator()
    {
        for (int i = 0; i < count; i++)
        {
            yield return this[i];
        }
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
