using System.Text.Json.Serialization;

namespace Headlight.Models.Training;

/// <summary>The model to make and how to train it. Defaults make a small Llama-style model.</summary>
public sealed record TrainingOptions
{
    /// <summary>"llama" (RMSNorm, SwiGLU, rotary, grouped-query attention; the default) or "gpt2" (LayerNorm, GELU, learned positions).</summary>
    public string Family { get; init; } = "llama";

    /// <summary>Blocks.</summary>
    public int Layers { get; init; } = 2;

    /// <summary>Width of the residual stream.</summary>
    public int Width { get; init; } = 128;

    /// <summary>Attention (query) heads; must divide <see cref="Width"/>.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>Key/value heads of a Llama model (must divide <see cref="Heads"/>); 0 gives one per query head.</summary>
    public int KvHeads { get; init; }

    /// <summary>Width of the MLP's hidden layer; 0 chooses: 4·width for GPT-2, about 8/3·width rounded up to a multiple of 8 for Llama's SwiGLU.</summary>
    public int Intermediate { get; init; }

    /// <summary>Tokens per training window, also the model's position limit.</summary>
    public int Context { get; init; } = 128;

    /// <summary>Training tokens in all; the number of steps is this over the tokens of one step, rounded up.</summary>
    public long Tokens { get; init; } = 1_000_000;

    /// <summary>Windows per micro-batch.</summary>
    public int BatchSize { get; init; } = 8;

    /// <summary>Micro-batches whose gradients are summed before each optimizer step.</summary>
    public int GradientAccumulation { get; init; } = 1;

    /// <summary>Peak learning rate, reached after <see cref="WarmupSteps"/> linear steps, then decayed on a cosine to <see cref="MinLearningRate"/>.</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>The learning rate at the last step.</summary>
    public double MinLearningRate { get; init; } = 1e-4;

    /// <summary>Steps of linear warm-up from 0.</summary>
    public int WarmupSteps { get; init; } = 50;

    /// <summary>AdamW's decoupled weight decay, applied to matrices and embeddings only (not to norms or biases).</summary>
    public double WeightDecay { get; init; } = 0.1;

    /// <summary>AdamW β₁.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW β₂.</summary>
    public double Beta2 { get; init; } = 0.95;

    /// <summary>AdamW ε.</summary>
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>Gradients are scaled so their global L2 norm is at most this.</summary>
    public double ClipNorm { get; init; } = 1.0;

    /// <summary>Seeds the initial weights and the windows: the same seed, corpus and options give the same loss curve on the same device.</summary>
    public int Seed { get; init; }

    /// <summary>Steps between checkpoints (0: only the final one).</summary>
    public int CheckpointEvery { get; init; }

    /// <summary>Steps between held-out evaluations (0: at checkpoints and at the end).</summary>
    public int EvaluateEvery { get; init; }

    /// <summary>Held-out windows per evaluation.</summary>
    public int EvaluationWindows { get; init; } = 32;

    /// <summary>Tokens per optimizer step.</summary>
    [JsonIgnore]
    public long TokensPerStep => (long)BatchSize * Context * GradientAccumulation;

    /// <summary>Optimizer steps in the run.</summary>
    [JsonIgnore]
    public int Steps => (int)Math.Min(int.MaxValue, (Tokens + TokensPerStep - 1) / TokensPerStep);

    /// <summary>The MLP width used.</summary>
    [JsonIgnore]
    public int IntermediateWidth => Intermediate > 0 ? Intermediate : Family == "gpt2" ? 4 * Width : (((8 * Width / 3) + 7) / 8) * 8;

