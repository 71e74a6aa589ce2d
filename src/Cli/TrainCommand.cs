using System.Globalization;
using System.Text;
using System.Text.Json;
using Headlight.Explain.Plots;
using Headlight.Kernels;
using Headlight.Models.Tokenization;
using Headlight.Models.Training;

namespace Headlight.Cli;

/// <summary>
/// <c>headlight train --corpus DIR --out DIR</c>: trains a Llama- or GPT-2-style decoder from scratch (a byte-level BPE
/// vocabulary learnt on the corpus unless --tokenizer gives one), writing checkpoints, the final model as a Hugging Face
/// folder, loss.csv and loss.png. Ctrl+C stops after the current step and writes a checkpoint to resume from.
/// </summary>
internal static class TrainCommand
{
    public const string Help = """
        train --corpus PATH --out DIR   train a decoder from scratch; the result loads with --model DIR in every command
          --family llama|gpt2  --layers L  --width D  --heads H  [--kv-heads K]  [--intermediate I]  --context T
          --tokens N (training tokens)  --batch B  [--accumulate A]  --lr X  [--min-lr X]  [--warmup STEPS]
          [--weight-decay X] [--clip X] [--seed S] [--checkpoint-every STEPS] [--eval-every STEPS]
          [--tokenizer tokenizer.json | --vocab V (BPE entries learnt on the corpus, default 4096)]
          [--resume DIR/step-NNNNNN] (continues the same loss curve; shape options must match or be left out)
          [--force] (write into a non-empty --out)
          corpus: a .txt file (one document per line) or a folder of .txt files (one document per file)
        """;

    private static readonly string[] ShapeOptions = ["family", "layers", "width", "heads", "kv-heads", "intermediate", "context", "tokens", "batch", "accumulate",
        "lr", "min-lr", "warmup", "weight-decay", "clip", "seed", "checkpoint-every", "eval-every", "tokenizer", "vocab"];

    public static int Run(CliArgs cli, TextWriter output, TextWriter error)
    {
        string corpusPath = cli.Option("corpus") ?? throw new UsageException("'train' needs --corpus PATH (a .txt file or a folder of them).");
        string? resume = cli.Option("resume");
        string outDir = cli.Option("out") ?? (resume is not null ? Path.GetDirectoryName(Path.GetFullPath(resume))! : throw new UsageException("'train' needs --out DIR."));
        string? device = cli.Option("device");
        bool force = cli.Flag("force");
        bool json = cli.Flag("json");
        if (!File.Exists(corpusPath) && !Directory.Exists(corpusPath))
        {
            throw new UsageException($"--corpus '{corpusPath}' is neither a file nor a folder.");
        }

        TrainingOptions? options = null;
        if (resume is not null)
        {
            var given = ShapeOptions.Where(o => cli.Option(o) is not null).ToList();
            var saved = ReadSaved(resume);
            foreach (string name in given)
            {
                string savedValue = SavedValue(saved, name);
                if (!string.Equals(savedValue, cli.Option(name), StringComparison.Ordinal))
                {
                    throw new UsageException($"--{name} {cli.Option(name)} disagrees with the checkpoint '{resume}' ({name} {savedValue}); leave it out to resume.");
                }
            }
        }
        else
        {
            var defaults = new TrainingOptions();
            options = new TrainingOptions
            {
                Family = cli.Option("family", defaults.Family),
                Layers = cli.IntOption("layers", defaults.Layers, 1, 1024),
                Width = cli.IntOption("width", defaults.Width, 2, 65536),
                Heads = cli.IntOption("heads", defaults.Heads, 1, 1024),
                KvHeads = cli.IntOption("kv-heads", 0, 0, 1024),
                Intermediate = cli.IntOption("intermediate", 0, 0, 1 << 20),
                Context = cli.IntOption("context", defaults.Context, 2, 1 << 16),
                Tokens = cli.IntOption("tokens", (int)defaults.Tokens, 1, int.MaxValue),
                BatchSize = cli.IntOption("batch", defaults.BatchSize, 1, 4096),
                GradientAccumulation = cli.IntOption("accumulate", 1, 1, 4096),
                LearningRate = Number(cli, "lr", defaults.LearningRate),
                MinLearningRate = Number(cli, "min-lr", Math.Min(defaults.MinLearningRate, Number(cli, "lr", defaults.LearningRate))),
                WarmupSteps = cli.IntOption("warmup", defaults.WarmupSteps, 0, int.MaxValue),
                WeightDecay = Number(cli, "weight-decay", defaults.WeightDecay),
                ClipNorm = Number(cli, "clip", defaults.ClipNorm),
                Seed = cli.IntOption("seed", 0),
                CheckpointEvery = cli.IntOption("checkpoint-every", 0, 0, int.MaxValue),
                EvaluateEvery = cli.IntOption("eval-every", 0, 0, int.MaxValue),
            };
            try
            {
                options.Validate();
            }
            catch (ArgumentException e)
            {
                throw new UsageException(e.Message);
            }

            if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any(e => !Path.GetFileName(e).Equals("cache", StringComparison.Ordinal)) && !force)
            {
                throw new UsageException($"--out '{outDir}' is not empty; give --force to write into it, or --resume a checkpoint.");
            }
        }

