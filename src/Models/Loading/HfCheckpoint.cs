using System.Globalization;
using System.Text.RegularExpressions;

namespace Headlight.Models.Loading;

/// <summary>
/// Loads Hugging Face model folders (<c>config.json</c> + weights (see <see cref="CheckpointTensors"/>) + tokenizer
/// files): reads the configuration, maps tensor names to Headlight's canonical names, and checks
/// every tensor the configuration needs exists with its shape.
/// </summary>
internal static partial class HfCheckpoint
{
    /// <summary>
    /// Loads a BERT-shaped encoder folder (<c>BertModel</c>, <c>RobertaModel</c>, <c>DistilBertModel</c>, their
    /// <c>*ForSequenceClassification</c> heads, sentence-transformers models of them), under BERT's tensor names,
    /// from model.safetensors, a sharded set or pytorch_model.bin.
    /// </summary>
    /// <exception cref="FileNotFoundException">config.json or every weight file (<see cref="CheckpointTensors.Candidates"/>) is missing.</exception>
    /// <exception cref="ModelFormatException">A file is malformed, a tensor is missing, or a shape disagrees with the configuration.</exception>
    public static BertCheckpoint LoadBert(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        var config = HfConfig.ReadBert(Path.Combine(folder, "config.json"));
        using var file = CheckpointTensors.Open(folder);
        string weightsPath = file.SourcePath;

        // The labels the config counts must be the classifier's rows, checked before any weight is read.
        string? classifier = file.Names.FirstOrDefault(n => BertWeights.Canonical(n, config.ModelType) == "classifier.weight");
        if (config.IsSequenceClassifier && classifier is not null && file.Info(classifier) is { Shape.Count: 2 } head && head.Shape[0] != config.Labels.Count)
        {
            string key = config.Labels is PlaceholderLabels ? "num_labels" : "id2label";
            throw new ModelFormatException(
                Path.Combine(folder, "config.json"), key, $"{head.Shape[0]} labels, the rows of {classifier} {head.ShapeText} in {weightsPath}", $"{config.Labels.Count}");
        }

        var weights = new WeightSet(weightsPath);
        foreach (string stored in file.Names)
        {
            string name = BertWeights.Canonical(stored, config.ModelType);

            // Checkpoints converted from TensorFlow name LayerNorm parameters gamma and beta.
            if (name.EndsWith("LayerNorm.gamma", StringComparison.Ordinal))
            {
                name = name[..^"gamma".Length] + "weight";
            }
            else if (name.EndsWith("LayerNorm.beta", StringComparison.Ordinal))
            {
                name = name[..^"beta".Length] + "bias";
            }

            var info = file.Info(stored);
            if (!IsFloat(info.DType))
            {
                // position_ids and similar integer buffers are not weights.
                continue;
            }

            bool linear = name.EndsWith(".weight", StringComparison.Ordinal) && info.Shape.Count == 2 && !name.StartsWith("embeddings.", StringComparison.Ordinal);
            weights.Add(new Weight(name, Shape(weightsPath, info), file.ReadFloat32(stored), linear ? TensorLayout.OutIn : TensorLayout.None, stored));
        }

        BertWeights.Validate(weights, config, requirePooler: false);
        string vocab = Path.Combine(folder, "vocab.txt");
        string? vocabPath = File.Exists(vocab) ? vocab : null;
        if (vocabPath is not null)
        {
            CheckVocab(vocabPath, config.VocabSize);
        }

        var sentence = File.Exists(Path.Combine(folder, "modules.json")) ? SentenceEmbeddingConfig.Read(folder) : null;
        return new BertCheckpoint(folder, config, weights, vocabPath, sentence);
    }

