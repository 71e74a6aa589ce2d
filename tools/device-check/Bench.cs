using System.Diagnostics;
using System.Globalization;
using Headlight.Explain;
using Headlight.Kernels;
using Headlight.Models;

namespace Headlight.DeviceCheck;

/// <summary>
/// Timings on one device: warm-up calls (the first one compiles the kernels and is reported apart),
/// then repetitions each ending in <see cref="Device.Synchronize"/>; median and best. A small harness
/// rather than BenchmarkDotNet so that every case has a hard time cap on a machine lent for minutes.
/// </summary>
internal static class Bench
{
    private const string ShapText = "The quick brown fox jumps over the lazy dog while the children watch from the old wooden bridge near town";
    private const string ShapTarget = "Who is watching the animals?";
    private const string ExplainTarget = "Why do explanations of neural networks matter?";

    public static int Run(Options options)
    {
        var results = new Results(options.OutDir, "bench", "Headlight timings", options.Device);
        var total = Stopwatch.StartNew();
        Device device;
        try
        {
            device = Device.Open(options.Device);
        }
        catch (Exception e)
        {
            results.Add(new Row { Name = "open " + options.Device, Status = "fail", Message = e.ToString() });
            results.Finish();
            Console.WriteLine($"FAIL  cannot open {options.Device}: {e}");
            return 2;
        }

        using var owned = device;
        results.DeviceDescription = device.Description;
        Console.WriteLine($"device {device}");

        // Per case: warm-up calls, timed calls, seconds after which no further call starts.
        var (gemmPlan, forwardPlan, explainPlan) = options.Quick
            ? (new Plan(1, 2, 20), new Plan(1, 2, 20), new Plan(0, 1, 60))
            : (new Plan(3, 20, 15), new Plan(3, 20, 15), new Plan(1, 5, 25));
        // --only takes comma-separated parts of case names.
        var only = options.Filter?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        bool Wanted(string name) => only is null || only.Any(o => name.Contains(o, StringComparison.OrdinalIgnoreCase));
        bool Budget(string name)
        {
            if (total.Elapsed.TotalSeconds <= options.BudgetSeconds)
            {
                return true;
            }

            results.Add(new Row { Name = name, Status = "not run", Message = "time budget spent" });
            return false;
        }

        foreach (var (m, k, n) in new[] { (4096, 4096, 4096), (128, 384, 1536), (1024, 384, 1536), (1024, 1536, 384) })
        {
            string name = $"gemm {m}x{k}x{n}";
            if (Wanted(name) && Budget(name))
            {
                Gemm(results, device, name, m, k, n, gemmPlan);
            }
        }

        string[] modelCases = ["encoder forward 8x128", "ig-50", "attnlrp", "kernel shap 2048"];
        if (!modelCases.Any(Wanted))
        {
            results.Finish();
            return 0;
        }

        string folder = Path.Combine(Path.GetTempPath(), "headlight-minilm-random");
        var sw = Stopwatch.StartNew();
        if (!File.Exists(Path.Combine(folder, "model.safetensors")))
        {
            RandomBertFolder.Write(folder, seed: 7);
        }

        using var model = Model.Load(folder, device);
        Console.WriteLine($"random MiniLM-shaped model written and loaded in {sw.Elapsed.TotalSeconds:F1} s");

        var random = new Random(3);
        var rows = Enumerable.Range(0, 8).Select(_ =>
            (IReadOnlyList<int>)[101, .. Enumerable.Range(0, 126).Select(_ => random.Next(1000, RandomBertFolder.Vocab)), 102]).ToArray();
        var batch = model.FromIds(rows);
        if (Wanted(modelCases[0]) && Budget(modelCases[0]))
        {
            Time(results, modelCases[0], forwardPlan, () => model.Forward(batch), device, (median, _) => new() { ["rows_per_s"] = 8 * 1000 / median });
        }

        var input = model.Tokenize([ShapText]);
        var shapTarget = new EmbeddingSimilarityTarget(ShapTarget);
        shapTarget.Prepare(model, input);
        var target = new EmbeddingSimilarityTarget(ExplainTarget);
        target.Prepare(model, input);
        int tokens = input.SequenceLength;
        var explanations = new (string Name, Func<object> Run)[]
        {
            (modelCases[1], () => Explainer.Explain(model, input, target, new IntegratedGradientsOptions { Steps = 50, Rule = QuadratureRule.GaussLegendre })),
            (modelCases[2], () => Explainer.Relevance(model, input, target, new LrpOptions { Rules = LrpRules.AttnLrp })),
            (modelCases[3], () => Explainer.Explain(model, input, shapTarget, new KernelShapOptions { Budget = 2048, Seed = 1 })),
        };
        foreach (var (name, run) in explanations)
        {
            if (Wanted(name) && Budget(name))
            {
                Time(results, name, explainPlan, () => run(), device, (_, _) => new() { ["tokens"] = tokens });
            }
        }

        results.Finish();
        Console.WriteLine($"{results.Summary()} in {total.Elapsed.TotalSeconds:F1} s");
        return results.Count("fail") == 0 ? 0 : 1;
    }

