using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Headlight.Kernels;
using Headlight.Models;

namespace Headlight.Cli;

/// <summary>
/// <c>headlight bench forward|gemm</c>: times the model's forward pass, or its GEMMs, on one device after a
/// warm-up, and reports the median, min/max and interquartile range of N runs with the arithmetic rate.
/// FLOPs are counted as 2·m·k·n per GEMM plus 4·B·H·T²·D per attention layer (half that for causal models);
/// embeddings, LayerNorm and element-wise work are not counted.
/// </summary>
internal static class BenchCommand
{
    private const int DefaultRuns = 30;
    private const double DefaultWarmupSeconds = 1.5;

    // The stated cap: a benchmark plans at most half of the device's memory (the rest is for
    // the model's weights, the runtime's pools and everything else on the machine).
    private const double MemoryShare = 0.5;

    public static int Run(CliArgs cli, TextWriter output)
    {
        string what = cli.Positional.Count == 1 ? cli.Positional[0] : throw new UsageException("Usage: headlight bench forward|gemm [--model M] [--device D] [--batch B] [--seq T] [--runs N] [--warmup S] [--shape MxKxN] [--json].");
        string modelName = cli.Option("model", ModelOptions.DefaultModel);
        string? deviceName = cli.Option("device");
        int batch = cli.IntOption("batch", 1, 1, 4096);
        int seq = cli.IntOption("seq", 128, 1, 1 << 16);
        int runs = cli.IntOption("runs", DefaultRuns, 1, 100_000);
        double warmup = ReadSeconds(cli.Option("warmup"));
        bool json = cli.Flag("json");
        string? shape = what == "gemm" ? cli.Option("shape") : null;
        cli.RejectUnknown();

        var settings = new Settings(batch, seq, runs, warmup);
        return what switch
        {
            "forward" => Forward(modelName, deviceName, settings, json, output),
            "gemm" when shape is not null => GemmShape(shape, deviceName, settings, json, output),
            "gemm" => GemmLayers(modelName, deviceName, settings, json, output),
            _ => throw new UsageException($"Unknown benchmark '{what}': use 'bench forward' or 'bench gemm'."),
        };
    }

    /// <summary>The options every benchmark shares.</summary>
    private sealed record Settings(int Batch, int Seq, int Runs, double WarmupSeconds);

    /// <summary>Run times of one benchmark, in milliseconds, and the work of one run.</summary>
    /// <param name="Name">What ran.</param>
    /// <param name="Gflop">Floating-point operations per run, in billions.</param>
    /// <param name="WarmupRuns">Runs made during the warm-up.</param>
    /// <param name="Runs">Timed runs.</param>
    /// <param name="MedianMs">The median.</param>
    /// <param name="MinMs">The fastest run.</param>
    /// <param name="MaxMs">The slowest run.</param>
    /// <param name="Q1Ms">The first quartile.</param>
    /// <param name="Q3Ms">The third quartile.</param>
    private sealed record Timing(string Name, double Gflop, int WarmupRuns, int Runs, double MedianMs, double MinMs, double MaxMs, double Q1Ms, double Q3Ms)
    {
        /// <summary>The rate at the median.</summary>
        public double Gflops => Gflop / (MedianMs / 1000);
    }

    private static int Forward(string modelName, string? deviceName, Settings s, bool json, TextWriter output)
    {
        using var model = Load(modelName, deviceName);
        var c = model.Config;
        if (s.Seq > c.MaxTokens)
        {
            throw new UsageException($"--seq {s.Seq} exceeds the model's {c.MaxTokens} positions.");
        }

        // The forward state per token (residual stream, q/k/v, attention and FFN activations, norm
        // statistics) and the host copy of the output; attention keeps no T×T matrix.
        long tokens = (long)s.Batch * s.Seq;
        long perToken = checked((15L * c.Hidden) + (2L * c.Intermediate) + c.Heads + 8);
        CheckMemory(model.Device, $"bench forward --batch {s.Batch} --seq {s.Seq}", checked(4 * tokens * perToken),
            checked(tokens * Math.Max(c.Intermediate, 3L * c.Hidden)));
        var batch = model.FromIds(RandomIds(c, s.Batch, s.Seq));
        var hidden = new float[(long)s.Batch * s.Seq * c.Hidden];
        var timing = Measure("forward", ForwardFlops(c, s.Batch, s.Seq), s, () => model.Forward(batch, hidden));
        Report(output, json, "forward", model.Name, model.Device, s, [timing]);
        return 0;
    }

