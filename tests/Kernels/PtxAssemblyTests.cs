using System.Collections.Concurrent;
using System.Globalization;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using Headlight.Kernels;
using Xunit.Abstractions;

namespace Headlight.Tests.Kernels;

/// <summary>
/// The CUDA column without a GPU: every ILGPU kernel of Headlight.Kernels is compiled to PTX by ILGPU's
/// PTX backend and assembled for sm_90 (H100/H200) and sm_80 (A100) by NVIDIA's ptxas, which must
/// accept it without spilling registers; the kernels on the hot path must also fit a register and
/// shared-memory budget. ptxas comes from scripts/install-ptxas.sh (CI runs it); without it the
/// assembler checks skip and say so.
/// </summary>
/// <remarks>
/// Environment: <c>HEADLIGHT_PTXAS</c> (a ptxas to use), <c>HEADLIGHT_PTX_TABLE</c> (a file that gets the
/// markdown table of sm_90 resources, see scripts/ptx-table.sh), <c>HEADLIGHT_PTX_DUMP</c> (a folder
/// that keeps each kernel's .ptx and sm_90 .cubin, for cuobjdump/nvdisasm).
/// </remarks>
public sealed class PtxAssemblyTests(ITestOutputHelper output)
{
    /// <summary>Register budget of a hot kernel: at most 128 leaves room for 2 blocks of 256 threads per SM.</summary>
    private const int HotRegisterBudget = 128;

    /// <summary>Static shared memory a kernel may declare without opting in to more (48 KB).</summary>
    private const int HotSharedBudget = 48 * 1024;

    private static readonly (int Major, int Minor, string Arch)[] Architectures = [(9, 0, "sm_90"), (8, 0, "sm_80")];

    private static readonly Lazy<IReadOnlyList<(KernelEntry Kernel, string? Ptx90, string? Ptx80, string? Error)>> Ptx =
        new(CompileAll);

    private static readonly Lazy<(string? Ptxas, string Reason)> Assembler = new(() =>
    {
        string? path = PtxKernels.FindPtxas(out string reason);
        return (path, reason);
    });

    private static readonly Lazy<IReadOnlyList<Assembled>> AssembledKernels = new(AssembleAll);

    private sealed record Assembled(KernelEntry Kernel, PtxasResources? Sm90, PtxasResources? Sm80, string? Error)
    {
        public int GroupSize => Kernel.ImplicitlyGrouped
            ? PtxKernels.Sm90AutoGroupSize(Sm90!.Registers, Sm90.SharedBytes)
            : ExplicitGroupSize(Kernel);
    }

    [Fact]
    public void Kernels_are_found_in_the_IL_and_grouped_as_their_loaders_say()
    {
        var kernels = PtxKernels.All;
        output.WriteLine($"{kernels.Count} kernels:");
        foreach (var k in kernels)
        {
            output.WriteLine($"  {k.Name}  {(k.ImplicitlyGrouped ? "implicit" : "explicit")}  {k.Loader}");
        }

        Assert.True(kernels.Count >= 30, $"only {kernels.Count} kernels found; the IL scan may have missed loaders");
        var mismatched = kernels
            .Where(k => k.Loader.Length > 0 && PtxKernels.LoaderIsImplicit(k.Loader) != k.ImplicitlyGrouped)
            .Select(k => $"{k.Name} is loaded by {k.Loader} but its first parameter says {(k.ImplicitlyGrouped ? "implicit" : "explicit")}")
            .ToList();
        Assert.True(mismatched.Count == 0, string.Join("\n", mismatched));
        var duplicated = kernels.GroupBy(k => k.Name, StringComparer.Ordinal).Where(g => g.Count() > 1).Select(g => g.Key).ToList();
        Assert.True(duplicated.Count == 0, $"kernel names are not unique: {string.Join(", ", duplicated)}");
        Assert.Contains(kernels, k => k.Name == "Gemm.TiledKernel" && !k.ImplicitlyGrouped);
        foreach (var (type, prefix) in HotKernelPatterns)
        {
            Assert.True(kernels.Any(k => IsMatch(k, type, prefix)), $"no kernel matches the hot pattern {type}.{prefix}*");
        }
    }

