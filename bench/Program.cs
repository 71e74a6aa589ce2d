using BenchmarkDotNet.Running;

namespace Headlight.Bench;

/// <summary>
/// Benchmarks: <c>dotnet run -c Release --project bench -- --filter '*'</c>. Every class compares
/// Headlight with its peer in the same run; see bench/RESULTS.md for the latest table.
/// </summary>
public static class Program
{
    /// <summary>Runs the benchmarks the arguments select, or one of <see cref="DecoderCommands"/>' commands.</summary>
    public static void Main(string[] args)
    {
        if (!DecoderCommands.TryRun(args))
        {
            BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        }
    }
}