    // The four GEMMs of one block (the model's layer 0 weights, packed as the forward pass uses them) at m = batch·seq.
    private static int GemmLayers(string modelName, string? deviceName, Settings s, bool json, TextWriter output)
    {
        using var model = Load(modelName, deviceName);
        var c = model.Config;
        var device = model.Device;
        var w = model.Weights.Layers[0];
        int m = s.Batch * s.Seq;
        int d = c.Hidden;
        int inner = c.Intermediate;
        CheckMemory(device, $"bench gemm --batch {s.Batch} --seq {s.Seq}", checked(4L * m * ((6L * d) + (3L * inner))), checked((long)m * Math.Max(inner, 3L * d)));
        var epilogue = c.Activation == GeluForm.Erf ? Epilogue.GeluErf : Epilogue.GeluTanh;
        var timings = new List<Timing>();
        using (var x = Filled(device, 1, m, d))
        using (var wide = Filled(device, 2, m, inner))
        using (var qkv = device.Allocate(m, 3 * d))
        using (var narrow = device.Allocate(m, d))
        using (var act = device.Allocate(m, inner))
        using (var pQkv = Gemm.Prepack(w.QkvWeight))
        using (var pOut = Gemm.Prepack(w.OutWeight))
        using (var pIn = Gemm.Prepack(w.FfnInWeight))
        using (var pFfnOut = Gemm.Prepack(w.FfnOutWeight))
        {
            timings.Add(Measure($"qkv {m}x{d}x{3 * d} +bias", GemmFlops(m, d, 3 * d), s, () => Sync(device, () => Gemm.ForwardPacked(x, pQkv, qkv, w.QkvBias))));
            timings.Add(Measure($"attn.out {m}x{d}x{d} +bias", GemmFlops(m, d, d), s, () => Sync(device, () => Gemm.ForwardPacked(x, pOut, narrow, w.OutBias))));
            timings.Add(Measure($"ffn.in {m}x{d}x{inner} +bias +gelu", GemmFlops(m, d, inner), s, () => Sync(device, () => Gemm.ForwardPacked(x, pIn, act, w.FfnInBias, epilogue))));
            timings.Add(Measure($"ffn.out {m}x{inner}x{d} +bias", GemmFlops(m, inner, d), s, () => Sync(device, () => Gemm.ForwardPacked(wide, pFfnOut, narrow, w.FfnOutBias))));
        }

        Report(output, json, "gemm", model.Name, device, s, timings);
        return 0;
    }

    // One product a [m, k] · b [k, n] of random values: b as a plain tensor, and (cpu) b packed once.
    private static int GemmShape(string shape, string? deviceName, Settings s, bool json, TextWriter output)
    {
        var parts = shape.Split('x');
        if (parts.Length != 3 || !parts.All(p => int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= 1 && v <= 1 << 16))
        {
            throw new UsageException($"--shape must be MxKxN with each from 1 to 65536, got '{shape}'.");
        }

        int m = int.Parse(parts[0], CultureInfo.InvariantCulture);
        int k = int.Parse(parts[1], CultureInfo.InvariantCulture);
        int n = int.Parse(parts[2], CultureInfo.InvariantCulture);
        long largest = Math.Max((long)m * k, Math.Max((long)k * n, (long)m * n));
        if (largest > Array.MaxLength)
        {
            throw new UsageException(string.Create(CultureInfo.InvariantCulture, $"--shape {shape}: a matrix of {largest:N0} elements exceeds the {Array.MaxLength:N0} one tensor may hold."));
        }

        using var device = Device.Open(deviceName);

        // a, b and c on the device, a and b staged on the host, and (cpu) b packed once more.
        long bytes = checked(4 * ((2L * m * k) + (3L * k * n) + ((long)m * n)));
        CheckMemory(device, $"bench gemm --shape {shape}", bytes, largest);
        var timings = new List<Timing>();
        using (var a = Filled(device, 1, m, k))
        using (var b = Filled(device, 2, k, n))
        using (var c = device.Allocate(m, n))
        {
            timings.Add(Measure($"{m}x{k}x{n}", GemmFlops(m, k, n), s, () => Sync(device, () => Gemm.Forward(a, b, c))));
            if (device.Kind == DeviceKind.Cpu)
            {
                using var packed = Gemm.Prepack(b);
                timings.Add(Measure($"{m}x{k}x{n} packed b", GemmFlops(m, k, n), s, () => Gemm.ForwardPacked(a, packed, c)));
            }
        }

        Report(output, json, "gemm", null, device, s, timings);
        return 0;
    }

    // Fails before any allocation when the planned buffers exceed the cap or one tensor's limit.
    private static void CheckMemory(Device device, string what, long bytes, long largestTensor)
    {
        if (largestTensor > Array.MaxLength)
        {
            throw new UsageException(string.Create(CultureInfo.InvariantCulture, $"{what}: one buffer would need {largestTensor:N0} elements, more than the {Array.MaxLength:N0} a tensor may hold; use smaller sizes."));
        }

        long memory = Device.List().FirstOrDefault(i => i.Name == device.Name)?.MemoryBytes ?? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (bytes > memory * MemoryShare)
        {
            throw new UsageException(string.Create(CultureInfo.InvariantCulture,
                $"{what} needs about {bytes / 1e9:F1} GB, more than half the {memory / 1e9:F1} GB of {device.Name}; use smaller sizes."));
        }
    }

