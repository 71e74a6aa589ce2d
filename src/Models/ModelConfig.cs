using Headlight.Kernels;
using Headlight.Models.Loading;

namespace Headlight.Models;

/// <summary>The block layouts Headlight runs.</summary>
public enum ModelFamily
{
    /// <summary>BERT-style encoder: bidirectional attention, post-LayerNorm blocks, embedding LayerNorm, optional pooler.</summary>
    BertEncoder,

    /// <summary>GPT-2-style decoder: causal attention, pre-LayerNorm blocks, final LayerNorm, LM head tied to the token embeddings.</summary>
    Gpt2Decoder,

    /// <summary>
    /// GPT-NeoX (Pythia): causal attention with partial rotary embeddings, parallel residual
    /// <c>x + attn(ln₁x) + mlp(ln₂x)</c>, exact GELU, final LayerNorm, untied output projection.
    /// </summary>
    GptNeoXDecoder,

    /// <summary>Llama: causal grouped-query attention with rotary embeddings, RMSNorm, SwiGLU MLP, no biases.</summary>
    LlamaDecoder,

    /// <summary>Qwen2: Llama's blocks with biases on the query, key and value projections.</summary>
    Qwen2Decoder,
}

/// <summary>The normalisation of a block.</summary>
public enum NormKind
{
    /// <summary><c>(x − mean)/√(var + ε)·γ + β</c>.</summary>
    LayerNorm,

    /// <summary><c>x/√(mean(x²) + ε)·γ</c>, no bias (Llama, Qwen2).</summary>
    RmsNorm,
}

/// <summary>The MLP of a block.</summary>
public enum MlpKind
{
    /// <summary><c>down(gelu(up(x)))</c>.</summary>
    Gelu,

    /// <summary><c>down(silu(gate(x)) ⊙ up(x))</c> (Llama, Qwen2).</summary>
    SwiGlu,
}

/// <summary>Llama 3's rescaling of the rotary frequencies (<c>rope_scaling</c> with <c>rope_type: "llama3"</c>).</summary>
/// <param name="Factor">Divides the low frequencies.</param>
/// <param name="LowFrequencyFactor">Wavelengths above original/this are divided by <paramref name="Factor"/>.</param>
/// <param name="HighFrequencyFactor">Wavelengths below original/this are unchanged; between the two bounds they are blended.</param>
/// <param name="OriginalMaxPositions">The context length the frequencies were trained for.</param>
public sealed record Llama3RopeScaling(double Factor, double LowFrequencyFactor, double HighFrequencyFactor, int OriginalMaxPositions);

/// <summary>The activation between the dense layer on the first token and the classifier of a sequence-classification head.</summary>
public enum PoolerActivation
{
    /// <summary>BERT's pooler and RoBERTa's classification head: tanh.</summary>
    Tanh,

    /// <summary>DistilBERT's pre_classifier: ReLU.</summary>
    Relu,
}

/// <summary>The shape and options of a transformer, whatever file it came from.</summary>
public sealed record ModelConfig
{
    /// <summary>Encoder or decoder.</summary>
    public required ModelFamily Family { get; init; }

    /// <summary>Number of blocks.</summary>
    public required int Layers { get; init; }

    /// <summary>Width of the residual stream, d.</summary>
    public required int Hidden { get; init; }

    /// <summary>Attention heads per block.</summary>
    public required int Heads { get; init; }

    /// <summary>Width of the MLP's hidden layer.</summary>
    public required int Intermediate { get; init; }

    /// <summary>Vocabulary size.</summary>
    public required int VocabSize { get; init; }

    /// <summary>Longest input the position embeddings allow.</summary>
    public required int MaxPositions { get; init; }

    /// <summary>Number of token types (segments); 0 for decoders.</summary>
    public int TypeVocabSize { get; init; }

    /// <summary>LayerNorm epsilon.</summary>
    public required float LayerNormEpsilon { get; init; }

    /// <summary>The MLP's activation.</summary>
    public required GeluForm Activation { get; init; }

