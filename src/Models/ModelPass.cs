using Headlight.Kernels;
using Headlight.Models.Tokenization;

namespace Headlight.Models;

/// <summary>The rules a backward pass applies from the seed at the last hidden state down to the word embeddings.</summary>
public enum BackwardRule
{
    /// <summary>The chain rule: the signal is the gradient.</summary>
    Gradient,

    /// <summary>
    /// AttnLRP (Achtibat et al. 2024): the ε-rule for linear layers, the identity rule for LayerNorm and GELU, the uniform
    /// rule for Q·Kᵀ and P·V and the Taylor rule for softmax. Relevance is tensor ⊙ signal.
    /// </summary>
    AttnLrp,

    /// <summary>CP-LRP (Ali et al. 2022): as <see cref="AttnLrp"/>, but the attention probabilities are held constant, so relevance flows through the values only.</summary>
    CpLrp,
}

/// <summary>The backward pass a <see cref="PassRequest"/> asks to be ready for: its rule and what it hands out besides the signal at the word embeddings.</summary>
public sealed record BackwardOptions
{
    /// <summary>The rule set; <see cref="BackwardRule.Gradient"/> unless set.</summary>
    public BackwardRule Rule { get; init; }

    /// <summary>The ε of the ε-rule (relevance rules only; must then be positive).</summary>
    public float Epsilon { get; init; }

    /// <summary>Also form the signal at a gate ξ = 1 on each head's output, <see cref="ModelPass.HeadGateSignal"/> (Michel et al. 2019's head importance under the gradient rule).</summary>
    public bool HeadGates { get; init; }

    /// <summary>Also reduce the signal at every block boundary against the residual stream, <see cref="ModelPass.BoundarySignal"/> (per-token relevance per layer under relevance rules).</summary>
    public bool Boundaries { get; init; }

    /// <summary>Also form d(target)/d(attention probabilities) of every block, <see cref="ModelPass.AttentionGradient"/> (gradient rule).</summary>
    public bool AttentionGradients { get; init; }
}

/// <summary>
/// One pass through a <see cref="Model"/>: the inputs of <see cref="Rows"/> rows of <see cref="SequenceLength"/> tokens, the
/// activations to capture, the backward pass to be ready for and gates on the heads. <see cref="Model.Run"/> runs its forward
/// pass and leases the resulting <see cref="ModelPass"/>.
/// </summary>
public sealed record PassRequest
{
    /// <summary>Rows in the batch.</summary>
    public required int Rows { get; init; }

    /// <summary>Tokens per row (padded).</summary>
    public required int SequenceLength { get; init; }

    /// <summary>Token ids <c>[rows, seq]</c>; ignored when <see cref="WriteInputs"/> is set.</summary>
    public ReadOnlyMemory<int> InputIds { get; init; }

    /// <summary>Key mask <c>[rows, seq]</c>, 1 = attend to this token; ignored when <see cref="WriteInputs"/> is set.</summary>
    public ReadOnlyMemory<int> AttentionMask { get; init; }

    /// <summary>Token types <c>[rows, seq]</c>; empty = all 0.</summary>
    public ReadOnlyMemory<int> TokenTypeIds { get; init; }

    /// <summary>
    /// Word embeddings <c>[rows, seq, d]</c> fed in instead of those of the ids (noisy or interpolated inputs); empty = looked
    /// up from the ids on the device. Position and token-type embeddings are still added.
    /// </summary>
    public ReadOnlyMemory<float> TokenEmbeddings { get; init; }

    /// <summary>
    /// Writes ids and key mask <c>[rows, seq]</c> straight into the pass's device buffers (inputs built on the device, such as
    /// masked copies of a row); the caller guarantees every id is in the vocabulary.
    /// </summary>
    public Action<Tensor<int>, Tensor<int>>? WriteInputs { get; init; }

    /// <summary>Activations to copy to the host as they are computed (see <see cref="ActivationNames"/>); null = none.</summary>
    public IReadOnlyCollection<string>? Capture { get; init; }

    /// <summary>The backward pass to keep intermediates and buffers for; null = forward only.</summary>
    public BackwardOptions? Backward { get; init; }

