using System.Globalization;
using System.Text.Json;
using Headlight.Explain;
using Headlight.Models;

namespace Headlight.Cli;

/// <summary>
/// <c>headlight generate TEXT -n 20</c>: continuation by a decoder, greedy or sampled, with a key–value cache; with
/// <c>--explain-step K</c> also why step K's token was chosen (its logit after the prompt and the first K generated tokens).
/// </summary>
internal static class GenerateCommand
{
    public const string Help = """
        Generation (generate):
          -n N | --max-new-tokens N  tokens to generate (default 20)
          --temperature T            0 (default) = greedy; > 0 samples from softmax(logits / T)
          --top-k K --top-p P        keep the K most likely tokens / the smallest set holding probability P (sampling)
          --seed S                   seeds sampling (and a seeded --method)
          --no-stop                  keep going past the end-of-sequence token (default: stop there)
          --no-cache                 rerun the whole prefix at every step instead of the key–value cache (reference path)
          --explain-step K           explain generated token K (0-based): the logit of that token after the prompt and
                                     tokens 0..K-1, by --method (default gradxinput; method options as for explain)
        """;

    public static int Run(CliArgs cli, TextWriter output)
    {
        var options = ModelOptions.Read(cli);
        bool json = cli.Flag("json");
        int count = cli.Option("max-new-tokens") is null ? cli.IntOption("n", 20, 0, 100_000) : cli.IntOption("max-new-tokens", 20, 0, 100_000);
        if (cli.Option("max-new-tokens") is not null && cli.Option("n") is not null)
        {
            throw new UsageException("-n and --max-new-tokens are the same option: give one.");
        }

        var generation = new GenerationOptions
        {
            MaxNewTokens = count,
            Temperature = Number(cli, "temperature", 0),
            TopK = cli.IntOption("top-k", 0, 0),
            TopP = Number(cli, "top-p", 1),
            Seed = cli.IntOption("seed", 0),
            StopAtEndOfSequence = !cli.Flag("no-stop"),
            UseKeyValueCache = !cli.Flag("no-cache"),
        };
        int? step = cli.Option("explain-step") is null ? null : cli.IntOption("explain-step", 0, 0, 100_000);
        IReadOnlyList<AttributionOptions> methods = step is null
            ? []
            : cli.Option("method") is null ? [new GradientXInputOptions()] : ExplainMethods.Read(cli, sharedOptions: ["seed"]);
        if (step is null && cli.Option("method") is not null)
        {
            throw new UsageException("--method belongs to --explain-step K (which generated token to explain).");
        }

        cli.RejectUnknown();
        try
        {
            generation.Validate();
        }
        catch (ArgumentOutOfRangeException e)
        {
            throw new UsageException(e.Message);
        }

        using var model = options.Load();
        if (!model.Config.IsDecoder)
        {
            throw new UsageException($"Model '{model.Name}' is an encoder; 'generate' needs a decoder (GPT-2, GPT-NeoX, Llama or Qwen2).");
        }

        var batch = options.Batch(model, cli.Positional);
        if (batch.BatchSize != 1)
        {
            throw new UsageException("'generate' takes one text or one row of --ids.");
        }

        var prompt = batch.Texts[0].Ids;
        var result = model.Generate(prompt, generation);
        var generated = result.Tokens;
        string? text = model.Tokenizer is { } tokenizer ? Decode(tokenizer, generated) : null;
        AttributionResult[] explained = [];
        if (step is { } k)
        {
            if (k >= generated.Count)
            {
                throw new UsageException($"--explain-step {k}: only {generated.Count} token(s) were generated (steps 0..{generated.Count - 1}).");
            }

            // The row the model saw when it chose token k: the prompt and the tokens generated before it.
            var prefix = model.FromIds([prompt.Concat(generated.Take(k)).ToArray()]);
            var target = new NextTokenLogitTarget(generated[k]);
            explained = methods.Select(m => Explainer.Explain(model, prefix, target, m)).ToArray();
        }

        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(
                new
                {
                    Model = model.Name,
                    Prompt = prompt,
                    Generated = generated,
                    result.Probabilities,
                    result.StoppedAtEndOfSequence,
                    Text = text,
                    Explained = step is null ? null : new { Step = step, Token = generated[step.Value], Methods = explained.Select(r => new { r.Method, Tokens = r.Rows[0].Tokens, Scores = r.Rows[0].TokenScores, r.Rows[0].TargetValue }) },
                },
                JsonOutput.Options));
            return 0;
        }

        output.WriteLine(text is null
            ? string.Join(",", prompt) + " | " + string.Join(",", generated)
            : batch.Texts[0].Text + text);
        if (result.StoppedAtEndOfSequence)
        {
            output.WriteLine("(stopped at the end-of-sequence token)");
        }

        foreach (var r in explained)
        {
            int id = generated[step!.Value];
            string token = model.Tokenizer is { } t ? LogitsCommand.Quote(Decode(t, [id])) : id.ToString(CultureInfo.InvariantCulture);
            output.WriteLine();
            output.WriteLine($"step {step} chose {token} (id {id}); {r.Method}, target: its logit after the prompt and {step} generated token(s)");
            ExplainCommand.Print(r.Rows[0], output);
        }

        return 0;
    }

    // A model's vocabulary may be padded past its tokenizer's (Pythia: 50304 rows, 50277 tokens); an id the tokenizer
    // lacks is shown as <id N>, as Model.FromIds names it.
    private static string Decode(Headlight.Models.Tokenization.ITextTokenizer tokenizer, IReadOnlyList<int> ids)
    {
        var text = new System.Text.StringBuilder();
        int start = 0;
        for (int i = 0; i <= ids.Count; i++)
        {
            if (i == ids.Count || (uint)ids[i] >= (uint)tokenizer.VocabularySize)
            {
                text.Append(tokenizer.Decode(ids.Skip(start).Take(i - start).ToArray()));
                if (i < ids.Count)
                {
                    text.Append(CultureInfo.InvariantCulture, $"<id {ids[i]}>");
                }

                start = i + 1;
            }
        }

        return text.ToString();
    }

    private static double Number(CliArgs cli, string name, double fallback)
    {
        string? text = cli.Option(name);
        return text is null
            ? fallback
            : double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v) ? v : throw new UsageException($"--{name} must be a finite number, not '{text}'.");
    }
}