    private static void Gemm(Results results, Device device, string name, int m, int k, int n, Plan plan)
    {
        Tensor<float>? a = null, b = null, c = null;
        try
        {
            var random = new Random(1);
            a = device.FromHost<float>(Enumerable.Range(0, m * k).Select(_ => random.NextSingle() - 0.5f).ToArray(), m, k);
            b = device.FromHost<float>(Enumerable.Range(0, k * n).Select(_ => random.NextSingle() - 0.5f).ToArray(), k, n);
            c = device.Allocate(m, n);
            double flop = 2.0 * m * k * n;
            Time(results, name, plan, () => Headlight.Kernels.Gemm.Forward(a, b, c), device, (median, best) => new()
            {
                ["gflops_median"] = flop / (median * 1e6),
                ["gflops_best"] = flop / (best * 1e6),
            });
        }
        catch (Exception e)
        {
            results.Add(new Row { Name = name, Status = "fail", Message = $"{e.GetType().Name}: {e.Message}" });
            Console.WriteLine($"FAIL  {name}: {e}");
        }
        finally
        {
            a?.Dispose();
            b?.Dispose();
            c?.Dispose();
        }
    }

    /// <summary>Times <paramref name="action"/> and adds a row with first, median and best milliseconds and the values <paramref name="extra"/> derives from the median and best.</summary>
    private static void Time(Results results, string name, Plan plan, Action action, Device device, Func<double, double, Dictionary<string, double>>? extra)
    {
        var times = new List<double>();
        double first = double.NaN;
        try
        {
            var all = Stopwatch.StartNew();
            for (int i = 0; i < plan.Warmup + plan.Reps; i++)
            {
                if (i > 0 && all.Elapsed.TotalSeconds > plan.CapSeconds)
                {
                    break;
                }

                var sw = Stopwatch.StartNew();
                action();
                device.Synchronize();
                double ms = sw.Elapsed.TotalMilliseconds;
                if (i == 0)
                {
                    first = ms;
                }

                if (i >= plan.Warmup || plan.Warmup == 0)
                {
                    times.Add(ms);
                }
            }

            // A cap reached during warm-up still reports the last call rather than nothing.
            if (times.Count == 0)
            {
                times.Add(first);
            }

            times.Sort();
            double median = times.Count % 2 == 1 ? times[times.Count / 2] : (times[(times.Count / 2) - 1] + times[times.Count / 2]) / 2;
            var values = new Dictionary<string, double> { ["first_ms"] = first, ["median_ms"] = median, ["min_ms"] = times[0], ["reps"] = times.Count };
            foreach (var (key, value) in extra?.Invoke(median, times[0]) ?? [])
            {
                values[key] = value;
            }

            results.Add(new Row { Name = name, Status = "pass", Ms = median, Values = values });
            Console.WriteLine($"{name,-36} median {median,10:F3} ms  best {times[0],10:F3} ms  first {first,10:F1} ms  ({times.Count} reps)");
        }
        catch (Exception e)
        {
            results.Add(new Row { Name = name, Status = "fail", Message = $"{e.GetType().Name}: {e.Message}" });
            Console.WriteLine($"FAIL  {name}: {e}");
        }
    }

    private sealed record Plan(int Warmup, int Reps, double CapSeconds);
}