    /// <summary>
    /// A gate per head <c>[layer, head]</c> multiplying its output for this pass, forward and backward (0 ablates the head);
    /// empty = every gate 1.
    /// </summary>
    public ReadOnlyMemory<float> HeadGates { get; init; }

    /// <summary>A request for every row of <paramref name="batch"/>: its ids, mask and token types.</summary>
    public static PassRequest For(TokenBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        return new PassRequest
        {
            Rows = batch.BatchSize,
            SequenceLength = batch.SequenceLength,
            InputIds = batch.InputIds,
            AttentionMask = batch.AttentionMask,
            TokenTypeIds = batch.TokenTypeIds,
        };
    }
}

/// <summary>
/// The device state of one forward pass, leased from <see cref="Model.Run"/>: the last hidden state and the embeddings on the
/// device, the captured activations on the host, and <see cref="Backward"/> to run the requested backward pass from a seed.
/// </summary>
/// <remarks>
/// The lease holds the model's lock, so no other pass of the model runs until it is disposed; dispose it on the thread that
/// made it, and do not keep its tensors past that (the buffers are reused by the next pass of the same shape).
/// </remarks>
public sealed class ModelPass : IDisposable
{
    private readonly Model model;
    private readonly ForwardState state;
    private readonly BackwardOptions? backward;
    private readonly Action release;
    private BackwardState? grads;
    private bool disposed;

    internal ModelPass(Model model, ForwardState state, ActivationCache activations, BackwardOptions? backward, Action release)
    {
        this.model = model;
        this.state = state;
        this.backward = backward;
        this.release = release;
        Activations = activations;
        if (backward is not null)
        {
            // Every buffer the backward pass will use exists now, so Bytes is the pass's whole size.
            grads = state.BackwardBuffers(model.Config);
            if (backward.Rule != BackwardRule.Gradient)
            {
                _ = grads.RelevanceScratch;
            }

            if (backward.Boundaries)
            {
                _ = grads.Boundaries;
            }

            for (int l = 0; backward.AttentionGradients && l < model.Config.Layers; l++)
            {
                _ = grads.ProbabilityGradient(l);
            }
        }
    }

    /// <summary>Rows in the batch.</summary>
    public int Rows => state.Batch;

    /// <summary>Tokens per row.</summary>
    public int SequenceLength => state.Seq;

    /// <summary>Device bytes of every buffer the pass holds, its backward buffers included.</summary>
    public long Bytes => state.Bytes;

    /// <summary>The last hidden state <c>[rows, seq, d]</c> (for decoders after the final LayerNorm), on the device.</summary>
    public Tensor<float> LastHiddenState => Live(TransformerForward.LastHidden(model.Config, state));

    /// <summary>The word embeddings fed in <c>[rows, seq, d]</c>, on the device.</summary>
    public Tensor<float> TokenEmbeddings => Live(state.TokenEmbeds);

    /// <summary>
    /// Word + position (+ type) embeddings <c>[rows, seq, d]</c> before BERT's embedding LayerNorm, on the device; for rotary
    /// decoders (no position vectors) the word embeddings themselves.
    /// </summary>
    public Tensor<float> EmbeddingSum => Live(model.Weights.PositionEmbeddings is null ? state.TokenEmbeds : state.EmbedSum);

    /// <summary>The key mask <c>[rows, seq]</c> the pass ran with, on the device.</summary>
    public Tensor<int> AttentionMask => Live(state.KeyMask);

    /// <summary>The activations named in <see cref="PassRequest.Capture"/>, copied to the host.</summary>
    public ActivationCache Activations { get; }

    /// <summary>
    /// After <see cref="Backward"/>: the signal at the word embeddings <c>[rows, seq, d]</c> (the gradient, or relevance / embedding
    /// under relevance rules). Positions and token types are held fixed, so for BERT it is also the signal at the summed embedding.
    /// </summary>
    public Tensor<float> InputSignal => Live(Grads().TokenEmbeds);

    /// <summary>After <see cref="Backward"/> with <see cref="BackwardOptions.HeadGates"/>: the signal at each head's gate <c>[layer, rows, head]</c>.</summary>
    public Tensor<float> HeadGateSignal => Live(Asked(backward?.HeadGates == true, nameof(BackwardOptions.HeadGates)).Gates);