    /// <summary>
    /// RoBERTa's padding_idx (its pad token id): position ids are padding_idx + 1 + the index among non-pad tokens, and pad
    /// tokens take the padding_idx row, so they depend on the ids. Null: positions 0..T−1 in every row.
    /// </summary>
    public int? PositionPaddingId { get; init; }

    /// <summary>
    /// sentence-transformers' <c>max_seq_length</c>: texts are cut to this many tokens, special tokens included, as
    /// sentence-transformers does. Null when the folder sets none.
    /// </summary>
    public int? MaxSequenceLength { get; init; }

    /// <summary>The most tokens a row may hold: <see cref="MaxPositions"/>, less the rows below RoBERTa's first position.</summary>
    public int MaxTokens => PositionPaddingId is { } pad ? MaxPositions - pad - 1 : MaxPositions;

    /// <summary>True when the model has BERT's pooler (tanh(W·h[CLS] + b)), or the dense layer of a RoBERTa or DistilBERT classification head.</summary>
    public bool HasPooler { get; init; }

    /// <summary>The pooler's activation: tanh (BERT, RoBERTa) or ReLU (DistilBERT's pre_classifier).</summary>
    public PoolerActivation PoolerActivation { get; init; }

    /// <summary>Number of classes when a sequence-classification head is present, else 0.</summary>
    public int NumLabels { get; init; }

    /// <summary>Class names by index, when the checkpoint gives them.</summary>
    public IReadOnlyList<string> Labels { get; init; } = [];

    /// <summary>How the sentence embedding is pooled (sentence-transformers models); null when the model has none.</summary>
    public PoolingMode? Pooling { get; init; }

    /// <summary>True when the sentence embedding is L2-normalised.</summary>
    public bool NormalizeEmbedding { get; init; }

    /// <summary>True when a decoder's output projection is its own <c>lm_head.weight</c> rather than the word embeddings.</summary>
    public bool HasUntiedHead { get; init; }

    /// <summary>Key/value heads of grouped-query attention (query head h reads kv head h / (heads / kv heads)); 0 means <see cref="Heads"/>.</summary>
    public int KvHeads { get; init; }

    /// <summary>The normalisation of each block (and the final one of decoders).</summary>
    public NormKind Norm { get; init; } = NormKind.LayerNorm;

    /// <summary>The MLP of each block; <see cref="Activation"/> is its GELU when <see cref="MlpKind.Gelu"/>.</summary>
    public MlpKind Mlp { get; init; } = MlpKind.Gelu;

    /// <summary>GPT-NeoX's parallel residual: <c>x + attn(ln₁x) + mlp(ln₂x)</c> instead of two sequential residual steps.</summary>
    public bool ParallelResidual { get; init; }

    /// <summary>Dimensions of each head that rotary embeddings rotate (even, at most <see cref="HeadDim"/>); 0: learned position embeddings.</summary>
    public int RotaryDims { get; init; }

    /// <summary>The rotary base θ: inverse frequency j is θ^(−2j/<see cref="RotaryDims"/>).</summary>
    public double RopeTheta { get; init; } = 10000;

    /// <summary>Llama 3's frequency rescaling, or null.</summary>
    public Llama3RopeScaling? RopeScaling { get; init; }

    /// <summary>True when the query, key and value projections have biases (GPT-2, GPT-NeoX, Qwen2; not Llama).</summary>
    public bool HasQkvBias { get; init; } = true;

    /// <summary>True when the attention output projection has a bias.</summary>
    public bool HasOutputBias { get; init; } = true;

    /// <summary>True when the MLP's projections have biases.</summary>
    public bool HasMlpBias { get; init; } = true;

    /// <summary>Token ids that end generation (a decoder's eos_token_id); empty when the config names none.</summary>
    public IReadOnlyList<int> EndOfSequenceIds { get; init; } = [];

    /// <summary>True for every decoder family: causal attention, next-token logits.</summary>
    public bool IsDecoder => Family != ModelFamily.BertEncoder;

    /// <summary>Key/value heads actually used: <see cref="KvHeads"/>, or <see cref="Heads"/> when that is 0.</summary>
    public int KeyValueHeads => KvHeads == 0 ? Heads : KvHeads;

    /// <summary>Width of the fused query, key and value projection: (heads + 2·kv heads)·head dim.</summary>
    public int QkvWidth => (Heads + (2 * KeyValueHeads)) * HeadDim;

