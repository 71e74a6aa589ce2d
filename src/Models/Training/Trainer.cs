using System.Diagnostics;
using System.Text.Json;
using Headlight.Kernels;
using Headlight.Models.Loading;

namespace Headlight.Models.Training;

/// <summary>
/// Trains a decoder on a <see cref="TokenCorpus"/> on one device: next-token cross-entropy fused with the LM head, the fused
/// attention backward, gradients of every parameter, global-norm clipping and AdamW as device kernels, warm-up then cosine
/// learning rate. Step s draws its windows from a generator seeded by (seed, s), so a resumed run continues the same loss
/// curve. Checkpoints are Hugging Face folders (config.json, model.safetensors, tokenizer.json) that every command loads,
/// plus the optimizer's state (optimizer.safetensors, training.json).
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly Model model;
    private readonly TokenCorpus corpus;
    private readonly string tokenizerPath;
    private readonly DecoderGradient pass;
    private readonly Dictionary<string, (Tensor<float> M, Tensor<float> V)> moments = [];
    private readonly Tensor<float> squares;        // [1] Σ g²
    private readonly Tensor<float> clip;           // [1] clipping factor
    private readonly List<TrainingPoint> history = [];
    private readonly int[] inputIds;
    private readonly int[] targetIds;
    private bool disposed;

    private Trainer(TrainingOptions options, Model model, TokenCorpus corpus, string tokenizerPath, string outputDirectory, int step, IEnumerable<TrainingPoint> history)
    {
        Options = options;
        this.model = model;
        this.corpus = corpus;
        this.tokenizerPath = tokenizerPath;
        OutputDirectory = outputDirectory;
        Step = step;
        this.history.AddRange(history);

        var device = model.Device;
        int rows = options.BatchSize * options.Context;
        pass = new DecoderGradient(model, options.BatchSize, options.Context);
        foreach (var p in pass.Gradients.Parameters)
        {
            var m = device.Allocate<float>(p.Weight.Shape.Dims.ToArray());
            var v = device.Allocate<float>(p.Weight.Shape.Dims.ToArray());
            m.Fill(0f);
            v.Fill(0f);
            moments[p.Name] = (m, v);
        }

        squares = device.Allocate<float>(1);
        clip = device.Allocate<float>(1);
        inputIds = new int[rows];
        targetIds = new int[rows];
    }

    /// <summary>The options of the run.</summary>
    public TrainingOptions Options { get; }

    /// <summary>The model being trained (its weights change with every step).</summary>
    public ModelConfig Config => model.Config;

    /// <summary>Where checkpoints and the final model go.</summary>
    public string OutputDirectory { get; }

    /// <summary>Optimizer steps done.</summary>
    public int Step { get; private set; }

    /// <summary>Every step's figures so far (resumed runs include the steps before the checkpoint).</summary>
    public IReadOnlyList<TrainingPoint> History => history;

    /// <summary>Trainable weights.</summary>
    public long ParameterCount => pass.Gradients.Count;

    /// <summary>
    /// A new model of <paramref name="options"/>' shape, randomly initialised from its seed, with the vocabulary of the
    /// tokenizer.json the corpus was tokenised with.
    /// </summary>
    /// <exception cref="ArgumentException">An option is out of range, or the corpus holds fewer tokens than one window.</exception>
    public static Trainer Create(TrainingOptions options, TokenCorpus corpus, string tokenizerJsonPath, string outputDirectory, Device device)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(corpus);
        ArgumentNullException.ThrowIfNull(device);
        options.Validate();
        var tokenizer = ReadTokenizer(tokenizerJsonPath);
        int endOfText = tokenizer.TryGetId("<|endoftext|>", out int id) ? id : 0;
        var config = DecoderFolder.Config(options.Family, options.Layers, options.Width, options.Heads, options.KvHeads, options.IntermediateWidth, options.Context,
            tokenizer.VocabularySize, endOfText);
        CheckCorpus(corpus, options);
        var model = Model.FromWeights("training", config, DecoderFolder.Initial(config, options.Seed), tokenizer, device);
        try
        {
            return new Trainer(options, model, corpus, tokenizerJsonPath, outputDirectory, 0, []);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Continues from a checkpoint folder <see cref="SaveCheckpoint"/> wrote, with the options it was made with.</summary>
    /// <exception cref="ModelFormatException">The folder is not a checkpoint, or its weights or optimizer state disagree with its options.</exception>
    public static Trainer Resume(string checkpointDirectory, TokenCorpus corpus, string outputDirectory, Device device)
    {
        ArgumentNullException.ThrowIfNull(checkpointDirectory);
        ArgumentNullException.ThrowIfNull(corpus);
        string statePath = Path.Combine(checkpointDirectory, "training.json");
        if (!File.Exists(statePath))
        {
            throw new ModelFormatException(statePath, "(file)", "a training checkpoint's training.json", "no such file");
        }

        TrainingState saved;
        try
        {
            saved = JsonSerializer.Deserialize<TrainingState>(File.ReadAllText(statePath)) ?? throw new JsonException("null");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(statePath, "(root)", "the JSON training.json holds", e.Message, e);
        }

        saved.Options.Validate();
        CheckCorpus(corpus, saved.Options);
        var model = Model.Load(checkpointDirectory, device);
        try
        {
            var expected = DecoderFolder.Config(saved.Options.Family, saved.Options.Layers, saved.Options.Width, saved.Options.Heads, saved.Options.KvHeads,
                saved.Options.IntermediateWidth, saved.Options.Context, model.Config.VocabSize, model.Config.EndOfSequenceIds.FirstOrDefault());
            if (expected.ParameterCount != model.Config.ParameterCount || expected.Family != model.Config.Family || expected.Layers != model.Config.Layers)
            {
                throw new ModelFormatException(Path.Combine(checkpointDirectory, "config.json"), "(shape)", $"the model training.json describes ({expected.ParameterCount} parameters)", $"{model.Config.ParameterCount} parameters");
            }

            var trainer = new Trainer(saved.Options, model, corpus, Path.Combine(checkpointDirectory, "tokenizer.json"), outputDirectory, saved.Step, saved.History);
            try
            {
                trainer.ReadMoments(Path.Combine(checkpointDirectory, "optimizer.safetensors"));
                return trainer;
            }
            catch
            {
                trainer.Dispose();
                throw;
            }
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Runs the remaining steps, checkpointing every <see cref="TrainingOptions.CheckpointEvery"/> steps and at the end, evaluating
    /// as <see cref="TrainingOptions.EvaluateEvery"/> says. Cancellation is checked before each step; a cancelled run keeps
    /// its last checkpoint and the trainer stays usable.
    /// </summary>
    /// <exception cref="TrainingDivergedException">A loss or gradient was not finite (the weights stay as before that step).</exception>
    public string Run(IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        int first = Step;
        while (Step < Options.Steps)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var point = RunStep();
            bool checkpoint = Options.CheckpointEvery > 0 && Step % Options.CheckpointEvery == 0 && Step < Options.Steps;
            bool evaluate = (Options.EvaluateEvery > 0 && Step % Options.EvaluateEvery == 0) || checkpoint || Step == Options.Steps;
            if (evaluate)
            {
                point = point with { EvaluationLoss = EvaluationLoss() };
                history[^1] = point;
            }

            if (checkpoint)
            {
                SaveCheckpoint();
            }

            double seconds = clock.Elapsed.TotalSeconds;
            double rate = (Step - first) * (double)Options.TokensPerStep / Math.Max(seconds, 1e-9);
            var remaining = TimeSpan.FromSeconds((Options.Steps - Step) * Options.TokensPerStep / Math.Max(rate, 1e-9));
            progress?.Report(new TrainingProgress(point, Options.Steps, rate, remaining));
        }

        SaveCheckpoint();
        DecoderFolder.Write(OutputDirectory, Config, model.Weights);
        CopyTokenizer(OutputDirectory);
        return OutputDirectory;
    }

    /// <summary>One optimizer step: the micro-batches' gradients, clipping, AdamW. Returns its figures.</summary>
    /// <exception cref="TrainingDivergedException">The loss or a gradient was not finite; the weights are unchanged.</exception>
    public TrainingPoint RunStep()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        int rows = Options.BatchSize * Options.Context;
        int step = Step + 1;
        var gradients = pass.Gradients;
        gradients.Zero();
        float scale = 1f / (rows * Options.GradientAccumulation);
        double loss = 0;
        lock (model.Gate)
        {
            for (int micro = 0; micro < Options.GradientAccumulation; micro++)
            {
                corpus.SampleWindows(new Random(WindowSeed(Options.Seed, step, micro)), Options.Context, inputIds, targetIds);
                loss += pass.Accumulate(inputIds, targetIds, scale) / rows;
            }

            loss /= Options.GradientAccumulation;
            squares.Fill(0f);
            foreach (var p in gradients.Parameters)
            {
                GradientNorm.AccumulateSquares(p.Gradient, squares);
            }

            double norm = Math.Sqrt(squares.ToArray()[0]);
            if (!double.IsFinite(loss) || !double.IsFinite(norm))
            {
                string bad = gradients.Parameters.FirstOrDefault(p => p.Gradient.ToArray().Any(x => !float.IsFinite(x)))?.Name ?? "loss";
                throw new TrainingDivergedException(step, bad, $"Step {step}: the loss is {loss} and the gradient norm {norm}; the first non-finite gradient is {bad}. The weights are those after step {Step}.");
            }

            GradientNorm.ClipFactor(squares, (float)Options.ClipNorm, clip);
            double rate = LearningRate(step);
            foreach (var p in gradients.Parameters)
            {
                var (m, v) = moments[p.Name];
                var settings = new AdamWSettings((float)rate, (float)Options.Beta1, (float)Options.Beta2, (float)Options.Epsilon, p.Decays ? (float)Options.WeightDecay : 0f);
                AdamW.Step(p.Weight, p.Gradient, m, v, settings, step, clip);
            }

            Step = step;
            var point = new TrainingPoint(step, loss, rate, norm, null);
            history.Add(point);
            return point;
        }
    }

    /// <summary>Mean cross-entropy over up to <see cref="TrainingOptions.EvaluationWindows"/> fixed held-out windows.</summary>
    public double EvaluationLoss()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        int t = Options.Context;
        int b = Options.BatchSize;
        var windowInputs = new int[Options.EvaluationWindows * t];
        var windowTargets = new int[Options.EvaluationWindows * t];
        int windows = corpus.HeldOutWindows(t, Options.EvaluationWindows, windowInputs, windowTargets);
        if (windows == 0)
        {
            return double.NaN;
        }

        double total = 0;
        lock (model.Gate)
        {
            var ids = new int[b * t];
            var next = new int[b * t];
            for (int first = 0; first < windows; first += b)
            {
                int count = Math.Min(b, windows - first);
                Array.Fill(ids, 0);
                Array.Fill(next, -1);
                windowInputs.AsSpan(first * t, count * t).CopyTo(ids);
                windowTargets.AsSpan(first * t, count * t).CopyTo(next);
                total += pass.Loss(ids, next);
            }
        }

        return total / ((double)windows * t);
    }

    /// <summary>Writes a checkpoint folder <c>step-NNNNNN</c> under <see cref="OutputDirectory"/> and returns its path.</summary>
    public string SaveCheckpoint()
    {
        ObjectDisposedException.ThrowIf(disposed, this);
        string folder = Path.Combine(OutputDirectory, $"step-{Step:D6}");
        lock (model.Gate)
        {
            DecoderFolder.Write(folder, Config, model.Weights);
            CopyTokenizer(folder);
            var tensors = new List<(string, int[], float[])>();
            foreach (var p in pass.Gradients.Parameters)
            {
                var (m, v) = moments[p.Name];
                tensors.Add((p.Name + ".exp_avg", p.Weight.Shape.Dims.ToArray(), m.ToArray()));
                tensors.Add((p.Name + ".exp_avg_sq", p.Weight.Shape.Dims.ToArray(), v.ToArray()));
            }

            SafeTensorsWriter.Write(Path.Combine(folder, "optimizer.safetensors"), tensors);
            var saved = new TrainingState(Options, Step, history.ToArray());
            File.WriteAllText(Path.Combine(folder, "training.json"), JsonSerializer.Serialize(saved, new JsonSerializerOptions { WriteIndented = true }));
        }

        return folder;
    }

    /// <summary>Warm-up from 0 to the peak over WarmupSteps, then a cosine from the peak to the minimum at the last step.</summary>
    public double LearningRate(int step)
    {
        if (step <= Options.WarmupSteps)
        {
            return Options.LearningRate * step / Math.Max(1, Options.WarmupSteps);
        }

        double progress = (double)(step - Options.WarmupSteps) / Math.Max(1, Options.Steps - Options.WarmupSteps);
        return Options.MinLearningRate + (0.5 * (Options.LearningRate - Options.MinLearningRate) * (1 + Math.Cos(Math.PI * Math.Min(1, progress))));
    }

    /// <summary>Frees the model and every buffer.</summary>
    public void Dispose()
    {
        if (disposed)
        {
            return;
        }

        disposed = true;
        foreach (var (m, v) in moments.Values)
        {
            m.Dispose();
            v.Dispose();
        }

        pass.Dispose();
        squares.Dispose();
        clip.Dispose();
        model.Dispose();
    }

    internal Model Model => model;

    internal ParameterGradients Gradients => pass.Gradients;

    // A seed per (run seed, step, micro-batch): the windows of step s never depend on the steps before it.
    internal static int WindowSeed(int seed, int step, int micro)
    {
        ulong x = ((ulong)(uint)seed << 32) ^ ((ulong)(uint)step << 8) ^ (uint)micro;
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return (int)((x ^ (x >> 31)) & 0x7FFFFFFF);
    }

    private static void CheckCorpus(TokenCorpus corpus, TrainingOptions options)
    {
        if (corpus.TrainTokens < options.Context + 1)
        {
            throw new ArgumentException($"The corpus's training split holds {corpus.TrainTokens} tokens; one window of context {options.Context} needs {options.Context + 1}.", nameof(corpus));
        }
    }

    private static Tokenization.HfTokenizer ReadTokenizer(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Tokenization.HfTokenizer.FromFile(path);
    }

    private void CopyTokenizer(string folder)
    {
        string destination = Path.Combine(folder, "tokenizer.json");
        if (!string.Equals(Path.GetFullPath(tokenizerPath), Path.GetFullPath(destination), StringComparison.Ordinal))
        {
            File.Copy(tokenizerPath, destination, overwrite: true);
        }
    }

    private void ReadMoments(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        foreach (var p in pass.Gradients.Parameters)
        {
            var (m, v) = moments[p.Name];
            foreach (var (suffix, tensor) in new[] { (".exp_avg", m), (".exp_avg_sq", v) })
            {
                string name = p.Name + suffix;
                if (!file.Tensors.TryGetValue(name, out var info) || info.ElementCount != tensor.Length)
                {
                    throw new ModelFormatException(path, name, $"{tensor.Length} optimizer values for {p.Name} {p.Weight.Shape}", info is null ? "no such tensor" : $"{info.ElementCount}");
                }

                tensor.CopyFrom(file.ReadFloat32(name));
            }
        }
    }

    /// <summary>What training.json holds.</summary>
    internal sealed record TrainingState(TrainingOptions Options, int Step, TrainingPoint[] History);
}
