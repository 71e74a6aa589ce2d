using System.Diagnostics;
using System.Reflection;
using Headlight.Kernels;
using Headlight.Tests;
using Headlight.Tests.Explain;
using Headlight.Tests.Model;
using Headlight.Tests.Ops;
using Xunit.Abstractions;

namespace Headlight.DeviceCheck;

/// <summary>Runs the op matrix's cases, and optionally the fixture checks, on one device.</summary>
internal static class OpRun
{
    public static int Run(Options options)
    {
        var results = new Results(options.OutDir, "ops", "Op matrix and fixture checks", options.Device);
        var total = Stopwatch.StartNew();
        var open = Stopwatch.StartNew();
        Device? device;
        string reason;
        try
        {
            device = Backends.TryGet(options.Device, out reason);
        }
        catch (Exception e)
        {
            // Only a missing backend is expected; a driver that fails while opening is reported the same way.
            (device, reason) = (null, e.ToString());
        }

        if (device is null)
        {
            results.Add(new Row { Name = "open " + options.Device, Status = "fail", Ms = open.Elapsed.TotalMilliseconds, Message = reason });
            results.Finish();
            Console.WriteLine($"FAIL  cannot open {options.Device}: {reason}");
            return 2;
        }

        results.DeviceDescription = device.Description;
        Console.WriteLine($"device {device} opened in {open.Elapsed.TotalMilliseconds:F0} ms");

        var checks = new List<(string Name, Action Run)>();
        IEnumerable<OpCase> cases = OpCases.All.Values;
        if (options.Tiny)
        {
            cases = cases.Where(c => c.Tiny);
        }

        if (options.Filter is { } filter)
        {
            cases = cases.Where(c => c.Id.Contains(filter, StringComparison.OrdinalIgnoreCase));
        }

        // The few fixture and gradient checks first, so that a run cut short by its budget still has them.
        if (options.Fixtures)
        {
            string name = options.Device;
            var output = new ConsoleOutput();
            checks.Add(("fixture gpt2-tiny logits and attention", () => new DecoderReferenceTests().Logits_and_attention_match_pytorch(name)));
            checks.Add(("fixture gpt2-tiny input-embedding gradient", () => new Gpt2FixtureGradientTests(output).Input_embedding_gradient_matches_pytorch(name)));
            foreach (string fixture in ModernDecoderReferenceTests.Fixtures)
            {
                checks.Add(($"fixture {fixture} logits, attention, hidden states and gradient", () => new ModernDecoderReferenceTests(output).Logits_attention_hidden_states_and_gradient_match_the_reference(fixture, name)));
            }

            checks.Add(("gradients: encoder targets vs finite differences", () => new GradientCheckTests(output).Encoder_targets_match_finite_differences(name)));
            checks.Add(("gradients: decoder targets vs finite differences", () => new GradientCheckTests(output).Decoder_targets_match_finite_differences(name)));
            checks.Add(("gradients: head gates vs finite differences", () => new GradientCheckTests(output).Head_gate_gradients_match_finite_differences(name)));
        }

        // One case of each op in turn, so that a run cut short by its budget has covered every op.
        var interleaved = cases
            .GroupBy(c => c.Op.Split('.')[0], StringComparer.Ordinal)
            .SelectMany(g => g.Select((c, i) => (Case: c, Index: i)))
            .OrderBy(x => x.Index)
            .Select(x => x.Case);
        checks.AddRange(interleaved.Select(c => (c.Id, (Action)(() => c.Run(device)))));
        Console.WriteLine($"{checks.Count} checks on {options.Device}");
        foreach (var (name, run) in checks)
        {
            if (total.Elapsed.TotalSeconds > options.BudgetSeconds)
            {
                results.Add(new Row { Name = name, Status = "not run", Message = "time budget spent" });
                continue;
            }

            var sw = Stopwatch.StartNew();
            string status;
            string? message = null;
            try
            {
                run();
                status = "pass";
            }
            catch (Exception e)
            {
                var inner = Unwrap(e);
                status = inner is SkipException ? "skip" : "fail";
                message = $"{inner.GetType().Name}: {inner.Message}";
            }

            double ms = sw.Elapsed.TotalMilliseconds;
            results.Add(new Row { Name = name, Status = status, Ms = ms, Message = message });
            Console.WriteLine($"{status.ToUpperInvariant(),-5} {ms,9:F1} ms  {name}{(message is null ? "" : "  -- " + FirstLine(message))}");
        }

        results.Finish();
        Console.WriteLine($"{results.Summary()} on {options.Device} in {total.Elapsed.TotalSeconds:F1} s");
        Console.WriteLine($"{results.Count("pass")} passed, {results.Count("fail")} failed");
        return results.Count("fail") == 0 ? 0 : 1;
    }

    private static Exception Unwrap(Exception e)
    {
        while (e is TypeInitializationException or TargetInvocationException && e.InnerException is not null)
        {
            e = e.InnerException!;
        }

        return e;
    }

    private static string FirstLine(string s)
    {
        int i = s.IndexOfAny(['\r', '\n']);
        return i < 0 ? s : s[..i];
    }

    /// <summary>Test output goes to the console, indented under the check that wrote it.</summary>
    private sealed class ConsoleOutput : ITestOutputHelper
    {
        public void WriteLine(string message) => Console.WriteLine("      " + message);

        public void WriteLine(string format, params object[] args) => Console.WriteLine("      " + string.Format(System.Globalization.CultureInfo.InvariantCulture, format, args));
    }
}
