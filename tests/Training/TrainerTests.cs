using Headlight.Models;
using Headlight.Models.Tokenization;
using Headlight.Models.Training;
using Xunit.Abstractions;

namespace Headlight.Tests.Training;

/// <summary>The trainer end to end on cpu: memorisation, reproducibility, resume, checkpoints that load back, and bad input.</summary>
public sealed class TrainerTests(ITestOutputHelper output) : IDisposable
{
    private const string Text = "Once upon a time a small model read the same short story again and again, until it knew every word by heart.";
    private readonly string folder = TrainingFiles.TempFolder();

    public void Dispose() => Directory.Delete(folder, recursive: true);

    [Fact]
    public void A_tiny_model_memorises_a_short_text()
    {
        var corpus = Corpus(Enumerable.Repeat(Text, 8), out string tokenizer);
        var options = Tiny() with { Context = 32, Tokens = 400 * 8 * 32, LearningRate = 1e-2, MinLearningRate = 1e-3, WarmupSteps = 20, WeightDecay = 0 };
        using var trainer = Trainer.Create(options, corpus, tokenizer, Path.Combine(folder, "run"), Backends.Require("cpu"));
        trainer.Run();
        double last = trainer.History.TakeLast(10).Average(p => p.Loss);
        output.WriteLine($"{trainer.ParameterCount} parameters, {trainer.Step} steps: first loss {trainer.History[0].Loss:F3}, mean of the last 10 {last:F4}");
        Assert.True(last < 0.05, $"train loss {last} after {trainer.Step} steps");

        // The final folder loads as a model and continues the story greedily.
        using var model = Headlight.Models.Model.Load(Path.Combine(folder, "run"), Backends.Require("cpu"));
        Assert.Equal(ModelFamily.LlamaDecoder, model.Config.Family);
        var prompt = model.Tokenizer!.Encode("Once upon a time a small").Ids;
        string continuation = model.Tokenizer.Decode(model.Generate(prompt, 12).ToArray());
        output.WriteLine($"continuation: '{continuation}'");
        Assert.StartsWith(" model read the", continuation, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("llama")]
    [InlineData("gpt2")]
    public void The_same_seed_gives_the_same_curve_and_a_resumed_run_continues_it_exactly(string family)
    {
        var corpus = Corpus(TrainingFiles.SmallText, out string tokenizer);
        var options = Tiny() with { Family = family, KvHeads = family == "llama" ? 2 : 0, CheckpointEvery = 6, GradientAccumulation = 2 };
        options = options with { Tokens = 12 * options.TokensPerStep };
        double[] whole;
        using (var a = Trainer.Create(options, corpus, tokenizer, Path.Combine(folder, "a"), Backends.Require("cpu")))
        {
            a.Run();
            whole = a.History.Select(p => p.Loss).ToArray();
        }

        using (var b = Trainer.Create(options, corpus, tokenizer, Path.Combine(folder, "b"), Backends.Require("cpu")))
        {
            b.Run();
            Assert.Equal(whole, b.History.Select(p => p.Loss).ToArray());
        }

        using var resumed = Trainer.Resume(Path.Combine(folder, "a", "step-000006"), corpus, Path.Combine(folder, "c"), Backends.Require("cpu"));
        Assert.Equal(6, resumed.Step);
        resumed.Run();
        var curve = resumed.History.Select(p => p.Loss).ToArray();
        output.WriteLine($"{family}: {string.Join(" ", curve.Select(l => l.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}");
        Assert.Equal(whole.Length, curve.Length);
        for (int s = 0; s < whole.Length; s++)
        {
            Assert.True(BitConverter.DoubleToInt64Bits(whole[s]) == BitConverter.DoubleToInt64Bits(curve[s]), $"step {s + 1}: {whole[s]:R} uninterrupted, {curve[s]:R} resumed");
        }

        // The loss falls, and the held-out loss is measured at the end.
        Assert.True(whole[^1] < whole[0]);
        Assert.NotNull(resumed.History[^1].EvaluationLoss);
    }

    [Fact]
    public void A_checkpoint_loads_as_a_model_with_the_trainers_logits()
    {
        var corpus = Corpus(TrainingFiles.SmallText, out string tokenizer);
        var options = Tiny() with { Tokens = 3 * 8 * 16 };
        using var trainer = Trainer.Create(options, corpus, tokenizer, Path.Combine(folder, "run"), Backends.Require("cpu"));
        trainer.Run();
        using var model = Headlight.Models.Model.Load(Path.Combine(folder, "run", "step-000003"), Backends.Require("cpu"));
        Assert.Equal(trainer.ParameterCount, model.Config.ParameterCount);
        var ids = new[] { 3, 10, 20, 7, 9 };
        var loaded = model.Forward(model.FromIds([ids])).Logits!;
        var live = trainer.Model.Forward(trainer.Model.FromIds([ids])).Logits!;
        Assert.Equal(live, loaded);
    }

    [Fact]
    public void Bad_input_is_a_typed_error_and_nothing_is_overwritten()
    {
        var corpus = Corpus(["a b c"], out string tokenizer);
        Assert.Throws<ArgumentException>(() => Trainer.Create(Tiny() with { Context = 64 }, corpus, tokenizer, Path.Combine(folder, "x"), Backends.Require("cpu")));
        Assert.Throws<ArgumentException>(() => Trainer.Create(Tiny() with { Family = "bert" }, corpus, tokenizer, folder, Backends.Require("cpu")));
        Assert.Throws<ArgumentException>(() => Trainer.Create(Tiny() with { Heads = 5 }, corpus, tokenizer, folder, Backends.Require("cpu")));
        Assert.Throws<ArgumentOutOfRangeException>(() => Trainer.Create(Tiny() with { LearningRate = double.NaN }, corpus, tokenizer, folder, Backends.Require("cpu")));
        Assert.Throws<ModelFormatException>(() => Trainer.Resume(folder, corpus, folder, Backends.Require("cpu")));
        Assert.False(Directory.Exists(Path.Combine(folder, "x")));
    }

    [Fact]
    public void A_diverging_step_stops_naming_the_parameter_and_keeps_the_weights()
    {
        var corpus = Corpus(TrainingFiles.SmallText, out string tokenizer);
        using var trainer = Trainer.Create(Tiny() with { Tokens = 10 * 8 * 16 }, corpus, tokenizer, Path.Combine(folder, "run"), Backends.Require("cpu"));
        trainer.RunStep();
        // A weight made infinite: its own gradient and the loss go non-finite on the next step.
        var norm = trainer.Model.Weights.Layers[1].Norm2Gamma;
        var values = norm.ToArray();
        values[3] = float.PositiveInfinity;
        norm.CopyFrom(values);
        var before = trainer.Model.Weights.Layers[0].QkvWeight.ToArray();
        var e = Assert.Throws<TrainingDivergedException>(() => trainer.RunStep());
        Assert.Equal(2, e.Step);
        Assert.Equal(1, trainer.Step);
        Assert.Equal(before, trainer.Model.Weights.Layers[0].QkvWeight.ToArray());
        output.WriteLine(e.Message);
    }

    private static TrainingOptions Tiny() => new()
    {
        Layers = 2, Width = 32, Heads = 4, KvHeads = 2, Context = 16, BatchSize = 8, Tokens = 8 * 16, WarmupSteps = 2, LearningRate = 3e-3, Seed = 1,
    };

    private TokenCorpus Corpus(IEnumerable<string> documents, out string tokenizerPath)
    {
        tokenizerPath = Path.Combine(folder, "tokenizer.json");
        var texts = documents.ToList();
        ByteLevelBpeTrainer.Train(texts, 300, tokenizerPath);
        string file = Path.Combine(folder, "corpus.txt");
        File.WriteAllLines(file, texts.Select(t => t.Replace('\n', ' ')));
        var tokenizer = HfTokenizer.FromFile(tokenizerPath);
        return TokenCorpus.Load(file, tokenizer, Path.Combine(folder, "cache"), heldOutFraction: 0.2, separatorId: 0);
    }
}
