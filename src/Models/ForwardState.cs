using Headlight.Kernels;

namespace Headlight.Models;

/// <summary>
/// Every device buffer one forward pass of one (batch, seq) shape needs, owned here and reused by
/// every call of that shape. With <see cref="SavesForBackward"/> each block keeps its own
/// intermediates (what the backward pass reads); without, blocks share one set.
/// </summary>
internal sealed class ForwardState : IDisposable
{
    private readonly List<IDisposable> owned = [];
    private readonly Dictionary<int, Tensor<float>> probabilities = [];
    private readonly Device device;
    private readonly int heads;
    private BackwardState? backward;
    private int[]? idPositions;

    public ForwardState(Device device, ModelConfig config, int batch, int seq, bool savesForBackward)
    {
        this.device = device;
        Batch = batch;
        Seq = seq;
        SavesForBackward = savesForBackward;
        int n = batch * seq;
        int d = config.Hidden;
        int layerSets = savesForBackward ? config.Layers : 1;
        heads = config.Heads;

        Ids = Int(batch, seq);
        Positions = Int(batch, seq);
        TypeIds = Int(batch, seq);
        KeyMask = Int(batch, seq);
        FillPositions(batch, seq);
        TokenEmbeds = Float(batch, seq, d);
        EmbedSum = Float(batch, seq, d);
        EmbedMean = Float(n);
        EmbedRstd = Float(n);

        // Residual stream at block boundaries: all of them when saving, else two that alternate.
        Stream = Enumerable.Range(0, savesForBackward ? config.Layers + 1 : 2).Select(_ => Float(batch, seq, d)).ToArray();
        Layers = Enumerable.Range(0, layerSets).Select(_ => new LayerState(this, config, batch, seq)).ToArray();
        if (config.IsDecoder)
        {
            Final = Float(batch, seq, d);
            FinalMean = Float(n);
            FinalRstd = Float(n);
        }
    }

    public int Batch { get; }

    public int Seq { get; }

    public bool SavesForBackward { get; }

    /// <summary>Device bytes of every buffer this state owns, counted as each is allocated (lazy ones included once made).</summary>
    public long Bytes { get; private set; }

    public Tensor<int> Ids { get; }              // [batch, seq]

    public Tensor<int> Positions { get; }        // [batch, seq] 0..seq−1 in every row, filled once (RoBERTa: from the ids, per batch)

    public Tensor<int> TypeIds { get; }          // [batch, seq] zeros until a batch with token types is uploaded

    public Tensor<int> KeyMask { get; }          // [batch, seq] 1 = real token

    public Tensor<float> TokenEmbeds { get; }    // [batch, seq, d] the word embeddings fed in (gathered, or given for IG)

    public Tensor<float> EmbedSum { get; }       // [batch, seq, d] token + position (+ type) embeddings

    public Tensor<float> EmbedMean { get; }      // [batch·seq] BERT embedding LayerNorm statistics

    public Tensor<float> EmbedRstd { get; }

    public Tensor<float>[] Stream { get; }       // [batch, seq, d] residual stream at block boundaries

    public LayerState[] Layers { get; }

    public Tensor<float>? Final { get; }         // [batch, seq, d] decoders' final norm output

    public Tensor<float>? FinalMean { get; }

    public Tensor<float>? FinalRstd { get; }

    /// <summary>The residual stream entering block <paramref name="layer"/> (the embedding output for 0).</summary>
    public Tensor<float> StreamAt(int layer) => SavesForBackward ? Stream[layer] : Stream[layer % 2];

    /// <summary>Block <paramref name="layer"/>'s intermediates.</summary>
    public LayerState LayerAt(int layer) => SavesForBackward ? Layers[layer] : Layers[0];

    /// <summary>The attention-probability buffer [batch, head, query, key] of block <paramref name="layer"/>, made on first use.</summary>
    public Tensor<float> ProbabilitiesFor(int layer)
    {
        if (!probabilities.TryGetValue(layer, out var t))
        {
            t = Float(Batch, heads, Seq, Seq);
            probabilities[layer] = t;
        }

        return t;
    }

    // Positions depend only on the shape, so every call of this shape reuses them; types start as zeros
    // (models without token types never upload any).
    private void FillPositions(int batch, int seq)
    {
        var positions = new int[batch * seq];
        for (int i = 0; i < positions.Length; i++)
        {
            positions[i] = i % seq;
        }

        Positions.CopyFrom(positions);
        TypeIds.Fill(0);
    }