    private static Headlight.Models.Model Load(string modelName, string? deviceName)
    {
        var device = Device.Open(deviceName);
        try
        {
            return Headlight.Models.Model.Load(modelName, device);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    private static void Sync(Device device, Action run)
    {
        run();
        device.Synchronize();
    }

    // Warm-up for at least the given time (tiered JIT, caches, buffers), then the timed runs.
    private static Timing Measure(string name, double flops, Settings s, Action run)
    {
        var clock = Stopwatch.StartNew();
        int warmupRuns = 0;
        do
        {
            run();
            warmupRuns++;
        }
        while (clock.Elapsed.TotalSeconds < s.WarmupSeconds);

        var times = new double[s.Runs];
        for (int i = 0; i < times.Length; i++)
        {
            long start = Stopwatch.GetTimestamp();
            run();
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }

        Array.Sort(times);
        return new Timing(name, flops / 1e9, warmupRuns, s.Runs, Quantile(times, 0.5), times[0], times[^1], Quantile(times, 0.25), Quantile(times, 0.75));
    }

    // Linear interpolation between the closest ranks of sorted values.
    private static double Quantile(double[] sorted, double q)
    {
        double position = q * (sorted.Length - 1);
        int low = (int)Math.Floor(position);
        int high = Math.Min(low + 1, sorted.Length - 1);
        return sorted[low] + ((position - low) * (sorted[high] - sorted[low]));
    }

    private static double GemmFlops(long m, long k, long n) => 2.0 * m * k * n;

    /// <summary>One forward pass: four GEMMs and attention per block (half the attention for causal models).</summary>
    internal static double ForwardFlops(ModelConfig c, int batch, int seq)
    {
        long m = (long)batch * seq;
        double gemms = GemmFlops(m, c.Hidden, 3L * c.Hidden) + GemmFlops(m, c.Hidden, c.Hidden)
            + GemmFlops(m, c.Hidden, c.Intermediate) + GemmFlops(m, c.Intermediate, c.Hidden);
        double attention = 4.0 * batch * c.Heads * seq * (double)seq * c.HeadDim * (c.IsCausal ? 0.5 : 1.0);
        return c.Layers * (gemms + attention);
    }

    // Ids drawn from the vocabulary with a fixed seed; the mask is all ones (no padding).
    private static List<IReadOnlyList<int>> RandomIds(ModelConfig c, int batch, int seq)
    {
        var random = new Random(1);
        var rows = new List<IReadOnlyList<int>>(batch);
        for (int r = 0; r < batch; r++)
        {
            rows.Add(Enumerable.Range(0, seq).Select(_ => random.Next(c.VocabSize)).ToArray());
        }

        return rows;
    }

    private static Tensor<float> Filled(Device device, int seed, int rows, int columns)
    {
        var random = new Random(seed);
        var data = new float[(long)rows * columns];
        for (int i = 0; i < data.Length; i++)
        {
            data[i] = (float)(random.NextDouble() - 0.5);
        }

        return device.FromHost<float>(data, rows, columns);
    }

    private static double ReadSeconds(string? text)
    {
        if (text is null)
        {
            return DefaultWarmupSeconds;
        }

        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double seconds) || !(seconds >= 0 && seconds <= 600))
        {
            throw new UsageException($"--warmup must be seconds from 0 to 600, got '{text}'.");
        }

        return seconds;
    }

    private static void Report(TextWriter output, bool json, string what, string? model, Device device, Settings s, IReadOnlyList<Timing> timings)
    {
        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(
                new
                {
                    Benchmark = what,
                    Model = model,
                    Device = device.Name,
                    Hardware = device.Description,
                    s.Batch,
                    s.Seq,
                    s.WarmupSeconds,
                    Results = timings.Select(t => new
                    {
                        t.Name,
                        t.Runs,
                        t.WarmupRuns,
                        t.MedianMs,
                        t.MinMs,
                        t.MaxMs,
                        t.Q1Ms,
                        t.Q3Ms,
                        t.Gflop,
                        t.Gflops,
                    }),
                },
                JsonOutput.Options));
            return;
        }

        var inv = CultureInfo.InvariantCulture;
        string subject = model is null ? string.Empty : $"{model} ";
        output.WriteLine(string.Create(inv, $"bench {what}: {subject}on {device.Name} ({device.Description}), batch {s.Batch} × seq {s.Seq}, {s.WarmupSeconds:0.##} s warm-up"));
        foreach (var t in timings)
        {
            output.WriteLine(string.Create(inv,
                $"  {t.Name,-32} median {t.MedianMs,9:F3} ms  min {t.MinMs:F3}  max {t.MaxMs:F3}  IQR {t.Q1Ms:F3}–{t.Q3Ms:F3} ms  ({t.Runs} runs)  {t.Gflop:F3} GFLOP  {t.Gflops,7:F1} GFLOP/s"));
        }
    }
}
