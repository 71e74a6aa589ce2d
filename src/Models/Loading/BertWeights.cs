using System.Globalization;
using System.Text.RegularExpressions;

namespace Headlight.Models.Loading;

/// <summary>
/// Canonical BERT weight names (Hugging Face's, without the <c>bert.</c> prefix) and the check that
/// a <see cref="WeightSet"/> holds every tensor a configuration needs, with the right shapes.
/// </summary>
internal static partial class BertWeights
{
    /// <summary>The projections of one layer that are linear layers, in forward order.</summary>
    public static IReadOnlyList<string> LayerLinears { get; } =
    [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense",
    ];

    /// <summary>The LayerNorms of one layer.</summary>
    public static IReadOnlyList<string> LayerNorms { get; } = ["attention.output.LayerNorm", "output.LayerNorm"];

    /// <summary>The name prefix of layer <paramref name="layer"/>: <c>encoder.layer.{i}.</c>.</summary>
    public static string Layer(int layer) => $"encoder.layer.{layer}.";

    /// <summary>Strips a model-class prefix (<c>bert.</c>) so every source uses one set of names.</summary>
    public static string Canonical(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.StartsWith("bert.", StringComparison.Ordinal) ? name["bert.".Length..] : name;
    }

    /// <summary>
    /// A checkpoint tensor's canonical BERT name for a family (<c>bert</c>, <c>roberta</c>, <c>distilbert</c>). RoBERTa's
    /// classification head (dense + tanh + out_proj on &lt;s&gt;) has BERT's pooler + classifier shape and takes their names;
    /// DistilBERT's layers and head (pre_classifier + ReLU + classifier) are renamed part by part.
    /// </summary>
    public static string Canonical(string name, string modelType)
    {
        ArgumentNullException.ThrowIfNull(name);
        switch (modelType)
        {
            case "roberta":
                name = name.StartsWith("roberta.", StringComparison.Ordinal) ? name["roberta.".Length..] : name;
                return name.StartsWith("classifier.dense.", StringComparison.Ordinal) ? "pooler.dense." + name["classifier.dense.".Length..]
                    : name.StartsWith("classifier.out_proj.", StringComparison.Ordinal) ? "classifier." + name["classifier.out_proj.".Length..]
                    : name;
            case "distilbert":
                name = name.StartsWith("distilbert.", StringComparison.Ordinal) ? name["distilbert.".Length..] : name;
                if (name.StartsWith("pre_classifier.", StringComparison.Ordinal))
                {
                    return "pooler.dense." + name["pre_classifier.".Length..];
                }

                var match = DistilBertLayer().Match(name);
                if (!match.Success)
                {
                    return name;
                }

                string part = match.Groups[2].Value switch
                {
                    "attention.q_lin" => "attention.self.query",
                    "attention.k_lin" => "attention.self.key",
                    "attention.v_lin" => "attention.self.value",
                    "attention.out_lin" => "attention.output.dense",
                    "sa_layer_norm" => "attention.output.LayerNorm",
                    "ffn.lin1" => "intermediate.dense",
                    "ffn.lin2" => "output.dense",
                    "output_layer_norm" => "output.LayerNorm",
                    var other => other,
                };
                return $"encoder.layer.{match.Groups[1].Value}.{part}.{match.Groups[3].Value}";
            default:
                return Canonical(name);
        }
    }

    /// <summary>
    /// Checks that every tensor the configuration needs exists with its shape (linear layers in
    /// either layout); the first missing or misshapen tensor is reported with expected and found shape.
    /// </summary>
    /// <param name="weights">The loaded weights.</param>
    /// <param name="config">The configuration they must match.</param>
    /// <param name="requirePooler">Whether <c>pooler.dense</c> must be present.</param>
    /// <exception cref="ModelFormatException">A tensor is missing or has the wrong shape.</exception>
    public static void Validate(WeightSet weights, BertConfig config, bool requirePooler)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(config);
        int d = config.HiddenSize;
        weights.Require("embeddings.word_embeddings.weight", config.VocabSize, d);
        weights.Require("embeddings.position_embeddings.weight", config.MaxPositions, d);
        if (config.TypeVocabSize > 0)
        {
            weights.Require("embeddings.token_type_embeddings.weight", config.TypeVocabSize, d);
        }

        RequireNorm(weights, "embeddings.LayerNorm", d);
        for (int i = 0; i < config.Layers; i++)
        {
            string p = Layer(i);
            foreach (string linear in LayerLinears)
            {
                int inFeatures = linear == "output.dense" ? config.IntermediateSize : d;
                int outFeatures = linear == "intermediate.dense" ? config.IntermediateSize : d;
                weights.RequireMatrix($"{p}{linear}.weight", inFeatures, outFeatures);
                weights.Require($"{p}{linear}.bias", outFeatures);
            }

            foreach (string norm in LayerNorms)
            {
                RequireNorm(weights, p + norm, d);
            }
        }

        if (requirePooler || config.IsSequenceClassifier)
        {
            weights.RequireMatrix("pooler.dense.weight", d, d);
            weights.Require("pooler.dense.bias", d);
        }

        if (config.IsSequenceClassifier)
        {
            weights.RequireMatrix("classifier.weight", d, config.Labels.Count);
            weights.Require("classifier.bias", config.Labels.Count);
        }

        foreach (string name in weights.Names)
        {
            var match = LayerIndex().Match(name);
            if (match.Success && (!int.TryParse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int layer) || layer >= config.Layers))
            {
                throw new ModelFormatException(weights.SourcePath, name, $"layers 0..{config.Layers - 1} (num_hidden_layers = {config.Layers})", "a tensor of a further layer");
            }
        }
    }

    // transformer.layer.{i}.{part}.{weight|bias}
    [GeneratedRegex(@"^transformer\.layer\.(\d+)\.(.+)\.([^.]+)$")]
    private static partial Regex DistilBertLayer();

    [GeneratedRegex(@"^encoder\.layer\.(\d+)\.")]
    private static partial Regex LayerIndex();

    private static void RequireNorm(WeightSet weights, string prefix, int d)
    {
        weights.Require(prefix + ".weight", d);
        weights.Require(prefix + ".bias", d);
    }
}
