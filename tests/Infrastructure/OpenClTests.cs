using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Headlight.Kernels;
using ILGPU;
using ILGPU.Runtime.OpenCL;

namespace Headlight.Tests;

/// <summary>
/// Checks that ILGPU reaches the OpenCL ICD loader when only its versioned name exists, as on a
/// Debian or Ubuntu machine without the development package (which alone installs
/// <c>libOpenCL.so</c>). Part of the OpenCL column (<c>Category=OpenCL</c>), which
/// <c>scripts/opencl-root.sh</c> runs in a root holding only <c>ocl-icd-libopencl1</c> and PoCL;
/// elsewhere it skips with the reason. It creates an ILGPU context of its own, outside
/// <see cref="IlgpuDevice"/>, so it runs alone (see <see cref="OpenClLoaderCollection"/>).
/// </summary>
[Trait("Category", "OpenCL")]
[Collection(OpenClLoaderCollection.Name)]
public sealed class OpenClTests
{
    /// <summary>
    /// With an ICD loader and at least one registered ICD, ILGPU's P/Invokes for <c>OpenCL</c> must
    /// enumerate devices (any device, before ILGPU's OpenCL C version filter), not fail to load.
    /// </summary>
    [SkippableFact]
    public void IlgpuFindsTheIcdLoaderByItsVersionedName()
    {
        string[] icds = OpenClLoader.SkipUnlessInstalled();

        // IlgpuDevice installs the resolver for ILGPU's assembly in its static constructor.
        RuntimeHelpers.RunClassConstructor(typeof(IlgpuDevice).TypeHandle);
        bool unversioned = OpenClLoader.CanLoad("libOpenCL.so");

        using var context = Context.Create(builder => builder.OpenCL(_ => true));
        Assert.True(
            context.GetCLDevices().Count > 0,
            $"ICDs {string.Join(", ", icds)} are registered and {OpenClLoader.VersionedName} loads, but ILGPU enumerated no OpenCL device "
            + (unversioned ? "(libOpenCL.so is present too)." : "(libOpenCL.so is absent: the library resolver in IlgpuDevice did not map 'OpenCL')."));
    }
}

/// <summary>
/// Opening OpenCL from two threads at once. ILGPU's first OpenCL device scan in a process is not
/// thread-safe (one of two concurrent scans found no device on PoCL 6); <see cref="IlgpuDevice"/>
/// serialises it. The race exists only while nothing in the process has scanned OpenCL yet, so
/// this test runs in parallel with the rest of the column and catches a regression when it runs first.
/// </summary>
[Trait("Category", "OpenCL")]
public sealed class OpenClConcurrencyTests
{
    /// <summary>Two threads open <c>opencl</c> at the same moment: both get a device, or there is none.</summary>
    [SkippableFact]
    public async Task TwoThreadsOpeningOpenClBothGetTheDevice()
    {
        OpenClLoader.SkipUnlessInstalled();
        using var start = new Barrier(2);
        // Dedicated threads, so that both reach the barrier however busy the thread pool is.
        var first = Task.Factory.StartNew(() => TryOpen(start), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        var second = Task.Factory.StartNew(() => TryOpen(start), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        string?[] errors = await Task.WhenAll(first, second);

        string? failure = errors.FirstOrDefault(e => e is not null);
        if (failure is not null)
        {
            // Opened alone afterwards, a device that exists is found: then the failure was the race.
            string? alone = TryOpen(start: null);
            Skip.If(alone is not null, $"No ILGPU-compatible OpenCL device: {alone}");
            Assert.Fail($"Opening opencl from two threads at once failed in at least one ({failure}), though it opens alone.");
        }
    }

    // Returns null on success, else the reason.
    private static string? TryOpen(Barrier? start)
    {
        start?.SignalAndWait();
        try
        {
            using var device = Device.Open("opencl");
            return null;
        }
        catch (DeviceNotFoundException e)
        {
            return e.Message;
        }
    }
}

/// <summary>Tests that create ILGPU contexts directly run alone, after the parallel tests.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class OpenClLoaderCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "OpenCL loader";
}

/// <summary>Whether an OpenCL ICD loader and an ICD are installed, checked without ILGPU.</summary>
internal static class OpenClLoader
{
    /// <summary>The ICD loader's versioned name, which every Linux distribution installs.</summary>
    public const string VersionedName = "libOpenCL.so.1";

    /// <summary>Skips the calling test unless the loader loads and an ICD is registered; returns the ICD files.</summary>
    public static string[] SkipUnlessInstalled()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "The versioned ICD loader name is a Linux convention.");
        Skip.IfNot(CanLoad(VersionedName), $"No OpenCL ICD loader ({VersionedName}) is installed.");
        string[] icds = RegisteredIcds();
        Skip.If(icds.Length == 0, "The OpenCL ICD loader is installed but no ICD is registered (/etc/OpenCL/vendors is empty).");
        return icds;
    }

    /// <summary>True when the dynamic loader finds the library under this name.</summary>
    public static bool CanLoad(string name)
    {
        if (!NativeLibrary.TryLoad(name, out IntPtr handle))
        {
            return false;
        }

        NativeLibrary.Free(handle);
        return true;
    }

    // The ICD loader reads OCL_ICD_VENDORS (a folder or one .icd file), else /etc/OpenCL/vendors.
    private static string[] RegisteredIcds()
    {
        string? vendors = Environment.GetEnvironmentVariable("OCL_ICD_VENDORS");
        if (!string.IsNullOrEmpty(vendors) && File.Exists(vendors))
        {
            return [Path.GetFileName(vendors)];
        }

        string folder = string.IsNullOrEmpty(vendors) ? "/etc/OpenCL/vendors" : vendors;
        return Directory.Exists(folder)
            ? Directory.GetFiles(folder, "*.icd").Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal).ToArray()
            : [];
    }
}
