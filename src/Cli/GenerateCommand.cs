using System.Text.Json;
using Headlight.Models;

namespace Headlight.Cli;

/// <summary><c>headlight generate TEXT -n 20</c>: greedy continuation by a decoder.</summary>
internal static class GenerateCommand
{
    public static int Run(CliArgs cli, TextWriter output)
    {
        var options = ModelOptions.Read(cli);
        bool json = cli.Flag("json");
        int count = cli.IntOption("n", 20, 0, 100_000);
        cli.RejectUnknown();
        using var model = options.Load();
        if (!model.Config.IsDecoder)
        {
            throw new UsageException($"Model '{model.Name}' is an encoder; 'generate' needs a decoder (a GPT-2 folder).");
        }

        var batch = options.Batch(model, cli.Positional);
        if (batch.BatchSize != 1)
        {
            throw new UsageException("'generate' takes one text or one row of --ids.");
        }

        var prompt = batch.Texts[0].Ids;
        var generated = model.Generate(prompt, count);
        string? text = model.Tokenizer?.Decode(generated.ToArray());
        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(new { Model = model.Name, Prompt = prompt, Generated = generated, Text = text }, JsonOutput.Options));
            return 0;
        }

        output.WriteLine(text is null
            ? string.Join(",", prompt) + " | " + string.Join(",", generated)
            : batch.Texts[0].Text + text);
        return 0;
    }
}
