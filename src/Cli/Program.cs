using Headlight.Kernels;

namespace Headlight.Cli;

/// <summary>The <c>headlight</c> command.</summary>
internal static class Program
{
    private static readonly HashSet<string> FlagNames = new(StringComparer.Ordinal) { "json", "help" };

    private static int Main(string[] args)
    {
        try
        {
            var cli = CliArgs.Parse(args, FlagNames);
            return cli.Command switch
            {
                "devices" => DevicesCommand.Run(cli, Console.Out),
                "help" or "--help" or "-h" => Help(Console.Out),
                _ => throw new UsageException($"Unknown command '{cli.Command}'. Run 'headlight help'."),
            };
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"headlight: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is ArgumentException or DeviceNotFoundException or IOException or InvalidDataException or FormatException)
        {
            Console.Error.WriteLine($"headlight: {e.Message}");
            return 1;
        }
    }

    private static int Help(TextWriter output)
    {
        output.WriteLine("""
            headlight — run transformer models as GPU kernels and explain what they do.

            Commands:
              devices [--json]           list the devices Headlight can run on

            Common options:
              --device auto|cpu|ilgpu-cpu|opencl|cuda   where to run (default: $HEADLIGHT_DEVICE or auto)
              --json                                    machine-readable output on stdout
            """);
        return 0;
    }
}