    /// <summary>
    /// After <see cref="Backward"/> with <see cref="BackwardOptions.Boundaries"/>: <c>[layers + 1, rows, seq]</c>, Σ_d stream ⊙ signal of
    /// the residual stream entering block l (l = layers: after the last block).
    /// </summary>
    public Tensor<float> BoundarySignal => Live(Asked(backward?.Boundaries == true, nameof(BackwardOptions.Boundaries)).Boundaries);

    /// <summary>After <see cref="Backward"/> with <see cref="BackwardOptions.AttentionGradients"/>: d(target)/d(attention probabilities) <c>[rows, head, query, key]</c> of block <paramref name="layer"/>.</summary>
    public Tensor<float> AttentionGradient(int layer)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, model.Config.Layers);
        return Live(Asked(backward?.AttentionGradients == true, nameof(BackwardOptions.AttentionGradients)).ProbabilityGradient(layer));
    }

    /// <summary>
    /// Runs the requested backward pass from <paramref name="seed"/>, the signal at the last hidden state <c>[rows, seq, d]</c> (for a
    /// gradient, d(target)/d(last hidden state); for relevance rules, the signal whose product with the hidden state is the relevance
    /// a target's head hands to the model).
    /// </summary>
    /// <exception cref="InvalidOperationException">The request asked for no backward pass.</exception>
    /// <exception cref="ArgumentException">The seed does not hold rows·seq·d values.</exception>
    public void Backward(ReadOnlySpan<float> seed)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        var options = backward ?? throw new InvalidOperationException($"Model '{model.Name}': this pass was requested without a backward pass ({nameof(PassRequest)}.{nameof(PassRequest.Backward)} is null).");
        var config = model.Config;
        var buffers = grads!;
        if (seed.Length != buffers.Seed.Length)
        {
            throw new ArgumentException($"Model '{model.Name}': the seed holds {seed.Length} floats; [rows, seq, d] = [{Rows}, {SequenceLength}, {config.Hidden}] needs {buffers.Seed.Length}.", nameof(seed));
        }

        buffers.Seed.CopyFrom(seed);
        var rules = options.Rule switch
        {
            BackwardRule.Gradient => BackwardRules.Gradient,
            BackwardRule.CpLrp => BackwardRules.Relevance(AttentionRelevanceRule.Conservative, options.Epsilon, buffers.RelevanceScratch),
            _ => BackwardRules.Relevance(AttentionRelevanceRule.Uniform, options.Epsilon, buffers.RelevanceScratch),
        };
        BackwardTaps? taps = null;
        if (options.Boundaries || options.AttentionGradients)
        {
            var shape = new AttentionShape(Rows, config.Heads, SequenceLength, SequenceLength, config.HeadDim, config.KeyValueHeads);
            int valueColumn = (config.Heads + config.KeyValueHeads) * config.HeadDim;
            taps = new BackwardTaps
            {
                Streams = options.Boundaries ? buffers.Boundaries : null,
                Context = options.AttentionGradients
                    ? (l, dContext) => Attention.ProbabilityGradient(new AttentionOperand(state.LayerAt(l).Qkv, valueColumn), new AttentionOperand(dContext), shape,
                        state.KeyMask, config.IsCausal, buffers.ProbabilityGradient(l))
                    : null,
            };
        }

        TransformerBackward.Run(config, model.Weights, state, buffers, rules, options.HeadGates, taps);
    }

    /// <summary>Ends the lease: restores gated heads and releases the model's lock.</summary>
    public void Dispose()
    {
        if (disposed)
        {
            return;
        }

        disposed = true;
        release();
    }

    private BackwardState Grads() => grads ?? throw new InvalidOperationException($"Model '{model.Name}': this pass was requested without a backward pass.");

    private BackwardState Asked(bool asked, string option) => asked
        ? Grads()
        : throw new InvalidOperationException($"Model '{model.Name}': this pass's {nameof(BackwardOptions)}.{option} was not set.");

    private T Live<T>(T value)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return value;
    }
}
