using System.Globalization;
using Headlight.Kernels;

namespace Headlight.DeviceCheck;

/// <summary>
/// <c>devices</c> lists the devices; <c>ops</c> runs the op matrix (and with <c>--fixtures</c> the
/// device-parameterised fixture and gradient checks) on one device; <c>bench</c> times GEMM, an
/// encoder forward and the explanations on one device. Results go to <c>--out</c> as JSON and
/// markdown, rewritten after every row so that a run cut short still leaves what it measured.
/// </summary>
internal static class Program
{
    private const string Usage = """
        usage: Headlight.DeviceCheck devices [--device NAME]
               Headlight.DeviceCheck ops   --device NAME [--tiny] [--filter TEXT] [--fixtures] [--budget SECONDS] [--out DIR]
               Headlight.DeviceCheck bench --device NAME [--quick] [--only TEXT] [--budget SECONDS] [--out DIR]
        """;

    public static int Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help")
        {
            Console.WriteLine(Usage);
            return args.Length == 0 ? 2 : 0;
        }

        try
        {
            var options = Options.Parse(args.AsSpan(1));
            return args[0] switch
            {
                "devices" => ListDevices(args.Length > 1 ? options.Device : null),
                "ops" => OpRun.Run(options),
                "bench" => Bench.Run(options),
                _ => throw new ArgumentException($"Unknown command '{args[0]}'."),
            };
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine(e.Message);
            Console.Error.WriteLine(Usage);
            return 2;
        }
    }

    /// <summary>Lists the devices; with a name, also opens that one and prints why it fails, which the listing swallows.</summary>
    private static int ListDevices(string? open)
    {
        Console.WriteLine($".NET {Environment.Version}, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, {Environment.ProcessorCount} cores");
        foreach (var d in Device.List())
        {
            string props = string.Join(", ", d.Properties.Select(p => $"{p.Key}={p.Value}"));
            Console.WriteLine($"{d.Name,-10} {d.Description} ({(d.MemoryBytes / 1048576.0).ToString("F0", CultureInfo.InvariantCulture)} MiB) {props}");
        }

        if (open is null)
        {
            return 0;
        }

        try
        {
            using var device = Device.Open(open);
            Console.WriteLine($"opened {device}");
            return 0;
        }
        catch (Exception e)
        {
            Console.WriteLine($"cannot open {open}: {e}");
            return 1;
        }
    }
}

/// <summary>The command line's options.</summary>
internal sealed class Options
{
    public string Device { get; private set; } = "cpu";

    public bool Tiny { get; private set; }

    public bool Fixtures { get; private set; }

    public bool Quick { get; private set; }

    public string? Filter { get; private set; }

    public double BudgetSeconds { get; private set; } = double.PositiveInfinity;

    public string? OutDir { get; private set; }

    public static Options Parse(ReadOnlySpan<string> args)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            string Value(ReadOnlySpan<string> a) => i + 1 < a.Length ? a[++i] : throw new ArgumentException($"{a[i]} needs a value.");
            switch (args[i])
            {
                case "--device": o.Device = Value(args); break;
                case "--tiny": o.Tiny = true; break;
                case "--fixtures": o.Fixtures = true; break;
                case "--quick": o.Quick = true; break;
                case "--filter" or "--only": o.Filter = Value(args); break;
                case "--budget": o.BudgetSeconds = double.Parse(Value(args), CultureInfo.InvariantCulture); break;
                case "--out": o.OutDir = Value(args); break;
                default: throw new ArgumentException($"Unknown option '{args[i]}'.");
            }
        }

        return o;
    }
}
