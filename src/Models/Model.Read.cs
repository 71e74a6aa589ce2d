using Headlight.Kernels;
using Headlight.Models.Loading;
using Headlight.Models.Tokenization;

namespace Headlight.Models;

/// <summary>Reading a model: the packaged catalogue, ONNX files and Hugging Face folders, into a configuration, weights and a tokenizer.</summary>
public sealed partial class Model
{
    private static (ModelConfig Config, WeightSet Weights, ITextTokenizer? Tokenizer, string Source) Read(string nameOrPath)
    {
        var packaged = ModelCatalog.All.FirstOrDefault(m => string.Equals(m.Name, nameOrPath, StringComparison.OrdinalIgnoreCase));
        if (packaged is not null)
        {
            var files = ModelCatalog.Extract(packaged);
            var import = BertOnnxImport.Load(files.ModelPath);
            var config = FromBert(import.Config, files.ModelPath, import.Weights, packaged.Pooling, packaged.Normalize, packaged.MaxSequenceLength);
            // As the Hub's tokenizer.json for these models: special tokens typed in the text are matched.
            var packagedTokenizer = BertWordPieceTokenizer.FromFile(files.VocabPath, BertTokenizerOptions.Uncased with { MatchSpecialTokens = true });
            return (config, import.Weights, packagedTokenizer, files.ModelPath);
        }

        if (File.Exists(nameOrPath) && nameOrPath.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase))
        {
            var import = BertOnnxImport.Load(nameOrPath);
            string folder = Path.GetDirectoryName(Path.GetFullPath(nameOrPath))!;
            string vocab = Path.Combine(folder, "vocab.txt");
            var tokenizer = FolderTokenizer.ForBert(folder, File.Exists(vocab) ? vocab : null, import.Config.VocabSize);
            CheckTokenizerFits(tokenizer, vocab, import.Config.VocabSize, nameOrPath);
            return (FromBert(import.Config, nameOrPath, import.Weights, null, false), import.Weights, tokenizer, nameOrPath);
        }

        if (Directory.Exists(nameOrPath))
        {
            string configPath = Path.Combine(nameOrPath, "config.json");
            var header = HfConfig.Read(configPath);
            if (header is DecoderConfig)
            {
                var decoder = HfCheckpoint.LoadDecoder(nameOrPath);
                ITextTokenizer? tokenizer = FolderTokenizer.FromJson(nameOrPath, decoder.Config.VocabSize);
                CheckTokenizerFits(tokenizer, Path.Combine(nameOrPath, "tokenizer.json"), decoder.Config.VocabSize, configPath);
                return (FromDecoder(decoder.Config), decoder.Weights, tokenizer, nameOrPath);
            }

            if (header is Gpt2Config)
            {
                var gpt2 = HfCheckpoint.LoadGpt2(nameOrPath);
                ITextTokenizer? tokenizer = (ITextTokenizer?)FolderTokenizer.FromJson(nameOrPath, gpt2.Config.VocabSize) ?? (gpt2.VocabJsonPath is not null && gpt2.MergesPath is not null
                    ? Gpt2Tokenizer.FromFiles(gpt2.VocabJsonPath, gpt2.MergesPath)
                    : gpt2.Config.VocabSize == Gpt2Tokenizer.Gpt2VocabularySize ? Gpt2Tokenizer.CreateDefault() : null);
                CheckTokenizerFits(tokenizer, gpt2.VocabJsonPath ?? "built-in GPT-2 vocabulary", gpt2.Config.VocabSize, configPath);
                return (FromGpt2(gpt2.Config, configPath), gpt2.Weights, tokenizer, nameOrPath);
            }

            var bert = HfCheckpoint.LoadBert(nameOrPath);
            var bertTokenizer = EncoderTokenizer(bert);
            CheckTokenizerFits(bertTokenizer, bert.VocabPath ?? Path.Combine(bert.Folder, "vocab.json"), bert.Config.VocabSize, configPath);
            var se = bert.SentenceEmbedding;
            return (FromBert(bert.Config, configPath, bert.Weights, se?.Pooling, se?.Normalize ?? false, se?.MaxSequenceLength), bert.Weights, bertTokenizer, nameOrPath);
        }

        if (File.Exists(nameOrPath))
        {
            throw new ArgumentException($"'{nameOrPath}' is a file but not an .onnx model; give a Hugging Face folder, an .onnx file or one of: {string.Join(", ", ModelCatalog.All.Select(m => m.Name))}.", nameof(nameOrPath));
        }

