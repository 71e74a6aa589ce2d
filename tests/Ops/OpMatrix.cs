using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// The op test matrix: every op case on every backend, one test method per backend column so a
/// column can be selected with <c>--filter FullyQualifiedName~OpMatrix.OpenCL</c>. ILGPU's CPU
/// simulator runs only the tiny cases. An absent backend skips with the reason.
/// </summary>
public sealed class OpMatrix
{
    /// <summary>Every case.</summary>
    public static TheoryData<string> AllCases => Ids(_ => true);

    /// <summary>The cases small enough for ILGPU's CPU simulator.</summary>
    public static TheoryData<string> TinyCases => Ids(c => c.Tiny);

    /// <summary>The managed SIMD backend.</summary>
    [SkippableTheory]
    [MemberData(nameof(AllCases))]
    public void Cpu(string id) => Run("cpu", id);

    /// <summary>ILGPU's CPU accelerator (tiny shapes: it simulates barriers).</summary>
    [SkippableTheory]
    [MemberData(nameof(TinyCases))]
    public void IlgpuCpu(string id) => Run("ilgpu-cpu", id);

    /// <summary>OpenCL through ILGPU (PoCL on CPU machines).</summary>
    [SkippableTheory]
    [MemberData(nameof(AllCases))]
    public void OpenCL(string id) => Run("opencl", id);

    /// <summary>CUDA through ILGPU.</summary>
    [SkippableTheory]
    [MemberData(nameof(AllCases))]
    public void Cuda(string id) => Run("cuda", id);

    private static void Run(string backend, string id)
    {
        Device device = Backends.Require(backend);
        Assert.True(OpCases.All.TryGetValue(id, out var opCase), $"No op case '{id}'.");
        opCase!.Run(device);
    }

    private static TheoryData<string> Ids(Func<OpCase, bool> keep)
    {
        var data = new TheoryData<string>();
        foreach (var c in OpCases.All.Values.Where(keep))
        {
            data.Add(c.Id);
        }

        return data;
    }
}
