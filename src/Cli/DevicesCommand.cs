using System.Text.Json;
using Headlight.Kernels;

namespace Headlight.Cli;

/// <summary><c>headlight devices</c>: lists every device present and its properties.</summary>
internal static class DevicesCommand
{
    public static int Run(CliArgs cli, TextWriter output)
    {
        bool json = cli.Flag("json");
        cli.RejectUnknown();
        var devices = Device.List();
        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(devices, JsonOutput.Options));
            return 0;
        }

        foreach (var d in devices)
        {
            output.WriteLine($"{d.Name,-12} {d.Kind,-9} {d.Description}");
            output.WriteLine($"{string.Empty,-12} memory {d.MemoryBytes / (1024.0 * 1024 * 1024):F1} GiB; " +
                string.Join("; ", d.Properties.Select(p => $"{p.Key} {p.Value}")));
        }

        return 0;
    }
}
