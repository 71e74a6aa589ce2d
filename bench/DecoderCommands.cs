using System.Diagnostics;
using System.Globalization;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Tests.Model;

namespace Headlight.Bench;

/// <summary>
/// Commands outside BenchmarkDotNet for real-size decoder checkpoints (too big for the tests):
/// <c>write-decoders DIR</c> writes DIR/llama-3.2-1b (BF16, two shards, 2.5 GB) and DIR/pythia-160m (F16);
/// <c>load-decoder DIR</c> loads one on <c>cpu</c> and prints its parameter count, load time, peak resident memory,
/// and a short greedy generation with the last step's logits checked finite.
/// </summary>
internal static class DecoderCommands
{
    public static bool TryRun(string[] args)
    {
        if (args is ["write-decoders", string root])
        {
            Write(Path.Combine(root, "llama-3.2-1b"), RandomDecoderFolder.Llama32OneB(), "BF16", shards: 2);
            Write(Path.Combine(root, "pythia-160m"), RandomDecoderFolder.Pythia160M(), "F16", shards: 1);
            return true;
        }

        if (args is ["load-decoder", string folder])
        {
            Load(folder);
            return true;
        }

        return false;
    }

    private static void Write(string folder, System.Text.Json.Nodes.JsonObject config, string dtype, int shards)
    {
        Directory.CreateDirectory(folder);
        var clock = Stopwatch.StartNew();
        RandomDecoderFolder.Write(folder, config, seed: 1, dtype: dtype, shards: shards);
        long bytes = Directory.GetFiles(folder, "*.safetensors").Sum(f => new FileInfo(f).Length);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{folder}: {RandomDecoderFolder.Parameters(config):N0} parameters, {dtype}, {shards} shard(s), {bytes / 1e9:F2} GB in {clock.Elapsed.TotalSeconds:F1} s"));
    }

    private static void Load(string folder)
    {
        using var device = Device.Open("cpu");
        var clock = Stopwatch.StartNew();
        using var model = Model.Load(folder, device);
        double loadSeconds = clock.Elapsed.TotalSeconds;
        long afterLoad = Status("VmRSS");
        long peak = Status("VmHWM");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{folder}: {model.Config.Family}, {model.Config.ParameterCount:N0} parameters; load {loadSeconds:F1} s; resident after load {afterLoad / 1048576.0:F2} GiB, peak {peak / 1048576.0:F2} GiB"));

        int[] prompt = [100, 2000, 300, 4000, 50];
        bool finite = true;
        clock.Restart();
        var result = model.Generate(prompt, new GenerationOptions { MaxNewTokens = 4, StopAtEndOfSequence = false }, (_, logits) =>
        {
            foreach (float v in logits)
            {
                finite &= float.IsFinite(v);
            }
        }, CancellationToken.None);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"generated [{string.Join(", ", result.Tokens)}] after a {prompt.Length}-token prompt in {clock.Elapsed.TotalSeconds:F2} s; every step's logits finite: {finite}; peak {Status("VmHWM") / 1048576.0:F2} GiB"));
    }

    // A /proc/self/status field in KiB (0 off Linux).
    private static long Status(string field)
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path))
        {
            return 0;
        }

        string? line = File.ReadLines(path).FirstOrDefault(l => l.StartsWith(field + ":", StringComparison.Ordinal));
        return line is null ? 0 : long.Parse(line.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
    }
}
