using System.Runtime.InteropServices;
using Headlight.Kernels;
using Headlight.Models.Loading;
using Headlight.Models.Tokenization;

namespace Headlight.Models;

/// <summary>
/// A transformer with its weights on one device and its tokenizer: load it by catalogue name
/// (<c>minilm</c>, <c>arcticxs</c>), from a Hugging Face folder (BERT, RoBERTa, DistilBERT, GPT-2, GPT-NeoX, Llama, Qwen2)
/// or from an ONNX file,
/// then run forward passes with named activation capture.
/// </summary>
/// <remarks>
/// One forward pass runs at a time per model (calls from several threads are serialised); buffers
/// for each (batch, sequence) shape are kept and reused, a few shapes at a time.
/// </remarks>
public sealed partial class Model : IDisposable
{
    private const int CachedShapes = 4;

    private static readonly HashSet<string> NoCapture = [];

    private readonly DeviceWeights weights;
    private readonly PackedWeights? packed;
    private readonly bool ownsDevice;
    private readonly object gate = new();
    private readonly LinkedList<((int Batch, int Seq, bool Saves) Key, ForwardState State)> states = new();
    private readonly Dictionary<(int Seq, BackwardOptions? Backward, string Probabilities), long> rowBytes = [];
    private bool disposed;

    private Model(string name, string source, ModelConfig config, Device device, bool ownsDevice, DeviceWeights weights, ITextTokenizer? tokenizer)
    {
        Name = name;
        Source = source;
        Config = config;
        Device = device;
        this.ownsDevice = ownsDevice;
        this.weights = weights;
        Tokenizer = tokenizer;
        packed = PackedWeights.For(device, weights);
    }

    /// <summary>The name it was loaded by (catalogue name or path).</summary>
    public string Name { get; }

    /// <summary>The file or folder the weights came from.</summary>
    public string Source { get; }

    /// <summary>The architecture and sizes.</summary>
    public ModelConfig Config { get; }

    /// <summary>The device the weights live on and ops run on.</summary>
    public Device Device { get; }

    /// <summary>The tokenizer, or null when the model came without tokenizer files (token ids only).</summary>
    public ITextTokenizer? Tokenizer { get; }

    internal DeviceWeights Weights => weights;

    /// <summary>The word embedding table <c>[vocab, d]</c> on the device (GPT-2's LM head is tied to it). Read it; writing changes the model.</summary>
    /// <exception cref="ObjectDisposedException">The model is disposed.</exception>
    public Tensor<float> WordEmbeddings => Live(weights.TokenEmbeddings);

    /// <summary>
    /// A decoder's output projection <c>[vocab, d]</c> (logits = final · thisᵀ): <see cref="WordEmbeddings"/> when the
    /// LM head is tied, else the checkpoint's own <c>lm_head.weight</c>. Read it; writing changes the model.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The model is disposed.</exception>
    public Tensor<float> OutputEmbeddings => Live(weights.OutputEmbeddings);

    /// <summary>BERT's pooler dense weight <c>[d, d]</c>, stored [in, out], or null when the model has no pooler.</summary>
    /// <exception cref="ObjectDisposedException">The model is disposed.</exception>
    public Tensor<float>? PoolerWeight => Live(weights.PoolerWeight);

    /// <summary>BERT's pooler bias <c>[d]</c>, or null when the model has no pooler.</summary>
    /// <exception cref="ObjectDisposedException">The model is disposed.</exception>
    public Tensor<float>? PoolerBias => Live(weights.PoolerBias);

    /// <summary>A sequence classifier's weight <c>[d, labels]</c>, stored [in, out], or null when the model has no classification head.</summary>
    /// <exception cref="ObjectDisposedException">The model is disposed.</exception>
    public Tensor<float>? ClassifierWeight => Live(weights.ClassifierWeight);

    /// <summary>A sequence classifier's bias <c>[labels]</c>, or null when the model has no classification head.</summary>
    /// <exception cref="ObjectDisposedException">The model is disposed.</exception>
    public Tensor<float>? ClassifierBias => Live(weights.ClassifierBias);

