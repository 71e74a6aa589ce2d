using System.Reflection;
using System.Runtime.InteropServices;
using ILGPU;

namespace Headlight.Kernels;

/// <summary>
/// Finds the native libraries ILGPU asks for by their development names when a machine has only
/// the versioned runtime files: <c>OpenCL</c> (Debian ships <c>libOpenCL.so.1</c> unless the
/// development package is installed) and <c>cuda</c> (driver-only machines have <c>libcuda.so.1</c>,
/// not <c>libcuda.so</c>). One resolver serves both because an assembly accepts only one.
/// </summary>
internal static class IlgpuLibraryResolver
{
    private static readonly string[] OpenClNames = ["libOpenCL.so", "libOpenCL.so.1", "OpenCL.dll"];
    private static readonly string[] CudaNames = ["libcuda.so", "libcuda.so.1", "nvcuda.dll"];

    private static int registered;

    public static void Register()
    {
        if (Interlocked.Exchange(ref registered, 1) != 0)
        {
            return;
        }

        try
        {
            NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, Resolve);
        }
        catch (InvalidOperationException)
        {
            // The host application installed its own resolver for ILGPU; respect it.
        }
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
    {
        string[]? fallbacks =
            libraryName.Equals("OpenCL", StringComparison.OrdinalIgnoreCase) ? OpenClNames :
            libraryName.Equals("cuda", StringComparison.OrdinalIgnoreCase) || libraryName.Equals("libcuda.so", StringComparison.OrdinalIgnoreCase) ? CudaNames :
            null;
        if (fallbacks is null)
        {
            return IntPtr.Zero;
        }

        // The plain name first, so the runtime's own probing (and LD_LIBRARY_PATH) wins when it works.
        if (NativeLibrary.TryLoad(libraryName, assembly, searchPath, out IntPtr handle))
        {
            return handle;
        }

        foreach (string candidate in fallbacks)
        {
            if (NativeLibrary.TryLoad(candidate, assembly, searchPath, out handle))
            {
                return handle;
            }
        }

        return IntPtr.Zero;
    }
}
