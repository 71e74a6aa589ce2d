using System.Globalization;
using System.Text.Json;
using Headlight.Models;

namespace Headlight.Cli;

/// <summary>
/// <c>headlight attend TEXT</c>: for every layer and head, where it attends most — the tokens that
/// receive the most attention (averaged over queries) and the most common offset of each query's
/// strongest key. <c>--json</c> gives the full probabilities [layer][head][query][key].
/// </summary>
internal static class AttendCommand
{
    public static int Run(CliArgs cli, TextWriter output)
    {
        var options = ModelOptions.Read(cli);
        bool json = cli.Flag("json");
        int top = cli.IntOption("top", 3, 1, 20);
        cli.RejectUnknown();
        if (cli.Positional.Count > 1)
        {
            throw new UsageException("'attend' takes one text (quote it).");
        }

        using var model = options.Load();
        var batch = options.Batch(model, cli.Positional);
        if (batch.BatchSize != 1)
        {
            throw new UsageException("'attend' takes one text or one row of --ids.");
        }

        int layers = model.Config.Layers;
        int heads = model.Config.Heads;
        int t = batch.SequenceLength;
        var capture = Enumerable.Range(0, layers).Select(ActivationNames.AttentionProbs).ToArray();
        var result = model.Forward(batch, capture);
        var tokens = batch.Texts[0].Tokens;

        if (json)
        {
            var probabilities = new float[layers][][][];
            for (int l = 0; l < layers; l++)
            {
                var p = result.Activations[ActivationNames.AttentionProbs(l)];
                probabilities[l] = new float[heads][][];
                for (int h = 0; h < heads; h++)
                {
                    probabilities[l][h] = new float[t][];
                    for (int q = 0; q < t; q++)
                    {
                        probabilities[l][h][q] = p.Data.AsSpan(((h * t) + q) * t, t).ToArray();
                    }
                }
            }

            output.WriteLine(JsonSerializer.Serialize(
                new { Model = model.Name, Device = model.Device.Name, Tokens = tokens, Shape = new[] { layers, heads, t, t }, Probabilities = probabilities },
                JsonOutput.Options));
            return 0;
        }

        output.WriteLine($"{model.Name} on {model.Device.Name}: {layers} layers x {heads} heads, {t} tokens");
        output.WriteLine("tokens: " + string.Join(" ", tokens.Select((s, i) => $"{i}:{s}")));
        output.WriteLine($"Per head: the {top} tokens receiving most attention (mean over queries), and the most common offset key−query of each query's strongest key.");
        for (int l = 0; l < layers; l++)
        {
            var p = result.Activations[ActivationNames.AttentionProbs(l)].Data;
            for (int h = 0; h < heads; h++)
            {
                var received = new double[t];
                var offsets = new Dictionary<int, int>();
                for (int q = 0; q < t; q++)
                {
                    var row = p.AsSpan(((h * t) + q) * t, t);
                    int argmax = 0;
                    for (int k = 0; k < t; k++)
                    {
                        received[k] += row[k] / t;
                        if (row[k] > row[argmax])
                        {
                            argmax = k;
                        }
                    }

                    offsets[argmax - q] = offsets.GetValueOrDefault(argmax - q) + 1;
                }

                var best = received.Select((v, k) => (v, k)).OrderByDescending(x => x.v).Take(top)
                    .Select(x => $"{x.k}:{tokens[x.k]} {(x.v * 100).ToString("F0", CultureInfo.InvariantCulture)}%");
                var (offset, count) = offsets.MaxBy(kv => kv.Value) is var kv ? (kv.Key, kv.Value) : (0, 0);
                string offsetText = offset.ToString("+0;-0;0", CultureInfo.InvariantCulture);
                output.WriteLine($"L{l} H{h,-2}  {string.Join(", ", best),-48} offset {offsetText} for {count}/{t} queries");
            }
        }

        return 0;
    }
}
