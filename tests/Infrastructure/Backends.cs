using System.Collections.Concurrent;
using Headlight.Kernels;

namespace Headlight.Tests;

/// <summary>
/// The backends the test matrix runs on, each opened once per test run and shared by all tests
/// (kernels compile once per accelerator). A backend that is absent is reported with the reason.
/// </summary>
public static class Backends
{
    /// <summary>Every backend name, in the order of the matrix's columns.</summary>
    public static readonly string[] All = ["cpu", "ilgpu-cpu", "opencl", "cuda"];

    private static readonly ConcurrentDictionary<string, Lazy<(Device? Device, string Reason)>> Opened = new();

    /// <summary>Opens (once) the named backend, or returns null with the reason it is absent.</summary>
    public static Device? TryGet(string name, out string reason)
    {
        var entry = Opened.GetOrAdd(name, n => new Lazy<(Device?, string)>(() => OpenOrExplain(n))).Value;
        reason = entry.Reason;
        return entry.Device;
    }

    /// <summary>Opens the named backend, or skips the calling test with a visible reason.</summary>
    public static Device Require(string name)
    {
        var device = TryGet(name, out string reason);
        Skip.If(device is null, reason);
        return device!;
    }

    private static (Device?, string) OpenOrExplain(string name)
    {
        try
        {
            return (Device.Open(name), string.Empty);
        }
        catch (DeviceNotFoundException e)
        {
            return (null, $"{name}: backend not present on this machine ({e.Message})");
        }
    }
}