    /// <summary>Throws an <see cref="ArgumentOutOfRangeException"/> (or <see cref="ArgumentException"/>) naming the first option out of range.</summary>
    public void Validate()
    {
        if (Family is not ("llama" or "gpt2"))
        {
            throw new ArgumentException($"Family must be \"llama\" or \"gpt2\", not \"{Family}\".", nameof(Family));
        }

        static void Positive(long value, string name)
        {
            if (value <= 0)
            {
                throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");
            }
        }

        static void Finite(double value, string name, double low, double high)
        {
            if (!(double.IsFinite(value) && value >= low && value <= high))
            {
                throw new ArgumentOutOfRangeException(name, value, $"{name} must be in [{low}, {high}].");
            }
        }

        Positive(Layers, nameof(Layers));
        Positive(Width, nameof(Width));
        Positive(Heads, nameof(Heads));
        Positive(Context, nameof(Context));
        Positive(Tokens, nameof(Tokens));
        Positive(BatchSize, nameof(BatchSize));
        Positive(GradientAccumulation, nameof(GradientAccumulation));
        Positive(EvaluationWindows, nameof(EvaluationWindows));
        if (Width % Heads != 0 || (Family == "llama" && (Width / Heads) % 2 != 0))
        {
            throw new ArgumentException($"Heads ({Heads}) must divide Width ({Width}){(Family == "llama" ? " into heads of even width (rotary pairs)" : "")}.", nameof(Heads));
        }

        if (KvHeads < 0 || (KvHeads > 0 && (Family != "llama" || Heads % KvHeads != 0)))
        {
            throw new ArgumentException($"KvHeads ({KvHeads}) must be 0, or a divisor of Heads ({Heads}) for a llama model.", nameof(KvHeads));
        }

        if (Intermediate < 0 || WarmupSteps < 0 || CheckpointEvery < 0 || EvaluateEvery < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(Intermediate), "Intermediate, WarmupSteps, CheckpointEvery and EvaluateEvery must not be negative.");
        }

        Finite(LearningRate, nameof(LearningRate), 1e-12, 10);
        Finite(MinLearningRate, nameof(MinLearningRate), 0, LearningRate);
        Finite(WeightDecay, nameof(WeightDecay), 0, 10);
        Finite(Beta1, nameof(Beta1), 0, 0.999999);
        Finite(Beta2, nameof(Beta2), 0, 0.999999999);
        Finite(Epsilon, nameof(Epsilon), 1e-30, 1);
        Finite(ClipNorm, nameof(ClipNorm), 1e-12, 1e12);
    }
}

/// <summary>One optimizer step's figures.</summary>
/// <param name="Step">1-based step.</param>
/// <param name="Loss">Mean training cross-entropy (nats per token) over the step's windows.</param>
/// <param name="LearningRate">The rate the step used.</param>
/// <param name="GradientNorm">Global L2 norm of the gradient before clipping.</param>
/// <param name="EvaluationLoss">Mean held-out cross-entropy, at evaluation steps; otherwise null.</param>
public sealed record TrainingPoint(int Step, double Loss, double LearningRate, double GradientNorm, double? EvaluationLoss);

/// <summary>Progress of a run: the last step and the rate so far.</summary>
/// <param name="Point">The step just done.</param>
/// <param name="Steps">Steps in the run.</param>
/// <param name="TokensPerSecond">Training tokens per second since this run (or resume) started.</param>
/// <param name="Remaining">Estimated time to the last step.</param>
public sealed record TrainingProgress(TrainingPoint Point, int Steps, double TokensPerSecond, TimeSpan Remaining);

/// <summary>A step's loss or gradient was not finite: training stopped before the weights changed.</summary>
public sealed class TrainingDivergedException : Exception
{
    /// <summary>Creates the exception.</summary>
    public TrainingDivergedException(int step, string parameter, string message)
        : base(message)
    {
        Step = step;
        Parameter = parameter;
    }

    /// <summary>The 1-based step that went bad.</summary>
    public int Step { get; }

    /// <summary>The first parameter whose gradient was not finite, or "loss" when the loss was and every gradient was finite.</summary>
    public string Parameter { get; }
}
