using System.Globalization;
using System.Text.Json;
using Headlight.Models;

namespace Headlight.Cli;

/// <summary>
/// <c>headlight logits (TEXT | --ids 1,2,3)</c>: a decoder's top-k next tokens at every position;
/// <c>--json</c> gives the full logits [position][vocab].
/// </summary>
internal static class LogitsCommand
{
    public static int Run(CliArgs cli, TextWriter output)
    {
        var options = ModelOptions.Read(cli);
        bool json = cli.Flag("json");
        int k = cli.IntOption("top", 5, 1, 100);
        cli.RejectUnknown();
        using var model = options.Load();
        if (!model.Config.IsDecoder)
        {
            throw new UsageException($"Model '{model.Name}' is an encoder; 'logits' needs a decoder (a GPT-2 folder).");
        }

        var batch = options.Batch(model, cli.Positional);
        if (batch.BatchSize != 1)
        {
            throw new UsageException("'logits' takes one text or one row of --ids.");
        }

        var result = model.Forward(batch);
        int t = batch.Lengths[0];
        int v = model.Config.VocabSize;
        var tokens = batch.Texts[0].Tokens;
        if (json)
        {
            var logits = Enumerable.Range(0, t).Select(p => result.Logits!.AsSpan(p * v, v).ToArray()).ToArray();
            var top = Enumerable.Range(0, t).Select(p => model.TopK(result, 0, p, k)).ToArray();
            output.WriteLine(JsonSerializer.Serialize(new { Model = model.Name, Device = model.Device.Name, Ids = batch.Texts[0].Ids, Tokens = tokens, Top = top, Logits = logits }, JsonOutput.Options));
            return 0;
        }

        output.WriteLine($"{model.Name} on {model.Device.Name}: top {k} next tokens after each position");
        for (int p = 0; p < t; p++)
        {
            var top = model.TopK(result, 0, p, k);
            output.WriteLine($"{p,4} {Quote(tokens[p]),-16} -> " + string.Join("  ", top.Select(x => $"{Quote(x.Token)} {(x.Probability * 100).ToString("F1", CultureInfo.InvariantCulture)}%")));
        }

        return 0;
    }

    internal static string Quote(string token) => JsonSerializer.Serialize(token);
}