        string? tokenizerOption = resume is null ? cli.Option("tokenizer") : null;
        int vocab = resume is null ? cli.IntOption("vocab", 4096, 260, 1 << 20) : 0;
        cli.RejectUnknown();

        Directory.CreateDirectory(outDir);
        string tokenizerPath = resume is not null ? Path.Combine(resume, "tokenizer.json") : tokenizerOption ?? Path.Combine(outDir, "tokenizer.json");
        if (resume is null && tokenizerOption is null)
        {
            error.WriteLine($"headlight: learning a {vocab}-entry byte-level BPE vocabulary on {corpusPath} ...");
            ByteLevelBpeTrainer.Train(Documents(corpusPath), vocab, tokenizerPath);
        }

        var tokenizer = HfTokenizer.FromFile(tokenizerPath);
        int? separator = tokenizer.TryGetId("<|endoftext|>", out int eot) ? eot : null;
        var corpus = TokenCorpus.Load(corpusPath, tokenizer, Path.Combine(outDir, "cache"), separatorId: separator);
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCancel;
        var open = Device.Open(device);
        try
        {
            using var trainer = resume is not null
                ? Trainer.Resume(resume, corpus, outDir, open)
                : Trainer.Create(options!, corpus, tokenizerPath, outDir, open);
            error.WriteLine($"headlight: {trainer.Options.Family}, {trainer.ParameterCount:N0} parameters, {trainer.Options.Steps} steps of {trainer.Options.TokensPerStep:N0} tokens on {open.Name}; corpus {corpus.TrainTokens:N0} training and {corpus.HeldOutTokens:N0} held-out tokens");
            var progress = new Progress(error, Math.Max(1, trainer.Options.Steps / 50));
            try
            {
                trainer.Run(progress, cancel.Token);
            }
            catch (OperationCanceledException)
            {
                string checkpoint = trainer.SaveCheckpoint();
                error.WriteLine($"headlight: stopped after step {trainer.Step}; resume with --resume {checkpoint}");
                WriteCurve(outDir, trainer.History);
                return 1;
            }

            WriteCurve(outDir, trainer.History);
            var last = trainer.History[^1];
            if (json)
            {
                output.WriteLine(JsonSerializer.Serialize(new { Output = outDir, trainer.ParameterCount, trainer.Step, last.Loss, last.EvaluationLoss, History = trainer.History }, JsonOutput.Options));
            }
            else
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"trained {trainer.Step} steps: loss {last.Loss:F4}, held-out loss {last.EvaluationLoss:F4}; model in {outDir} (loss.csv, loss.png beside it)"));
            }

            return 0;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
            open.Dispose();
        }
    }

    private static IEnumerable<string> Documents(string path) => File.Exists(path)
        ? File.ReadLines(path)
        : Directory.EnumerateFiles(path, "*.txt").Order(StringComparer.Ordinal).Select(File.ReadAllText);

    private static double Number(CliArgs cli, string name, double fallback)
    {
        string? text = cli.Option(name);
        if (text is null)
        {
            return fallback;
        }

        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) && double.IsFinite(value)
            ? value
            : throw new UsageException($"Option --{name} must be a number, got '{text}'.");
    }

    private static JsonElement ReadSaved(string checkpoint)
    {
        string path = Path.Combine(checkpoint, "training.json");
        if (!File.Exists(path))
        {
            throw new UsageException($"--resume '{checkpoint}' holds no training.json; give a step-NNNNNN folder that training wrote.");
        }

        using var document = JsonDocument.Parse(File.ReadAllText(path));
        return document.RootElement.GetProperty("Options").Clone();
    }

    // The checkpoint's value of a command-line option, as the option would be written.
    private static string SavedValue(JsonElement options, string name)
    {
        string property = name switch
        {
            "kv-heads" => "KvHeads",
            "batch" => "BatchSize",
            "accumulate" => "GradientAccumulation",
            "lr" => "LearningRate",
            "min-lr" => "MinLearningRate",
            "warmup" => "WarmupSteps",
            "weight-decay" => "WeightDecay",
            "clip" => "ClipNorm",
            "checkpoint-every" => "CheckpointEvery",
            "eval-every" => "EvaluateEvery",
            "tokenizer" or "vocab" => "",
            _ => char.ToUpperInvariant(name[0]) + name[1..],
        };
        return property.Length > 0 && options.TryGetProperty(property, out var value)
            ? value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText()
            : "(fixed by the checkpoint)";
    }

    private static void WriteCurve(string folder, IReadOnlyList<TrainingPoint> history)
    {
        var csv = new StringBuilder("step,loss,learning_rate,gradient_norm,eval_loss\n");
        foreach (var p in history)
        {
            csv.Append(CultureInfo.InvariantCulture, $"{p.Step},{p.Loss:R},{p.LearningRate:R},{p.GradientNorm:R},{(p.EvaluationLoss is { } e ? e.ToString("R", CultureInfo.InvariantCulture) : "")}\n");
        }

        File.WriteAllText(Path.Combine(folder, "loss.csv"), csv.ToString());
        var evaluations = history.Where(p => p.EvaluationLoss is not null).ToList();
        var series = new List<ScatterChart.Series> { new("train", history.Select(p => (double)p.Step).ToList(), history.Select(p => p.Loss).ToList()) };
        if (evaluations.Count > 0)
        {
            series.Add(new ScatterChart.Series("held out", evaluations.Select(p => (double)p.Step).ToList(), evaluations.Select(p => p.EvaluationLoss!.Value).ToList(), Hollow: true));
        }

        File.WriteAllBytes(Path.Combine(folder, "loss.png"), ScatterChart.Png("Training loss", "step", "cross-entropy (nats per token)", series, logX: false));
    }

    private sealed class Progress(TextWriter error, int every) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value)
        {
            var p = value.Point;
            if (p.Step % every == 0 || p.Step == value.Steps || p.EvaluationLoss is not null)
            {
                string eval = p.EvaluationLoss is { } e ? string.Create(CultureInfo.InvariantCulture, $", held-out {e:F4}") : "";
                error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"step {p.Step}/{value.Steps}: loss {p.Loss:F4}{eval}, lr {p.LearningRate:E2}, |g| {p.GradientNorm:F3}, {value.TokensPerSecond:N0} tokens/s, {value.Remaining:hh\\:mm\\:ss} left"));
            }
        }
    }
}