    /// <summary>
    /// Loads a model: a catalogue name (<c>minilm</c>, <c>arcticxs</c>), a Hugging Face folder
    /// (<c>config.json</c> + <c>model.safetensors</c>, sharded safetensors with <c>model.safetensors.index.json</c>,
    /// or <c>pytorch_model.bin</c>; BERT or GPT-2) or a BERT <c>.onnx</c> file (with <c>vocab.txt</c> beside it
    /// for text input). A config.json key whose value changes the computation in a way Headlight does not
    /// implement is refused; unknown keys are listed in <see cref="ModelConfig.IgnoredConfigKeys"/>.
    /// </summary>
    /// <param name="nameOrPath">What to load.</param>
    /// <param name="device">Where to put it; null opens <see cref="Device.Open(string?)"/>'s default, owned by the model.</param>
    /// <exception cref="ModelFormatException">A file is malformed or describes a model Headlight cannot run.</exception>
    /// <exception cref="FileNotFoundException">The path does not exist, or a required file is missing.</exception>
    /// <exception cref="ArgumentException">The name is neither a catalogue name nor a path.</exception>
    public static Model Load(string nameOrPath, Device? device = null) => Load(nameOrPath, device, null);

    /// <summary>As <see cref="Load(string, Device?)"/>, with <paramref name="options"/> for what the loader accepts.</summary>
    /// <exception cref="ModelFormatException">A file is malformed or describes a model Headlight cannot run.</exception>
    /// <exception cref="FileNotFoundException">The path does not exist, or a required file is missing.</exception>
    /// <exception cref="ArgumentException">The name is neither a catalogue name nor a path.</exception>
    public static Model Load(string nameOrPath, Device? device, ModelLoadOptions? options)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(nameOrPath);
        options ??= ModelLoadOptions.Default;
        bool ownsDevice = device is null;
        device ??= Device.Open();
        try
        {
            using var nonFinite = NonFiniteWeights.Allow(options.AllowNonFiniteWeights);
            var (config, weightSet, tokenizer, source) = Read(nameOrPath);
            config.Validate(source);
            var uploaded = DeviceWeights.Upload(device, config, weightSet, release: true);
            return new Model(nameOrPath, source, config, device, ownsDevice, uploaded, tokenizer);
        }
        catch
        {
            if (ownsDevice)
            {
                device.Dispose();
            }

            throw;
        }
    }

    /// <summary>
    /// A model from weights made in memory (random-weight controls): <paramref name="weights"/> in the
    /// Hugging Face names of <paramref name="config"/>'s family, uploaded to <paramref name="device"/>, which
    /// the model does not own.
    /// </summary>
    /// <exception cref="ModelFormatException">The configuration is not one Headlight can run, or a weight is missing or of the wrong shape.</exception>
    public static Model FromWeights(string name, ModelConfig config, WeightSet weights, ITextTokenizer? tokenizer, Device device)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(device);
        config.Validate(name);
        return new Model(name, weights.SourcePath, config, device, ownsDevice: false, DeviceWeights.Upload(device, config, weights), tokenizer);
    }

    /// <summary>Tokenises and pads texts into one batch (the model's special tokens added).</summary>
    /// <exception cref="InvalidOperationException">The model has no tokenizer.</exception>
    /// <exception cref="ArgumentException">A text is empty or has no tokens.</exception>
    /// <exception cref="InputTooLongException">A text needs more positions than the model has and <paramref name="truncation"/> is <see cref="TruncationMode.None"/>.</exception>
    public TokenBatch Tokenize(IReadOnlyList<string> texts, TruncationMode truncation = TruncationMode.None)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var tokenizer = RequireTokenizer();
        var encoded = new TokenizedText[texts.Count];
        for (int i = 0; i < texts.Count; i++)
        {
            string text = texts[i] ?? throw new ArgumentException($"Text {i} is null.", nameof(texts));
            var e = tokenizer.Encode(text);
            if (e.IsEmpty)
            {
                throw new ArgumentException($"Text {i} is empty: it has no words to run the model on.", nameof(texts));
            }

            encoded[i] = e;
        }

        return tokenizer.Batch(encoded, TextLimit, SentenceTruncation(truncation));
    }

    /// <summary>Tokenises a pair of texts ([CLS] a [SEP] b [SEP] with token types 0 and 1) for BERT models (RoBERTa: &lt;s&gt; a &lt;/s&gt;&lt;/s&gt; b &lt;/s&gt;).</summary>
    public TokenBatch TokenizePair(string first, string second, TruncationMode truncation = TruncationMode.None)
    {
        var tokenizer = RequireTokenizer();
        TokenizedText pair = tokenizer switch
        {
            BertWordPieceTokenizer bert => bert.EncodePair(first, second),
            RobertaTokenizer roberta => roberta.EncodePair(first, second),
            HfTokenizer hf when Config.Family == ModelFamily.BertEncoder => hf.EncodePair(first, second),
            _ => throw new InvalidOperationException($"Model '{Name}' does not take text pairs."),
        };

        return tokenizer.Batch([pair], TextLimit, SentenceTruncation(truncation));
    }

    /// <summary>
    /// Builds a batch from token ids given directly (one list per row; the ids are used as given, no special tokens added).
    /// A model id beyond the tokenizer's vocabulary (an embedding padded past it) is shown as <c>&lt;id N&gt;</c>.
    /// </summary>
    /// <exception cref="ArgumentException">A row is empty, too long, or holds an id outside the vocabulary.</exception>
    public TokenBatch FromIds(IReadOnlyList<IReadOnlyList<int>> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var texts = new TokenizedText[rows.Count];
        for (int r = 0; r < rows.Count; r++)
        {
            var ids = rows[r];
            if (ids is null || ids.Count == 0)
            {
                throw new ArgumentException($"Row {r} has no token ids.", nameof(rows));
            }

            for (int i = 0; i < ids.Count; i++)
            {
                if ((uint)ids[i] >= (uint)Config.VocabSize)
                {
                    throw new ArgumentException($"Token id {ids[i]} at row {r}, position {i} is outside the vocabulary [0, {Config.VocabSize}).", nameof(rows));
                }
            }

            var tokens = ids.Select(TokenText).ToArray();
            texts[r] = TokenizedText.FromIds(ids, tokens, Tokenizer is null ? null : Tokenizer.IsControlToken);
        }

        int pad = Tokenizer?.PadTokenId ?? Config.PositionPaddingId ?? 0;
        return TokenBatch.Create(texts, Config.MaxTokens, TruncationMode.None, pad);
    }

    /// <summary>
    /// Runs the model on a batch and copies back the last hidden state, the pooler output and
    /// classifier logits where the model has them, decoder logits, and the activations named in
    /// <paramref name="capture"/> (see <see cref="ActivationNames"/>). Capturing nothing costs nothing.
    /// </summary>
    /// <exception cref="ArgumentException">The batch is longer than the model's positions, holds ids outside the vocabulary, or a capture name is unknown.</exception>
    public ForwardResult Forward(TokenBatch batch, IEnumerable<string>? capture = null) => Forward(batch, capture, default);

    /// <summary>
    /// As <see cref="Forward(TokenBatch, IEnumerable{string}?)"/>, with a gate per head <c>[layer, head]</c> multiplying its output
    /// (0 ablates the head; empty = every gate 1). The weights are as loaded again when the call returns.
    /// </summary>
    /// <exception cref="ArgumentException">As the other overload, or <paramref name="headGates"/> does not hold layers·heads values.</exception>
    public ForwardResult Forward(TokenBatch batch, IEnumerable<string>? capture, ReadOnlyMemory<float> headGates)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var names = ActivationNames.Validate(capture, Config.Layers);
        HeadGating.Check(Config, Name, headGates.Span);
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            var state = Prepare(batch, savesForBackward: false);
            var cache = new ActivationCache();
            var gated = HeadGating.Apply(Config, weights, packed, headGates.Span);
            try
            {
                TransformerForward.Run(Config, weights, state, names, cache, packed: packed);
                return Collect(batch, state, cache);
            }
            finally
            {
                gated?.Restore();
            }
        }
    }

    /// <summary>
    /// Runs the forward pass <paramref name="request"/> describes and leases its state: the last hidden state and embeddings on
    /// the device, the captured activations, and the backward pass it asked for. The lease holds the model's lock until disposed.
    /// </summary>
    /// <exception cref="ArgumentException">An input does not hold rows·seq values (embeddings rows·seq·d), an id or type is outside the
    /// model's range, the rows are longer than the model's positions, a capture name is unknown, or the gates or ε are out of range.</exception>
    /// <exception cref="ObjectDisposedException">The model is disposed.</exception>
    public ModelPass Run(PassRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var names = CheckRequest(request);
        int b = request.Rows;
        int t = request.SequenceLength;
        bool saves = request.Backward is not null;
        Monitor.Enter(gate);
        HeadGating? gated = null;
        try
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            ForwardState state;
            if (request.WriteInputs is { } write)
            {
                state = StateFor(b, t, saves);
                write(state.Ids, state.KeyMask);
                if (Config.PositionPaddingId is { } pad)
                {
                    // Positions follow the ids the callback wrote (a token replaced by the pad id becomes a pad).
                    state.SetPositionsFromIds(state.Ids.ToArray(), pad);
                }

                if (Config.TypeVocabSize > 1)
                {
                    ReadOnlySpan<int> rowTypes = request.TokenTypeIds.IsEmpty ? new int[b * t] : request.TokenTypeIds.Span;
                    state.TypeIds.CopyFrom(rowTypes);
                }
            }
            else
            {
                ReadOnlySpan<int> types = request.TokenTypeIds.IsEmpty ? new int[b * t] : request.TokenTypeIds.Span;
                state = Prepare(request.InputIds.Span, request.AttentionMask.Span, types, b, t, saves, nameof(request));
            }

            bool given = !request.TokenEmbeddings.IsEmpty;
            if (given)
            {
                state.TokenEmbeds.CopyFrom(request.TokenEmbeddings.Span);
            }

            var cache = new ActivationCache();
            gated = HeadGating.Apply(Config, weights, packed, request.HeadGates.Span);
            TransformerForward.Run(Config, weights, state, names, cache, tokenEmbedsGiven: given, packed: packed);
            var lease = gated;
            return new ModelPass(this, state, cache, request.Backward, () =>
            {
                try
                {
                    lease?.Restore();
                }
                finally
                {
                    Monitor.Exit(gate);
                }
            });
        }
        catch
        {
            try
            {
                gated?.Restore();
            }
            finally
            {
                Monitor.Exit(gate);
            }

            throw;
        }
    }

    /// <summary>
    /// Device bytes one row of a pass like <paramref name="request"/> holds (its sequence length, captures and backward pass; rows and
    /// inputs are ignored): what a memory budget divides by to size batches. Measured on the buffers a one-row pass allocates.
    /// </summary>
    public long BytesPerRow(PassRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var names = ActivationNames.Validate(request.Capture, Config.Layers);
        var backward = request.Backward;
        var key = (request.SequenceLength, backward, string.Join(",", names.Where(n => n.EndsWith(".attn.probs", StringComparison.Ordinal)).Order(StringComparer.Ordinal)));
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            if (!rowBytes.TryGetValue(key, out long bytes))
            {
                using var probe = new ForwardState(Device, Config, 1, request.SequenceLength, backward is not null);
                for (int l = 0; l < Config.Layers; l++)
                {
                    if (names.Contains(ActivationNames.AttentionProbs(l)))
                    {
                        _ = probe.ProbabilitiesFor(l);
                    }
                }

                // The lease makes the backward buffers; measure it the same way, then drop the probe.
                bytes = new ModelPass(this, probe, new ActivationCache(), backward, static () => { }).Bytes;
                rowBytes[key] = bytes;
            }

            return bytes;
        }
    }


    /// <summary>
    /// Runs the model on a batch and writes only the last hidden state <c>[batch, seq, d]</c> (after GPT-2's final
    /// LayerNorm) into <paramref name="lastHiddenState"/>: the steady-state path for serving and benchmarks. Once
    /// the buffers of the batch's shape exist (the first call of a shape makes them), a call on the <c>cpu</c>
    /// device allocates nothing.
    /// </summary>
    /// <exception cref="ArgumentException">The span's length is not batch·seq·d, or the batch is longer than the model's positions or holds ids outside the vocabulary.</exception>
    public void Forward(TokenBatch batch, Span<float> lastHiddenState)
    {
        ArgumentNullException.ThrowIfNull(batch);
        long needed = (long)batch.BatchSize * batch.SequenceLength * Config.Hidden;
        if (lastHiddenState.Length != needed)
        {
            throw new ArgumentException($"Model '{Name}': the output holds {lastHiddenState.Length} floats; [batch, seq, d] = [{batch.BatchSize}, {batch.SequenceLength}, {Config.Hidden}] needs {needed}.", nameof(lastHiddenState));
        }

        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            var state = Prepare(batch, savesForBackward: false);
            TransformerForward.Run(Config, weights, state, NoCapture, null, packed: packed);
            TransformerForward.LastHidden(Config, state).CopyTo(lastHiddenState);
        }
    }

    /// <summary>
    /// The <paramref name="k"/> most likely next tokens after <paramref name="position"/> of <paramref name="row"/>, with their
    /// logits and probabilities (decoders). An id beyond the tokenizer's vocabulary has the text <c>&lt;id N&gt;</c>.
    /// </summary>
    /// <exception cref="InvalidOperationException">The result has no decoder logits.</exception>
    public IReadOnlyList<TokenPrediction> TopK(ForwardResult result, int row, int position, int k)
    {
        ArgumentNullException.ThrowIfNull(result);
        var logits = result.Logits ?? throw new InvalidOperationException($"Model '{Name}' is not a decoder: it has no next-token logits.");
        ArgumentOutOfRangeException.ThrowIfNegative(row);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(row, result.BatchSize);
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(position, result.SequenceLength);
        ArgumentOutOfRangeException.ThrowIfLessThan(k, 1);
        int v = Config.VocabSize;
        var span = logits.AsSpan(((row * result.SequenceLength) + position) * v, v).ToArray();
        float max = System.Numerics.Tensors.TensorPrimitives.Max(span);
        double sum = 0;
        foreach (float x in span)
        {
            sum += Math.Exp(x - max);
        }

        var order = Enumerable.Range(0, v).OrderByDescending(i => span[i]).ThenBy(i => i).Take(Math.Min(k, v)).ToArray();
        return order.Select(i => new TokenPrediction(i, TokenText(i), span[i], (float)(Math.Exp(span[i] - max) / sum))).ToArray();
    }

    // A model id's text: #id without a tokenizer, <id N> for a model id the tokenizer's smaller vocabulary lacks
    // (checkpoints pad the embedding past the tokenizer, e.g. to a multiple of 64), else the tokenizer's token.
    private string TokenText(int id) =>
        Tokenizer is null ? $"#{id}" : (uint)id < (uint)Tokenizer.VocabularySize ? Tokenizer.GetToken(id) : $"<id {id}>";

    /// <summary>
    /// Greedy generation for decoders: appends the most likely token <paramref name="count"/> times (end-of-sequence tokens
    /// do not stop it) and returns the new ids. Runs on a key–value cache, as the overload with options does.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model is not a decoder.</exception>
    /// <exception cref="ArgumentException">The prompt is empty.</exception>
    /// <exception cref="ArgumentOutOfRangeException">The prompt plus <paramref name="count"/> exceeds the model's positions (<see cref="ModelConfig.MaxTokens"/>).</exception>
    public IReadOnlyList<int> Generate(IReadOnlyList<int> prompt, int count, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentOutOfRangeException.ThrowIfNegative(count);

        // Checked here too so that the error names this overload's parameter; long: prompt + count may overflow int.
        if ((long)prompt.Count + count > Config.MaxTokens)
        {
            throw new ArgumentOutOfRangeException(nameof(count), count, $"Generation needs at most {Config.MaxTokens} positions in all (the model's position limit); asked for {prompt.Count} + {count}.");
        }

        return Generate(prompt, new GenerationOptions { MaxNewTokens = count, StopAtEndOfSequence = false }, cancellationToken).Tokens;
    }

    /// <summary>
    /// Generates up to <see cref="GenerationOptions.MaxNewTokens"/> tokens after <paramref name="prompt"/>: greedy or sampled
    /// (temperature, top-k, top-p, seed), stopping at an end-of-sequence token when asked. With the key–value cache (the
    /// default) the prompt runs once and each step runs the blocks on the new token alone. Cancellation is checked before
    /// each step.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model is not a decoder.</exception>
    /// <exception cref="ArgumentException">The prompt is empty or holds an id outside the vocabulary.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range, or the prompt plus the new tokens exceed the model's positions.</exception>
    public GenerationResult Generate(IReadOnlyList<int> prompt, GenerationOptions options, CancellationToken cancellationToken = default)
        => Generate(prompt, options, null, cancellationToken);

    /// <summary>As the public overload; <paramref name="onLogits"/> sees each step's next-token logits [vocab] before the pick.</summary>
    internal GenerationResult Generate(IReadOnlyList<int> prompt, GenerationOptions options, Action<int, ReadOnlySpan<float>>? onLogits, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        if (!Config.IsDecoder)
        {
            throw new InvalidOperationException($"Model '{Name}' is an encoder; only decoders generate text.");
        }

        if (prompt.Count == 0)
        {
            throw new ArgumentException("Generation needs a non-empty prompt.", nameof(prompt));
        }

        // long: prompt.Count + int.MaxValue would wrap below the limit in int arithmetic.
        if ((long)prompt.Count + options.MaxNewTokens > Config.MaxTokens)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxNewTokens, $"Generation needs at most {Config.MaxTokens} positions in all (the model's position limit); asked for {prompt.Count} + {options.MaxNewTokens}.");
        }

        var sampler = new TokenSampler(options);
        var ids = prompt.ToList();
        var tokens = new List<int>(options.MaxNewTokens);
        var probabilities = new List<double>(options.MaxNewTokens);
        var logits = new float[Config.VocabSize];
        bool stopped = false;
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            using var cache = options.UseKeyValueCache ? new KeyValueCache(Device, Config, prompt.Count + options.MaxNewTokens) : null;
            using var row = Device.Allocate<float>(1, Config.VocabSize);
            for (int n = 0; n < options.MaxNewTokens; n++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (cache is null)
                {
                    NextLogits(CollectionsMarshal.AsSpan(ids), 0, null, row, logits);
                }
                else
                {
                    // The prompt at once, then one token per step at its own position.
                    int first = cache.Length;
                    NextLogits(CollectionsMarshal.AsSpan(ids)[first..], first, cache, row, logits);
                }

                onLogits?.Invoke(n, logits);
                var (next, p) = sampler.Next(logits);
                ids.Add(next);
                tokens.Add(next);
                probabilities.Add(p);
                if (options.StopAtEndOfSequence && Config.EndOfSequenceIds.Contains(next))
                {
                    stopped = true;
                    break;
                }
            }
        }

        return new GenerationResult(tokens, probabilities, stopped);
    }

    // Runs the blocks on `ids` placed at positions first.., appending to the cache when there is one, and writes the
    // next-token logits after the last of them into `logits` (one download of vocab floats).
    private void NextLogits(ReadOnlySpan<int> ids, int first, KeyValueCache? cache, Tensor<float> row, float[] logits)
    {
        int t = ids.Length;
        for (int i = 0; i < t; i++)
        {
            if ((uint)ids[i] >= (uint)Config.VocabSize)
            {
                throw new ArgumentException($"Model '{Name}': token id {ids[i]} at position {first + i} is outside the vocabulary [0, {Config.VocabSize}).", "prompt");
            }
        }

        using var state = new ForwardState(Device, Config, 1, t, savesForBackward: false);
        state.Ids.CopyFrom(ids);
        state.KeyMask.Fill(1);
        if (first > 0)
        {
            var positions = new int[t];
            for (int i = 0; i < t; i++)
            {
                positions[i] = first + i;
            }

            state.Positions.CopyFrom(positions);
        }

        TransformerForward.Run(Config, weights, state, NoCapture, null, packed: packed, keyValues: cache);
        var last = state.Final!.Slice((long)(t - 1) * Config.Hidden, 1, Config.Hidden);
        Gemm.Forward(last, weights.OutputEmbeddings, row, transposeB: true);
        row.CopyTo(logits);
    }

    /// <summary>
    /// Sentence embeddings [text][d] as the model defines them (pooling, then L2 normalisation where the model
    /// asks for it), computed <paramref name="batchSize"/> texts at a time so memory stays bounded however many
    /// texts there are. Cancellation is checked before each batch; a cancelled call leaves the model usable.
    /// </summary>
    /// <exception cref="InvalidOperationException">The model defines no sentence embedding.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="batchSize"/> is not positive.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public float[][] Embed(IReadOnlyList<string> texts, TruncationMode truncation = TruncationMode.None, int batchSize = 32, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(texts);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        if (Config.Pooling is null)
        {
            throw new InvalidOperationException($"Model '{Name}' defines no sentence embedding (no pooling).");
        }

        var embeddings = new float[texts.Count][];
        for (int start = 0; start < texts.Count; start += batchSize)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int count = Math.Min(batchSize, texts.Count - start);
            var slice = new string[count];
            for (int i = 0; i < count; i++)
            {
                slice[i] = texts[start + i];
            }

            var result = Forward(Tokenize(slice, truncation));
            result.SentenceEmbeddings!.CopyTo(embeddings, start);
            progress?.Report(new OperationProgress("embed", start + count, texts.Count, "texts"));
        }

        return embeddings;
    }

    /// <summary>Uploads a batch's ids into the cached state for its shape and returns the state.</summary>
    internal ForwardState Prepare(TokenBatch batch, bool savesForBackward)
        => Prepare(batch.InputIds.Span, batch.AttentionMask.Span, batch.TokenTypeIds.Span, batch.BatchSize, batch.SequenceLength, savesForBackward, nameof(batch));

    /// <summary>
    /// Uploads ids, key mask and token types [batch, seq] into the cached state for that shape and
    /// returns the state; every id and type is checked first.
    /// </summary>
    internal ForwardState Prepare(ReadOnlySpan<int> ids, ReadOnlySpan<int> mask, ReadOnlySpan<int> types, int b, int t, bool savesForBackward, string paramName = "batch")
    {
        if (t > Config.MaxTokens)
        {
            throw new ArgumentException($"Model '{Name}': the batch has {t} tokens per row, more than the model's {Config.MaxTokens} positions.", paramName);
        }

        if (ids.Length != b * t || mask.Length != b * t || types.Length != b * t)
        {
            throw new ArgumentException($"Model '{Name}': ids, mask and types must each hold {b}·{t} values; got {ids.Length}, {mask.Length} and {types.Length}.", paramName);
        }

        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)Config.VocabSize)
            {
                throw new ArgumentException($"Model '{Name}': token id {ids[i]} at row {i / t}, position {i % t} is outside the vocabulary [0, {Config.VocabSize}).", paramName);
            }

            if (Config.TypeVocabSize > 1 && (uint)types[i] >= (uint)Config.TypeVocabSize)
            {
                throw new ArgumentException($"Model '{Name}': token type {types[i]} at row {i / t}, position {i % t} is outside [0, {Config.TypeVocabSize}).", paramName);
            }
        }

        var state = StateFor(b, t, savesForBackward);
        state.Ids.CopyFrom(ids);
        state.KeyMask.CopyFrom(mask);
        if (Config.PositionPaddingId is { } pad)
        {
            state.SetPositionsFromIds(ids, pad);
        }

        // One token type (RoBERTa) adds row 0 to every token whatever the segment; none (DistilBERT) adds nothing.
        if (Config.TypeVocabSize > 1)
        {
            state.TypeIds.CopyFrom(types); // otherwise the state's zeros (and positions) stay as made
        }

        return state;
    }

    /// <summary>
    /// The lock every forward and backward pass of this model runs under: the cached buffers are
    /// shared, so a caller that runs a forward pass and then reads or differentiates its state holds
    /// it across both (<see cref="ModelPass"/> does).
    /// </summary>
    internal object Gate => gate;

    private ForwardState StateFor(int batch, int seq, bool saves)
    {
        var key = (batch, seq, saves);
        for (var node = states.First; node is not null; node = node.Next)
        {
            if (node.Value.Key == key)
            {
                states.Remove(node);
                states.AddFirst(node);
                return node.Value.State;
            }
        }

        var state = new ForwardState(Device, Config, batch, seq, saves);
        states.AddFirst((key, state));
        if (states.Count > CachedShapes)
        {
            states.Last!.Value.State.Dispose();
            states.RemoveLast();
        }

        return state;
    }

    private ForwardResult Collect(TokenBatch batch, ForwardState state, ActivationCache cache)
    {
        int b = batch.BatchSize;
        int t = batch.SequenceLength;
        int d = Config.Hidden;
        var hidden = TransformerForward.LastHidden(Config, state).ToArray();
        float[]? pooler = null;
        float[]? classLogits = null;
        if (weights.PoolerWeight is not null)
        {
            pooler = Pooler(hidden, b, t);
            if (weights.ClassifierWeight is not null)
            {
                classLogits = Linear(pooler, b, d, weights.ClassifierWeight, weights.ClassifierBias!, Config.NumLabels);
            }
        }

        float[]? logits = null;
        if (Config.IsDecoder)
        {
            using var output = Device.Allocate<float>(b, t, Config.VocabSize);
            Gemm.Forward(state.Final!, weights.OutputEmbeddings, output, transposeB: true);
            logits = output.ToArray();
        }

        float[][]? embeddings = Config.Pooling is { } mode
            ? SentencePooling.Pool(hidden, batch.AttentionMask.Span, b, t, d, mode, Config.NormalizeEmbedding)
            : null;
        return new ForwardResult(b, t, d, batch, hidden, pooler, classLogits, logits, embeddings, cache);
    }

    // BERT's pooler: tanh(W·h[CLS] + b) per row, on the device (DistilBERT's pre_classifier: ReLU instead of tanh).
    private float[] Pooler(float[] hidden, int b, int t)
    {
        int d = Config.Hidden;
        var cls = new float[b * d];
        for (int r = 0; r < b; r++)
        {
            hidden.AsSpan(r * t * d, d).CopyTo(cls.AsSpan(r * d, d));
        }

        using var input = Device.FromHost<float>(cls, b, d);
        using var output = Device.Allocate<float>(b, d);
        Gemm.Forward(input, weights.PoolerWeight!, output, bias: weights.PoolerBias);
        if (Config.PoolerActivation == PoolerActivation.Relu)
        {
            var pooled = output.ToArray();
            for (int i = 0; i < pooled.Length; i++)
            {
                pooled[i] = Math.Max(pooled[i], 0f);
            }

            return pooled;
        }

        Elementwise.Tanh(output, output);
        return output.ToArray();
    }

    private float[] Linear(float[] x, int rows, int inDim, Tensor<float> weight, Tensor<float> bias, int outDim)
    {
        using var input = Device.FromHost<float>(x, rows, inDim);
        using var output = Device.Allocate<float>(rows, outDim);
        Gemm.Forward(input, weight, output, bias: bias);
        return output.ToArray();
    }

    private HashSet<string> CheckRequest(PassRequest request)
    {
        int b = request.Rows;
        int t = request.SequenceLength;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(b, nameof(request));
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(t, nameof(request));
        if (t > Config.MaxTokens)
        {
            throw new ArgumentException($"Model '{Name}': the request has {t} tokens per row, more than the model's {Config.MaxTokens} positions.", nameof(request));
        }

        if (request.TokenTypeIds.Length is not 0 && request.TokenTypeIds.Length != b * t)
        {
            throw new ArgumentException($"Model '{Name}': the token types hold {request.TokenTypeIds.Length} values; [rows, seq] = [{b}, {t}] needs {b * t}.", nameof(request));
        }

        long embeddings = (long)b * t * Config.Hidden;
        if (!request.TokenEmbeddings.IsEmpty && request.TokenEmbeddings.Length != embeddings)
        {
            throw new ArgumentException($"Model '{Name}': the word embeddings hold {request.TokenEmbeddings.Length} floats; [rows, seq, d] = [{b}, {t}, {Config.Hidden}] needs {embeddings}.", nameof(request));
        }

        if (request.Backward is { Rule: not BackwardRule.Gradient, Epsilon: var epsilon } && !(epsilon > 0 && float.IsFinite(epsilon)))
        {
            throw new ArgumentException($"Model '{Name}': relevance rules need a positive, finite ε; got {epsilon}.", nameof(request));
        }

        HeadGating.Check(Config, Name, request.HeadGates.Span);
        return ActivationNames.Validate(request.Capture, Config.Layers);
    }

    private T Live<T>(T value)
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        return value;
    }

    // Texts fit the positions and, for sentence-transformers folders, max_seq_length.
    private int TextLimit => Math.Min(Config.MaxTokens, Config.MaxSequenceLength ?? int.MaxValue);

    // sentence-transformers always truncates to max_seq_length (longest first, special tokens kept), so a model that sets
    // it does too; beyond the positions a text is still refused unless truncation is asked for.
    private TruncationMode SentenceTruncation(TruncationMode truncation)
        => truncation == TruncationMode.None && Config.MaxSequenceLength is { } limit && limit <= Config.MaxTokens ? TruncationMode.LongestFirst : truncation;

    private ITextTokenizer RequireTokenizer() => Tokenizer
        ?? throw new InvalidOperationException($"Model '{Name}' came without tokenizer files (tokenizer.json, vocab.txt, or vocab.json + merges.txt): pass token ids instead of text.");

    /// <summary>Frees the weights, every cached buffer, and the device if the model opened it.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (disposed)
            {
                return;
            }

            disposed = true;
            foreach (var (_, state) in states)
            {
                state.Dispose();
            }

            states.Clear();
            packed?.Dispose();
            weights.Dispose();
            if (ownsDevice)
            {
                Device.Dispose();
            }
        }
    }
}