    [Fact]
    public void Every_kernel_compiles_to_PTX_for_sm_90_and_sm_80_without_a_device()
    {
        var failures = Ptx.Value.Where(p => p.Error is not null).Select(p => p.Error!).ToList();
        Assert.True(failures.Count == 0, $"{failures.Count} of {Ptx.Value.Count} kernels failed to compile:\n{string.Join("\n\n", failures)}");
        foreach (var (kernel, ptx90, ptx80, _) in Ptx.Value)
        {
            Assert.Contains(".entry", ptx90!, StringComparison.Ordinal);
            Assert.Contains(".entry", ptx80!, StringComparison.Ordinal);
            Assert.True(ptx90!.Contains(".version 7.8", StringComparison.Ordinal), $"{kernel.Name}: PTX ISA is not 7.8");
        }

        output.WriteLine($"{Ptx.Value.Count} kernels compiled to PTX for sm_90 and sm_80");
    }

    [SkippableFact]
    public void Every_kernel_assembles_with_ptxas_without_spills()
    {
        RequirePtxas();
        var results = AssembledKernels.Value;
        var errors = results.Where(r => r.Error is not null).Select(r => r.Error!).ToList();
        foreach (var r in results.Where(r => r.Error is null))
        {
            output.WriteLine(PtxKernels.Describe(r.Kernel, r.Sm90!));
            output.WriteLine(PtxKernels.Describe(r.Kernel, r.Sm80!));
            foreach (var res in new[] { r.Sm90!, r.Sm80! })
            {
                if (res.Spills > 0)
                {
                    errors.Add($"{r.Kernel.Name} spills on {res.Arch}: {res.SpillStores} bytes stored, {res.SpillLoads} bytes loaded, {res.Registers} registers");
                }
            }
        }

        string? tablePath = Environment.GetEnvironmentVariable("HEADLIGHT_PTX_TABLE");
        if (!string.IsNullOrEmpty(tablePath) && results.All(r => r.Error is null))
        {
            File.WriteAllText(tablePath, Table(results));
            output.WriteLine($"table written to {tablePath}");
        }

        Assert.True(errors.Count == 0, $"{errors.Count} problems in {results.Count} kernels:\n{string.Join("\n\n", errors)}");
    }

    [SkippableFact]
    public void Hot_kernels_fit_the_register_and_shared_budget()
    {
        RequirePtxas();
        var hot = AssembledKernels.Value.Where(r => IsHot(r.Kernel)).ToList();
        Assert.NotEmpty(hot);
        var over = new List<string>();
        foreach (var r in hot)
        {
            Assert.True(r.Error is null, r.Error);
            var res = r.Sm90!;
            var (blocks, occupancy) = PtxKernels.Sm90Occupancy(r.GroupSize, res.Registers, res.SharedBytes);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Kernel.Name}: {res.Registers} registers, {res.SharedBytes} B shared, group {r.GroupSize} → {blocks} blocks/SM, occupancy {occupancy * 100:F0}% (sm_90)"));
            if (res.Registers > HotRegisterBudget)
            {
                over.Add($"{r.Kernel.Name}: {res.Registers} registers > {HotRegisterBudget}");
            }

            if (res.SharedBytes > HotSharedBudget)
            {
                over.Add($"{r.Kernel.Name}: {res.SharedBytes} bytes of shared memory > {HotSharedBudget}");
            }
        }