    /// <summary>
    /// Loads a GPT-2 folder; skips the causal-mask buffers (<c>attn.bias</c>, <c>attn.masked_bias</c>). With
    /// <c>tie_word_embeddings</c> true (the default) a stored <c>lm_head.weight</c> is skipped, as transformers
    /// ties it to <c>wte</c>; with false it is required and becomes the output projection.
    /// </summary>
    /// <exception cref="FileNotFoundException">config.json or every weight file (<see cref="CheckpointTensors.Candidates"/>) is missing.</exception>
    /// <exception cref="ModelFormatException">A file is malformed, a tensor is missing, or a shape disagrees with the configuration.</exception>
    public static Gpt2Checkpoint LoadGpt2(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        var config = HfConfig.ReadGpt2(Path.Combine(folder, "config.json"));
        using var file = CheckpointTensors.Open(folder);
        string weightsPath = file.SourcePath;
        var weights = new WeightSet(weightsPath);
        foreach (string stored in file.Names)
        {
            string name = stored.StartsWith("transformer.", StringComparison.Ordinal) ? stored["transformer.".Length..] : stored;

            // A tied head is wte itself (transformers overwrites lm_head.weight with it), so a stored copy is not read.
            if (MaskBuffer().IsMatch(name) || (name == "lm_head.weight" && config.TieWordEmbeddings))
            {
                continue;
            }

            var info = file.Info(stored);
            if (!IsFloat(info.DType))
            {
                throw new ModelFormatException(weightsPath, $"{stored}.dtype", "a floating-point weight", info.DType.ToString());
            }

            bool conv1d = name.EndsWith(".weight", StringComparison.Ordinal) && info.Shape.Count == 2 && name.StartsWith("h.", StringComparison.Ordinal);
            weights.Add(new Weight(name, Shape(weightsPath, info), file.ReadFloat32(stored), conv1d ? TensorLayout.InOut : TensorLayout.None, stored));
        }

        ValidateGpt2(weights, config);
        if (!config.TieWordEmbeddings)
        {
            if (!weights.Contains("lm_head.weight"))
            {
                throw new ModelFormatException(weightsPath, "lm_head.weight", $"an untied LM head [{config.VocabSize}, {config.HiddenSize}], as config.json sets tie_word_embeddings: false", "no such tensor");
            }

            weights.Require("lm_head.weight", config.VocabSize, config.HiddenSize);
        }

        string vocab = Path.Combine(folder, "vocab.json");
        string merges = Path.Combine(folder, "merges.txt");
        return new Gpt2Checkpoint(folder, config, weights, File.Exists(vocab) ? vocab : null, File.Exists(merges) ? merges : null);
    }

    /// <summary>Checks every GPT-2 tensor the configuration needs exists with its shape.</summary>
    /// <exception cref="ModelFormatException">A tensor is missing or has the wrong shape.</exception>
    public static void ValidateGpt2(WeightSet weights, Gpt2Config config)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(config);
        int d = config.HiddenSize;
        weights.Require("wte.weight", config.VocabSize, d);
        weights.Require("wpe.weight", config.MaxPositions, d);
        for (int i = 0; i < config.Layers; i++)
        {
            string p = $"h.{i}.";
            weights.Require(p + "ln_1.weight", d);
            weights.Require(p + "ln_1.bias", d);
            weights.RequireMatrix(p + "attn.c_attn.weight", d, 3 * d);
            weights.Require(p + "attn.c_attn.bias", 3 * d);
            weights.RequireMatrix(p + "attn.c_proj.weight", d, d);
            weights.Require(p + "attn.c_proj.bias", d);
            weights.Require(p + "ln_2.weight", d);
            weights.Require(p + "ln_2.bias", d);
            weights.RequireMatrix(p + "mlp.c_fc.weight", d, config.IntermediateSize);
            weights.Require(p + "mlp.c_fc.bias", config.IntermediateSize);
            weights.RequireMatrix(p + "mlp.c_proj.weight", config.IntermediateSize, d);
            weights.Require(p + "mlp.c_proj.bias", d);
        }

        weights.Require("ln_f.weight", d);
        weights.Require("ln_f.bias", d);
        foreach (string name in weights.Names)
        {
            var match = LayerIndex().Match(name);
            if (match.Success && (!int.TryParse(match.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int layer) || layer >= config.Layers))
            {
                throw new ModelFormatException(weights.SourcePath, name, $"layers 0..{config.Layers - 1} (n_layer = {config.Layers})", "a tensor of a further layer");
            }
        }
    }

    private static bool IsFloat(SafeTensorsDType dtype) => dtype is SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 or SafeTensorsDType.F64;

    private static int[] Shape(string path, SafeTensorInfo info)
    {
        if (info.Shape.Any(d => d > int.MaxValue))
        {
            throw new ModelFormatException(path, $"{info.Name}.shape", "dimensions below 2^31", info.ShapeText);
        }

        return info.ShapeInt32();
    }

    private static void CheckVocab(string path, int vocabSize)
    {
        int lines = 0;
        foreach (string line in File.ReadLines(path))
        {
            lines++;
        }

        // A trailing newline does not make an extra token; vocab_size may be padded above the file.
        if (lines > vocabSize)
        {
            throw new ModelFormatException(path, "(lines)", $"at most vocab_size = {vocabSize} tokens", $"{lines}");
        }
    }

    [GeneratedRegex(@"^h\.\d+\.attn\.(bias|masked_bias)$")]
    private static partial Regex MaskBuffer();

    [GeneratedRegex(@"^h\.(\d+)\.")]
    private static partial Regex LayerIndex();
}
