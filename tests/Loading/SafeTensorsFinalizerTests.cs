using System.Runtime.CompilerServices;
using Headlight.Models.Loading;
using Headlight.Tests.Library;

namespace Headlight.Tests.Loading;

/// <summary>A SafeTensorsFile that is never disposed gives its memory mapping back once collected.</summary>
[Collection(nameof(RunsAlone))]
public sealed class SafeTensorsFinalizerTests : IDisposable
{
    private readonly TempFolder temp = new();

    public void Dispose() => temp.Dispose();

    [Fact]
    public void Five_hundred_files_left_undisposed_leave_no_mappings_after_collection()
    {
        string path = temp.File("small.safetensors");
        File.WriteAllBytes(path, LoadingFiles.SafeTensors([("w", "F32", [2], LoadingFiles.F32(1f, 2f))]));
        Collect();
        int before = Mappings();

        OpenWithoutDisposing(path, 500);
        Collect();

        // Each open maps the file once; before the finaliser, all 500 stayed (343 -> 843 lines).
        int after = Mappings();
        Assert.True(after - before < 50, $"/proc/self/maps: {before} lines before, {after} after 500 undisposed opens");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void OpenWithoutDisposing(string path, int count)
    {
        for (int i = 0; i < count; i++)
        {
            var file = SafeTensorsFile.Open(path);
            Assert.Equal(2f, file.ReadFloat32("w")[1]);
        }
    }

    private static void Collect()
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }

    private static int Mappings() => File.ReadAllLines("/proc/self/maps").Length;
}