        Assert.True(over.Count == 0, string.Join("\n", over));
    }

    /// <summary>
    /// The warp-per-row kernels of LayerNorm, RmsNorm, softmax and the row reductions reduce with full-warp butterfly
    /// shuffles, declare no shared memory and wait at no barrier, and keep full occupancy in 256-thread groups.
    /// </summary>
    [SkippableFact]
    public void Warp_row_kernels_reduce_with_shuffles_without_shared_memory_or_barriers()
    {
        bool IsWarpRow(KernelEntry k) => k.Op is "LayerNorm" or "RmsNorm" or "Softmax" or "Reduce" or "CrossEntropy" && k.Method.Name.EndsWith("WarpKernel", StringComparison.Ordinal);
        var warp = Ptx.Value.Where(p => IsWarpRow(p.Kernel)).ToList();
        Assert.Equal(10, warp.Count);
        foreach (var (kernel, ptx90, _, error) in warp)
        {
            Assert.True(error is null, error);
            Assert.True(ptx90!.Contains("shfl.sync.bfly.b32", StringComparison.Ordinal), $"{kernel.Name}: no butterfly shuffle");
            Assert.False(ptx90.Contains("bar.sync", StringComparison.Ordinal), $"{kernel.Name}: waits at a barrier");
            Assert.False(ptx90.Contains(".shared", StringComparison.Ordinal), $"{kernel.Name}: declares shared memory");
        }

        RequirePtxas();
        foreach (var r in AssembledKernels.Value.Where(r => IsWarpRow(r.Kernel)))
        {
            Assert.True(r.Error is null, r.Error);
            var (_, occupancy) = PtxKernels.Sm90Occupancy(r.GroupSize, r.Sm90!.Registers, r.Sm90.SharedBytes);
            Assert.True(r.Sm90.SharedBytes == 0 && occupancy == 1.0, $"{r.Kernel.Name}: {r.Sm90.SharedBytes} B shared, {r.Sm90.Registers} registers, occupancy {occupancy:P0}");
        }
    }

    [Fact]
    public void Gemm_tiled_kernel_moves_16_byte_vectors()
    {
        // Its quads of a and b come from global memory, and its fragments from shared memory, as v4 loads.
        string ptx = Ptx.Value.Single(p => p.Kernel.Name == "Gemm.TiledKernel").Ptx90!;
        Assert.Matches(@"ld(\.global)?\.v4\.f32", ptx);
        Assert.Contains("ld.shared.v4.f32", ptx, StringComparison.Ordinal);
        Assert.Contains("st.shared.v4.f32", ptx, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Gemm_tiled_kernel_keeps_two_groups_per_SM()
    {
        // 64 accumulators per thread: at most 128 registers keep two 256-thread groups (25%) resident on sm_90.
        RequirePtxas();
        var r = AssembledKernels.Value.Single(a => a.Kernel.Name == "Gemm.TiledKernel");
        Assert.True(r.Error is null, r.Error);
        var (blocks, occupancy) = PtxKernels.Sm90Occupancy(Gemm.GroupThreads, r.Sm90!.Registers, r.Sm90.SharedBytes);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"Gemm.TiledKernel: {r.Sm90.Registers} registers, {r.Sm90.SharedBytes} B shared → {blocks} groups/SM, {occupancy * 100:F0}%"));
        Assert.True(blocks >= 2, $"Gemm.TiledKernel: {r.Sm90.Registers} registers, {r.Sm90.SharedBytes} B shared leave {blocks} group per SM");
        Assert.True(r.Sm90.StackBytes == 0 && r.Sm80!.StackBytes == 0, "Gemm.TiledKernel uses a stack frame");
    }

    [SkippableFact]
    public void Attention_register_tiled_kernels_keep_their_rows_in_registers()
    {
        RequirePtxas();

        // Forward32Kernel, BackwardQuery64Kernel, …: one kernel per padded head dimension.
        var tiled = AssembledKernels.Value
            .Where(r => r.Kernel.Op == "Attention" && Regex.IsMatch(r.Kernel.Method.Name, @"^[A-Za-z]+\d+Kernel$"))
            .ToList();
        Assert.True(tiled.Count >= 8, $"only {tiled.Count} register-tiled attention kernels found");
        var over = new List<string>();
        foreach (var r in tiled)
        {
            Assert.True(r.Error is null, r.Error);
            var res = r.Sm90!;
            var (_, occupancy) = PtxKernels.Sm90Occupancy(r.GroupSize, res.Registers, res.SharedBytes);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{r.Kernel.Name}: {res.Registers} registers, {res.StackBytes} B stack, {res.SharedBytes} B shared, occupancy {occupancy * 100:F0}% (sm_90)"));
            if (res.StackBytes > 0)
            {
                over.Add($"{r.Kernel.Name}: {res.StackBytes} bytes of stack (per-thread arrays in local memory)");
            }

            // The forward for head dims up to 64 (MiniLM 32, GPT-2 64) must keep at least half the SM's warps.
            if (r.Kernel.Method.Name is "Forward32Kernel" or "Forward64Kernel" && occupancy < 0.5)
            {
                over.Add(string.Create(CultureInfo.InvariantCulture, $"{r.Kernel.Name}: occupancy {occupancy * 100:F0}% < 50% ({res.Registers} registers, {res.SharedBytes} B shared)"));
            }
        }

        Assert.True(over.Count == 0, string.Join("\n", over));
    }

    [Fact]
    public void Occupancy_follows_the_sm_90_limits()
    {
        // 256 threads (8 warps), 57 registers: 2,048 per warp, 8 warps per partition → 4 blocks, 50%.
        Assert.Equal((4, 0.5), PtxKernels.Sm90Occupancy(256, 57, 8448));
        // 64 threads with 33 KB of shared memory: 228 KB / 34 KB → 6 blocks of 2 warps, 18.75%.
        Assert.Equal((6, 12 / 64.0), PtxKernels.Sm90Occupancy(64, 40, 32 * 1024 + 128));
        // Tiny blocks stop at 32 per SM.
        Assert.Equal((32, 0.5), PtxKernels.Sm90Occupancy(32, 16, 0));
        // Few registers: the largest group gives full occupancy.
        Assert.Equal(1024, PtxKernels.Sm90AutoGroupSize(16, 0));
        // 128 registers: 4,096 per warp, 4 warps per partition, 16 warps per SM.
        Assert.Equal((2, 0.25), PtxKernels.Sm90Occupancy(256, 128, 0));
    }

    [Fact]
    public void Ptxas_report_is_read_with_its_spills()
    {
        // ptxas 11.8's -v output for Gemm's tiled kernel held to 24 registers (-maxrregcount=24).
        const string Log = """
            ptxas info    : 0 bytes gmem
            ptxas info    : Compiling entry function 'Kernel_TiledKernel' for 'sm_90'
            ptxas info    : Function properties for Kernel_TiledKernel
                120 bytes stack frame, 344 bytes spill stores, 436 bytes spill loads
            ptxas info    : Used 24 registers, 8448 bytes smem
            """;
        var r = PtxKernels.Parse("sm_90", Log);
        Assert.Equal((24, 344, 436, 8448, 120), (r.Registers, r.SpillStores, r.SpillLoads, r.SharedBytes, r.StackBytes));
        Assert.Equal(780, r.Spills);
        Assert.Throws<InvalidOperationException>(() => PtxKernels.Parse("sm_90", "ptxas fatal   : Unresolved extern function"));
    }

    // --- helpers ---------------------------------------------------------------------------------

    /// <summary>Hot kernels by declaring type and method-name prefix ("" for every kernel of the type).</summary>
    private static readonly (string Type, string Prefix)[] HotKernelPatterns =
    [
        ("Gemm", "Tiled"),
        ("Attention", "Forward"),
        ("Attention", "Backward"),
        ("LayerNorm", ""),
        ("RmsNorm", ""),
        ("Rope", ""),
        ("SwiGlu", ""),
        ("Softmax", ""),
        ("CrossEntropy", ""),
        ("AdamW", ""),
    ];

    private static bool IsMatch(KernelEntry k, string type, string prefix) =>
        k.Op == type && k.Method.Name.StartsWith(prefix, StringComparison.Ordinal);

    private static bool IsHot(KernelEntry k) => HotKernelPatterns.Any(p => IsMatch(k, p.Type, p.Prefix));

    /// <summary>
    /// The group size an explicitly grouped kernel is launched with on a CUDA device (1,024 threads per
    /// group): Gemm's tiled kernel and attention's group constants; row kernels use the group reduction's
    /// size, which they reach on rows of 256 elements or more.
    /// </summary>
    private static int ExplicitGroupSize(KernelEntry kernel)
    {
        string? constant = kernel.Op switch
        {
            "Gemm" => "GroupThreads",
            // The row-per-thread backward kernels (head dims beyond the tiled ones) and the register-tiled kernels.
            "Attention" => kernel.Method.Name is "BackwardQueryKernel" or "BackwardKeyValueKernel" ? "GroupRows" : "TileThreads",
            _ => null,
        };
        if (constant is null)
        {
            return GroupReduce.MaxGroupSize;
        }

        // On the kernel's type, or on the op's type when the kernel lives in a type of its backend.
        const BindingFlags Static = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static;
        var field = kernel.Method.DeclaringType!.GetField(constant, Static)
            ?? kernel.Method.Module.Assembly.GetTypes().Where(t => t.Name == kernel.Op).Select(t => t.GetField(constant, Static)).FirstOrDefault(f => f is not null)
            ?? throw new InvalidOperationException($"{kernel.Op}.{constant} (the launch group size of {kernel.Name}) is gone; update {nameof(ExplicitGroupSize)}");
        return (int)field.GetRawConstantValue()!;
    }

    private void RequirePtxas()
    {
        var (ptxas, reason) = Assembler.Value;
        Skip.If(ptxas is null, reason);
        output.WriteLine($"ptxas: {ptxas}");
    }

    private static IReadOnlyList<(KernelEntry, string?, string?, string?)> CompileAll()
    {
        var result = new List<(KernelEntry, string?, string?, string?)>();
        using var sm90 = PtxKernels.CreateCompiler(9, 0);
        using var sm80 = PtxKernels.CreateCompiler(8, 0);
        foreach (var kernel in PtxKernels.All)
        {
            try
            {
                result.Add((kernel, sm90.Compile(kernel), sm80.Compile(kernel), null));
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                result.Add((kernel, null, null, $"{kernel.Name}: {e.GetType().Name}: {e.Message}"));
            }
        }

        return result;
    }

    private static IReadOnlyList<Assembled> AssembleAll()
    {
        string ptxas = Assembler.Value.Ptxas!;
        string? dump = Environment.GetEnvironmentVariable("HEADLIGHT_PTX_DUMP");
        string dir = string.IsNullOrEmpty(dump)
            ? Path.Combine(Path.GetTempPath(), $"headlight-ptx-{Environment.ProcessId}")
            : dump;
        Directory.CreateDirectory(dir);
        var results = new ConcurrentBag<Assembled>();
        try
        {
            Parallel.ForEach(Ptx.Value, new ParallelOptions { MaxDegreeOfParallelism = Math.Min(4, Environment.ProcessorCount) }, p =>
            {
                var (kernel, ptx90, ptx80, error) = p;
                if (error is not null)
                {
                    results.Add(new Assembled(kernel, null, null, error));
                    return;
                }

                try
                {
                    string stem = Path.Combine(dir, kernel.Name);
                    var r90 = PtxKernels.Assemble(ptxas, ptx90!, "sm_90", stem + ".ptx", stem + ".sm_90.cubin");
                    var r80 = PtxKernels.Assemble(ptxas, ptx80!, "sm_80", stem + ".sm_80.ptx", stem + ".sm_80.cubin");
                    results.Add(new Assembled(kernel, r90, r80, null));
                }
                catch (InvalidOperationException e)
                {
                    results.Add(new Assembled(kernel, null, null, $"{kernel.Name}: {e.Message}"));
                }
            });
        }
        finally
        {
            if (string.IsNullOrEmpty(dump))
            {
                Directory.Delete(dir, recursive: true);
            }
        }

        return results.OrderBy(r => r.Kernel.Name, StringComparer.Ordinal).ToList();
    }

    private static string Table(IReadOnlyList<Assembled> results)
    {
        var table = new StringBuilder();
        PtxKernels.Row(table, "Kernel", "Grouping", "Group size", "Registers sm_90 (sm_80)", "Spill st/ld (B)",
            "Shared (B)", "Stack (B)", "Blocks/SM", "Occupancy sm_90");
        PtxKernels.Row(table, "---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:");
        foreach (var r in results)
        {
            var res = r.Sm90!;
            int group = r.GroupSize;
            var (blocks, occupancy) = PtxKernels.Sm90Occupancy(group, res.Registers, res.SharedBytes);
            string name = IsHot(r.Kernel) ? $"**{r.Kernel.Name}**" : r.Kernel.Name;
            PtxKernels.Row(table,
                name,
                r.Kernel.ImplicitlyGrouped ? "auto" : "explicit",
                PtxKernels.N(group),
                r.Sm80!.Registers == res.Registers
                    ? PtxKernels.N(res.Registers)
                    : $"{PtxKernels.N(res.Registers)} ({PtxKernels.N(r.Sm80.Registers)})",
                $"{res.SpillStores}/{res.SpillLoads}",
                PtxKernels.N(res.SharedBytes),
                PtxKernels.N(res.StackBytes),
                PtxKernels.N(blocks),
                (occupancy * 100).ToString("F0", CultureInfo.InvariantCulture) + "%");
        }

        return table.ToString();
    }
}