        throw new FileNotFoundException(
            $"No model '{nameOrPath}': not a catalogue name ({string.Join(", ", ModelCatalog.All.Select(m => m.Name))}), and no such file or folder.", nameOrPath);
    }

    private static ModelConfig FromBert(BertConfig c, string source, WeightSet weights, PoolingMode? pooling, bool normalize, int? maxSequenceLength = null)
    {
        int labels = weights.TryGet("classifier.bias")?.Shape[0] ?? 0;
        return new ModelConfig
        {
            Family = ModelFamily.BertEncoder,
            Layers = c.Layers,
            Hidden = c.HiddenSize,
            Heads = c.Heads,
            Intermediate = c.IntermediateSize,
            VocabSize = c.VocabSize,
            MaxPositions = c.MaxPositions,
            TypeVocabSize = c.TypeVocabSize,
            LayerNormEpsilon = (float)c.LayerNormEps,
            Activation = Gelu(c.Activation, source),
            HasPooler = weights.Contains("pooler.dense.weight"),
            PoolerActivation = c.ModelType == "distilbert" ? PoolerActivation.Relu : PoolerActivation.Tanh,
            PositionPaddingId = c.PositionPaddingId,
            MaxSequenceLength = maxSequenceLength,
            NumLabels = labels,
            Labels = c.Labels,
            Pooling = pooling,
            NormalizeEmbedding = normalize,
            IgnoredConfigKeys = c.IgnoredKeys,
        };
    }

    // A tokenizer may be smaller than the model's embedding (padded rows never come out of it), never larger: its ids
    // past the embedding would fail on the first text that uses them.
    private static void CheckTokenizerFits(ITextTokenizer? tokenizer, string tokenizerPath, int modelVocab, string modelPath)
    {
        if (tokenizer is not null && tokenizer.VocabularySize > modelVocab)
        {
            throw new ModelFormatException(
                tokenizerPath, "vocabulary size", $"at most the {modelVocab} token embeddings of {modelPath}", $"{tokenizer.VocabularySize} tokens");
        }
    }

    // WordPiece from vocab.txt (BERT, DistilBERT); RoBERTa's byte-level BPE from vocab.json + merges.txt.
    private static ITextTokenizer? EncoderTokenizer(BertCheckpoint bert)
    {
        // tokenizer.json first, then vocab.txt with tokenizer_config.json's flags (as Hugging Face picks them).
        if (FolderTokenizer.ForBert(bert.Folder, bert.VocabPath, bert.Config.VocabSize) is { } tokenizer)
        {
            return tokenizer;
        }

        string vocab = Path.Combine(bert.Folder, "vocab.json");
        string merges = Path.Combine(bert.Folder, "merges.txt");
        return bert.Config.ModelType == "roberta" && File.Exists(vocab) && File.Exists(merges) ? RobertaTokenizer.FromFiles(vocab, merges) : null;
    }

    private static ModelConfig FromGpt2(Gpt2Config c, string source) => new()
    {
        Family = ModelFamily.Gpt2Decoder,
        Layers = c.Layers,
        Hidden = c.HiddenSize,
        Heads = c.Heads,
        Intermediate = c.IntermediateSize,
        VocabSize = c.VocabSize,
        MaxPositions = c.MaxPositions,
        LayerNormEpsilon = (float)c.LayerNormEps,
        Activation = Gelu(c.Activation, source),
        HasUntiedHead = !c.TieWordEmbeddings,
        IgnoredConfigKeys = c.IgnoredKeys,
    };

    private static ModelConfig FromDecoder(DecoderConfig c) => new()
    {
        Family = c.ModelType switch
        {
            "gpt_neox" => ModelFamily.GptNeoXDecoder,
            "qwen2" => ModelFamily.Qwen2Decoder,
            _ => ModelFamily.LlamaDecoder,
        },
        Layers = c.Layers,
        Hidden = c.HiddenSize,
        Heads = c.Heads,
        KvHeads = c.KvHeads,
        Intermediate = c.IntermediateSize,
        VocabSize = c.VocabSize,
        MaxPositions = c.MaxPositions,
        LayerNormEpsilon = (float)c.LayerNormEps,
        Activation = c.Activation == ActivationFunction.GeluTanh ? GeluForm.Tanh : GeluForm.Erf,
        Norm = c.IsNeoX ? NormKind.LayerNorm : NormKind.RmsNorm,
        Mlp = c.IsNeoX ? MlpKind.Gelu : MlpKind.SwiGlu,
        ParallelResidual = c.IsNeoX,
        RotaryDims = c.RotaryDims,
        RopeTheta = c.RopeTheta,
        RopeScaling = c.RopeScaling,
        HasQkvBias = c.QkvBias,
        HasOutputBias = c.OutputBias,
        HasMlpBias = c.MlpBias,
        HasUntiedHead = !c.TieWordEmbeddings,
        EndOfSequenceIds = c.EndOfSequenceIds,
        IgnoredConfigKeys = c.IgnoredKeys,
    };

    private static GeluForm Gelu(ActivationFunction activation, string source) => activation switch
    {
        ActivationFunction.GeluErf => GeluForm.Erf,
        ActivationFunction.GeluTanh => GeluForm.Tanh,
        _ => throw new ModelFormatException(source, "hidden_act", "a GELU activation (gelu, gelu_new)", activation.ToString()),
    };
}