    /// <summary>
    /// RoBERTa's position ids from the token ids [batch, seq] (HF create_position_ids_from_input_ids): a non-pad token's
    /// position is padding_idx + its 1-based count among the row's non-pad tokens, a pad token's is padding_idx. The
    /// attention mask plays no part; a left-padded row gives its real tokens the positions they have alone.
    /// </summary>
    public void SetPositionsFromIds(ReadOnlySpan<int> ids, int paddingId)
    {
        idPositions ??= new int[Batch * Seq];
        for (int r = 0; r < Batch; r++)
        {
            int count = 0;
            for (int i = r * Seq; i < (r + 1) * Seq; i++)
            {
                idPositions[i] = ids[i] == paddingId ? paddingId : paddingId + ++count;
            }
        }

        Positions.CopyFrom(idPositions);
    }

    /// <summary>The gradient buffers of the backward pass for this shape, made on first use and owned here.</summary>
    public BackwardState BackwardBuffers(ModelConfig config)
    {
        if (!SavesForBackward)
        {
            throw new InvalidOperationException("The backward pass needs a forward state made with savesForBackward.");
        }

        return backward ??= new BackwardState(this, config);
    }

    /// <summary>Allocates a buffer owned by this state (for optional outputs such as probabilities or logits).</summary>
    public Tensor<float> Float(params int[] shape)
    {
        var t = device.Allocate<float>(shape);
        owned.Add(t);
        Bytes += t.Length * sizeof(float);
        return t;
    }

    private Tensor<int> Int(params int[] shape)
    {
        var t = device.Allocate<int>(shape);
        owned.Add(t);
        Bytes += t.Length * sizeof(int);
        return t;
    }

    public void Dispose()
    {
        foreach (var o in owned)
        {
            o.Dispose();
        }

        owned.Clear();
        probabilities.Clear();
        backward = null;
        Bytes = 0;
    }

    /// <summary>One block's intermediates.</summary>
    internal sealed class LayerState
    {
        public LayerState(ForwardState owner, ModelConfig config, int batch, int seq)
        {
            int n = batch * seq;
            int d = config.Hidden;
            NormIn = owner.Float(batch, seq, d);
            Qkv = owner.Float(batch, seq, config.QkvWidth);
            Rotated = config.RotaryDims > 0 ? owner.Float(batch, seq, (config.Heads + config.KeyValueHeads) * config.HeadDim) : null;
            Context = owner.Float(batch, seq, d);
            LogSumExp = owner.Float(batch, config.Heads, seq);
            AttnOut = owner.Float(batch, seq, d);
            Mid = owner.Float(batch, seq, d);
            Sum1 = owner.Float(batch, seq, d);
            Mean1 = owner.Float(n);
            Rstd1 = owner.Float(n);
            NormMid = owner.Float(batch, seq, d);
            FfnPre = owner.Float(batch, seq, config.Mlp == MlpKind.SwiGlu ? 2 * config.Intermediate : config.Intermediate);
            FfnAct = owner.Float(batch, seq, config.Intermediate);
            MlpOut = owner.Float(batch, seq, d);
            Sum2 = owner.Float(batch, seq, d);
            Mean2 = owner.Float(n);
            Rstd2 = owner.Float(n);
        }

        public Tensor<float> NormIn { get; }     // [batch, seq, d] GPT-2: ln_1 output (attention input)

        public Tensor<float> Qkv { get; }        // [batch, seq, (heads + 2·kv heads)·hd] fused projections (before rotation)

        public Tensor<float>? Rotated { get; }   // [batch, seq, (heads + kv heads)·hd] rotary q | k (rotary decoders)

        public Tensor<float> Context { get; }    // [batch, seq, d] per-head weighted values (attn.z)

        public Tensor<float> LogSumExp { get; }  // [batch, head, seq]

        public Tensor<float> AttnOut { get; }    // [batch, seq, d] output projection

        public Tensor<float> Mid { get; }        // [batch, seq, d] stream between attention and MLP

        public Tensor<float> Sum1 { get; }       // [batch, seq, d] BERT: attn.out + stream (LayerNorm 1 input)

        public Tensor<float> Mean1 { get; }      // [batch·seq] LayerNorm 1 statistics

        public Tensor<float> Rstd1 { get; }

        public Tensor<float> NormMid { get; }    // [batch, seq, d] GPT-2: ln_2 output (MLP input)

        public Tensor<float> FfnPre { get; }     // [batch, seq, intermediate] before GELU; SwiGLU: [batch, seq, 2·intermediate] gate | up

        public Tensor<float> FfnAct { get; }     // [batch, seq, intermediate] after GELU

        public Tensor<float> MlpOut { get; }     // [batch, seq, d]

        public Tensor<float> Sum2 { get; }       // [batch, seq, d] BERT: mlp.out + mid (LayerNorm 2 input)

        public Tensor<float> Mean2 { get; }      // [batch·seq] LayerNorm 2 statistics

        public Tensor<float> Rstd2 { get; }
    }
}