    /// <summary>
    /// config.json keys the loader does not know (neither read nor known to leave the computation unchanged), in
    /// file order: warnings, not errors. Keys known to change the computation are refused at load instead.
    /// </summary>
    public IReadOnlyList<string> IgnoredConfigKeys { get; init; } = [];

    /// <summary>Width of one head, <see cref="Hidden"/> / <see cref="Heads"/>.</summary>
    public int HeadDim => Hidden / Heads;

    /// <summary>True for decoders: attention is causal.</summary>
    public bool IsCausal => IsDecoder;

    /// <summary>Number of weights, embeddings included.</summary>
    public long ParameterCount
    {
        get
        {
            long d = Hidden;
            long hd = HeadDim;
            long qkv = Heads + (2L * KeyValueHeads);
            long normWeights = Norm == NormKind.RmsNorm ? d : 2 * d;
            long mlp = Mlp == MlpKind.SwiGlu
                ? (3 * d * Intermediate) + (HasMlpBias ? (2L * Intermediate) + d : 0)
                : (2 * d * Intermediate) + (HasMlpBias ? Intermediate + d : 0);
            long perLayer = (d * qkv * hd) + (HasQkvBias ? qkv * hd : 0) + (Heads * hd * d) + (HasOutputBias ? d : 0) + mlp + (2 * normWeights);
            long positions = RotaryDims > 0 ? 0 : MaxPositions;
            long embeddings = ((long)VocabSize + positions + TypeVocabSize) * d + normWeights;
            long pooler = HasPooler ? (d * d) + d : 0;
            long classifier = NumLabels > 0 ? (d * NumLabels) + NumLabels : 0;
            long head = HasUntiedHead ? VocabSize * d : 0;
            return (Layers * perLayer) + embeddings + pooler + classifier + head;
        }
    }

    /// <summary>Throws an <see cref="ArgumentException"/> naming the first inconsistent field.</summary>
    public void Validate(string source)
    {
        static void Require(bool ok, string source, string field, string expectation, object found)
        {
            if (!ok)
            {
                throw new ArgumentException($"{source}: '{field}' must be {expectation}, found {found}.");
            }
        }

        Require(Layers > 0, source, "layers", "positive", Layers);
        Require(Hidden > 0, source, "hidden", "positive", Hidden);
        Require(Heads > 0, source, "heads", "positive", Heads);
        Require(Hidden % Heads == 0, source, "heads", $"a divisor of hidden ({Hidden})", Heads);
        Require(Intermediate > 0, source, "intermediate", "positive", Intermediate);
        Require(VocabSize > 0, source, "vocab_size", "positive", VocabSize);
        Require(MaxPositions > 0, source, "max_positions", "positive", MaxPositions);
        Require(TypeVocabSize >= 0, source, "type_vocab_size", "non-negative", TypeVocabSize);
        Require(LayerNormEpsilon > 0 && float.IsFinite(LayerNormEpsilon), source, "layer_norm_eps", "positive and finite", LayerNormEpsilon);
        Require(NumLabels >= 0, source, "num_labels", "non-negative", NumLabels);
        Require(PositionPaddingId is null || (PositionPaddingId >= 0 && PositionPaddingId + 1 < MaxPositions), source, "pad_token_id", $"non-negative and below max_positions − 1 ({MaxPositions - 1})", PositionPaddingId ?? 0);
        Require(MaxSequenceLength is null || MaxSequenceLength > 0, source, "max_seq_length", "positive", MaxSequenceLength ?? 0);
        Require(KvHeads >= 0 && (KvHeads == 0 || Heads % KvHeads == 0), source, "num_key_value_heads", $"a divisor of heads ({Heads})", KvHeads);
        Require(RotaryDims >= 0 && RotaryDims % 2 == 0 && RotaryDims <= HeadDim, source, "rotary_dims", $"even and at most the head dimension ({HeadDim})", RotaryDims);
        Require(RotaryDims == 0 || (double.IsFinite(RopeTheta) && RopeTheta > 0), source, "rope_theta", "positive and finite", RopeTheta);
    }
}
