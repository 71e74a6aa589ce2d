using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Reflection.Emit;
using System.Text;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Headlight.Tests;

/// <summary>One ILGPU kernel of Headlight.Kernels: its method, how it is grouped and what loads it.</summary>
/// <param name="Method">The static kernel method.</param>
/// <param name="ImplicitlyGrouped">True when its first parameter is an index (auto-grouped launches).</param>
/// <param name="Loader">The ILGPU loader called with it (<c>LoadAutoGroupedKernel</c>, <c>LoadKernel</c>, …), or "".</param>
internal sealed record KernelEntry(MethodInfo Method, bool ImplicitlyGrouped, string Loader)
{
    /// <summary>
    /// The op: the declaring type's name without an <c>Ilgpu</c> or <c>Kernels</c> suffix, so a kernel keeps
    /// its name if it moves to a type of its backend.
    /// </summary>
    public string Op
    {
        get
        {
            string type = Method.DeclaringType!.Name;
            foreach (string suffix in (ReadOnlySpan<string>)["Ilgpu", "Kernels"])
            {
                if (type.Length > suffix.Length && type.EndsWith(suffix, StringComparison.Ordinal))
                {
                    return type[..^suffix.Length];
                }
            }

            return type;
        }
    }

    /// <summary>Op and method, e.g. <c>Gemm.TiledKernel</c>.</summary>
    public string Name => $"{Op}.{Method.Name}";

    public override string ToString() => Name;
}

/// <summary>What ptxas reported for one kernel on one architecture.</summary>
internal sealed record PtxasResources(
    string Arch, int Registers, int SpillStores, int SpillLoads, int SharedBytes, int StackBytes, int ConstantBytes, string Log)
{
    /// <summary>Bytes spilled to local memory, stores and loads together.</summary>
    public int Spills => SpillStores + SpillLoads;
}

/// <summary>
/// Finds every kernel Headlight.Kernels loads, compiles it to PTX with ILGPU's PTX backend (no device
/// needed) and assembles that PTX with NVIDIA's ptxas to read its register, spill, shared-memory and
/// stack use.
/// </summary>
/// <remarks>
/// Kernels are found in the IL, not by file or name: every <c>ldftn</c> of a static Headlight.Kernels
/// method whose delegate (the following <c>newobj</c>) has an ILGPU type among its parameters
/// (<c>Index1D</c>, <c>ArrayView&lt;T&gt;</c>, …) is a kernel handed to one of ILGPU's loaders. That is
/// exactly what <c>acc.LoadAutoGroupedKernel&lt;…&gt;(SomeKernel)</c> and <c>acc.LoadKernel&lt;…&gt;(SomeKernel)</c>
/// compile to, wherever the call sits (lambdas included), and it needs no attribute on the kernels.
/// </remarks>
internal static partial class PtxKernels
{
    /// <summary>The PTX ISA ILGPU is asked to emit: 7.8, the newest CUDA 11.8's ptxas accepts.</summary>
    public static readonly CudaInstructionSet InstructionSet = new(7, 8);

    private static readonly OpCode[] OneByteOpCodes = new OpCode[256];
    private static readonly OpCode[] TwoByteOpCodes = new OpCode[256];

    private static readonly Lazy<IReadOnlyList<KernelEntry>> Found = new(Discover);

    static PtxKernels()
    {
        foreach (var field in typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static))
        {
            if (field.GetValue(null) is OpCode op)
            {
                int value = (ushort)op.Value;
                if (op.Size == 1)
                {
                    OneByteOpCodes[value] = op;
                }
                else
                {
                    TwoByteOpCodes[value & 0xFF] = op;
                }
            }
        }
    }

    /// <summary>Every kernel, ordered by name.</summary>
    public static IReadOnlyList<KernelEntry> All => Found.Value;

    // --- discovery -----------------------------------------------------------------------------

    private static IReadOnlyList<KernelEntry> Discover()
    {
        var assembly = typeof(Headlight.Kernels.Device).Assembly;
        var kernels = new Dictionary<MethodInfo, KernelEntry>();
        const BindingFlags Every = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static
            | BindingFlags.Instance | BindingFlags.DeclaredOnly;
        foreach (var type in assembly.GetTypes())
        {
            foreach (var method in type.GetMethods(Every).Cast<MethodBase>().Concat(type.GetConstructors(Every)))
            {
                foreach (var entry in KernelsLoadedBy(method))
                {
                    // One method may be loaded in several places; keep the entry that names a loader.
                    if (!kernels.TryGetValue(entry.Method, out var known) || known.Loader.Length == 0)
                    {
                        kernels[entry.Method] = entry;
                    }
                }
            }
        }

        return kernels.Values.OrderBy(k => k.Name, StringComparer.Ordinal).ToList();
    }

    private static IEnumerable<KernelEntry> KernelsLoadedBy(MethodBase caller)
    {
        byte[]? il;
        try
        {
            il = caller.GetMethodBody()?.GetILAsByteArray();
        }
        catch (InvalidOperationException)
        {
            il = null;
        }

        if (il is null)
        {
            yield break;
        }

        var module = caller.Module;
        var typeArgs = caller.DeclaringType is { IsGenericType: true } t ? t.GetGenericArguments() : null;
        var methodArgs = caller is MethodInfo { IsGenericMethod: true } m ? m.GetGenericArguments() : null;
        MethodInfo? target = null; // the last ldftn's method, until a call consumes it
        bool isKernel = false;
        int i = 0;
        while (i < il.Length)
        {
            OpCode op;
            if (il[i] == 0xFE)
            {
                op = TwoByteOpCodes[il[i + 1]];
                i += 2;
            }
            else
            {
                op = OneByteOpCodes[il[i]];
                i += 1;
            }

            int operand = i;
            i += OperandSize(op.OperandType, il, i);
            if (op == OpCodes.Ldftn)
            {
                target = Resolve(module, il, operand, typeArgs, methodArgs) as MethodInfo;
                isKernel = false;
                if (target is not null && (!target.IsStatic || target.Module.Assembly != caller.Module.Assembly))
                {
                    target = null;
                }
            }
            else if (op == OpCodes.Newobj && target is not null)
            {
                var ctor = Resolve(module, il, operand, typeArgs, methodArgs);
                isKernel = ctor?.DeclaringType is { } delegateType
                    && typeof(Delegate).IsAssignableFrom(delegateType)
                    && delegateType.GetMethod("Invoke")!.GetParameters().Any(p => IsIlgpuType(p.ParameterType));
                if (!isKernel)
                {
                    target = null;
                }
            }
            else if ((op == OpCodes.Call || op == OpCodes.Callvirt) && target is not null)
            {
                if (isKernel)
                {
                    var callee = Resolve(module, il, operand, typeArgs, methodArgs);
                    string loader = callee is not null && callee.Name.StartsWith("Load", StringComparison.Ordinal)
                        && callee.Name.Contains("Kernel", StringComparison.Ordinal)
                        ? callee.Name
                        : string.Empty;
                    yield return new KernelEntry(target, HasIndexFirst(target), loader);
                }

                target = null;
                isKernel = false;
            }
        }

        if (target is not null && isKernel)
        {
            yield return new KernelEntry(target, HasIndexFirst(target), string.Empty);
        }
    }

    /// <summary>Whether the loader's name says the kernel is implicitly grouped (ILGPU picks or is given a group size).</summary>
    public static bool LoaderIsImplicit(string loader) =>
        loader.Contains("AutoGrouped", StringComparison.Ordinal) || loader.Contains("ImplicitlyGrouped", StringComparison.Ordinal);

    private static bool HasIndexFirst(MethodInfo method)
    {
        var parameters = method.GetParameters();
        if (parameters.Length == 0)
        {
            return false;
        }

        var first = parameters[0].ParameterType;
        return first == typeof(Index1D) || first == typeof(Index2D) || first == typeof(Index3D)
            || first == typeof(LongIndex1D) || first == typeof(LongIndex2D) || first == typeof(LongIndex3D);
    }

    private static bool IsIlgpuType(Type type)
    {
        var t = type.IsGenericType ? type.GetGenericTypeDefinition() : type;
        return t.Namespace is { } ns && (ns == "ILGPU" || ns.StartsWith("ILGPU.", StringComparison.Ordinal));
    }

    private static MethodBase? Resolve(Module module, byte[] il, int operand, Type[]? typeArgs, Type[]? methodArgs)
    {
        try
        {
            return module.ResolveMethod(BitConverter.ToInt32(il, operand), typeArgs, methodArgs);
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    private static int OperandSize(OperandType type, byte[] il, int at) => type switch
    {
        OperandType.InlineNone => 0,
        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
        OperandType.InlineVar => 2,
        OperandType.InlineI8 or OperandType.InlineR => 8,
        OperandType.InlineSwitch => 4 + (4 * BitConverter.ToInt32(il, at)),
        _ => 4,
    };

    // --- PTX -----------------------------------------------------------------------------------

    /// <summary>
    /// A PTX backend for compute capability <paramref name="major"/>.<paramref name="minor"/> that needs no
    /// device or driver, in a context set up like the library's (default math, ILGPU.Algorithms).
    /// </summary>
    public static PtxCompiler CreateCompiler(int major, int minor) => new(major, minor);

    /// <summary>Compiles kernels to PTX for one architecture; not thread-safe.</summary>
    internal sealed class PtxCompiler : IDisposable
    {
        private readonly Context context;
        private readonly PTXBackend backend;

        internal PtxCompiler(int major, int minor)
        {
            context = Context.Create(builder => builder.Math(MathMode.Default).EnableAlgorithms());
            var arch = new CudaArchitecture(major, minor);
            backend = new PTXBackend(context, new CudaCapabilityContext(arch), arch, InstructionSet, null);
        }

        /// <summary>The PTX module of <paramref name="kernel"/>.</summary>
        public string Compile(KernelEntry kernel)
        {
            var entry = kernel.ImplicitlyGrouped
                ? EntryPointDescription.FromImplicitlyGroupedKernel(kernel.Method)
                : EntryPointDescription.FromExplicitlyGroupedKernel(kernel.Method);
            var compiled = (PTXCompiledKernel)backend.Compile(entry, KernelSpecialization.Empty);
            return compiled.PTXAssembly;
        }

        public void Dispose()
        {
            backend.Dispose();
            context.Dispose();
        }
    }

    // --- ptxas ---------------------------------------------------------------------------------

    /// <summary>
    /// The ptxas to use: <c>HEADLIGHT_PTXAS</c> (which must exist when set), else the one scripts/install-ptxas.sh unpacks into the
    /// cache folder, else ptxas on PATH; null with the reason when there is none.
    /// </summary>
    public static string? FindPtxas(out string reason)
    {
        reason = string.Empty;
        string? configured = Environment.GetEnvironmentVariable("HEADLIGHT_PTXAS");
        if (!string.IsNullOrEmpty(configured))
        {
            if (File.Exists(configured))
            {
                return configured;
            }

            // Set on purpose (CI does, after installing it): a missing file is an error, not a skip.
            throw new FileNotFoundException($"HEADLIGHT_PTXAS names '{configured}', which does not exist", configured);
        }

        string cache = Environment.GetEnvironmentVariable("HEADLIGHT_CACHE") is { Length: > 0 } c
            ? c
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "headlight");
        string cached = Path.Combine(cache, "cuda-toolkit", "root", "usr", "bin", "ptxas");
        if (File.Exists(cached))
        {
            return cached;
        }

        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator))
        {
            string candidate = Path.Combine(dir, "ptxas");
            if (dir.Length > 0 && File.Exists(candidate))
            {
                return candidate;
            }
        }

        reason = $"ptxas not found (HEADLIGHT_PTXAS unset, no {cached}, none on PATH); run scripts/install-ptxas.sh";
        return null;
    }

    /// <summary>
    /// Assembles <paramref name="ptx"/> for <paramref name="arch"/> (e.g. <c>sm_90</c>) with <c>ptxas -v</c>,
    /// writing the cubin to <paramref name="cubinPath"/>; throws with ptxas's output when it fails.
    /// </summary>
    public static PtxasResources Assemble(string ptxas, string ptx, string arch, string ptxPath, string cubinPath)
    {
        File.WriteAllText(ptxPath, ptx);
        var start = new ProcessStartInfo(ptxas)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { "-v", $"-arch={arch}", "-o", cubinPath, ptxPath })
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {ptxas}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        string log = (stdout.Result + stderr).Trim();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"ptxas -arch={arch} {ptxPath} exited {process.ExitCode}:\n{log}");
        }

        return Parse(arch, log);
    }

    /// <summary>Reads ptxas -v's report of its one entry function (and any functions it calls).</summary>
    public static PtxasResources Parse(string arch, string log)
    {
        int registers = 0, shared = 0, constant = 0, stack = 0, spillStores = 0, spillLoads = 0;
        bool sawUsed = false;
        foreach (string line in log.Split('\n'))
        {
            var properties = PropertiesLine().Match(line);
            if (properties.Success)
            {
                // The entry's own frame; callees' frames add to it when they are called.
                stack = Math.Max(stack, Int(properties.Groups["stack"]));
                spillStores += Int(properties.Groups["stores"]);
                spillLoads += Int(properties.Groups["loads"]);
                continue;
            }

            var used = UsedLine().Match(line);
            if (used.Success)
            {
                sawUsed = true;
                registers = Math.Max(registers, Int(used.Groups["regs"]));
                var smem = SharedPart().Match(line);
                if (smem.Success)
                {
                    shared = Math.Max(shared, Int(smem.Groups["n"]));
                }

                var cmem = ConstantPart().Match(line);
                if (cmem.Success)
                {
                    constant = Math.Max(constant, Int(cmem.Groups["n"]));
                }
            }
        }

        if (!sawUsed)
        {
            throw new InvalidOperationException($"ptxas printed no 'Used N registers' line:\n{log}");
        }

        return new PtxasResources(arch, registers, spillStores, spillLoads, shared, stack, constant, log);
    }

    private static int Int(System.Text.RegularExpressions.Group group) => int.Parse(group.Value, NumberStyles.None, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"(?<stack>\d+) bytes stack frame, (?<stores>\d+) bytes spill stores, (?<loads>\d+) bytes spill loads")]
    private static partial Regex PropertiesLine();

    [GeneratedRegex(@"Used (?<regs>\d+) registers")]
    private static partial Regex UsedLine();

    [GeneratedRegex(@"(?<n>\d+) bytes smem")]
    private static partial Regex SharedPart();

    [GeneratedRegex(@"(?<n>\d+) bytes cmem\[0\]")]
    private static partial Regex ConstantPart();

    // --- occupancy -----------------------------------------------------------------------------

    /// <summary>
    /// Theoretical occupancy of one SM of compute capability 9.0 (H100/H200): 64 warps, 32 blocks, 65,536
    /// registers in 4 partitions allocated per warp in units of 256, 228 KB shared memory (the largest
    /// carve-out) with 1 KB reserved per block and 128-byte allocation units.
    /// </summary>
    /// <returns>Resident blocks per SM, and active warps as a fraction of 64.</returns>
    public static (int Blocks, double Occupancy) Sm90Occupancy(int threadsPerBlock, int registers, int sharedBytes)
    {
        const int WarpSize = 32, MaxWarps = 64, MaxBlocks = 32, RegistersPerSm = 65536, Partitions = 4;
        const int RegisterUnit = 256, SharedPerSm = 228 * 1024, ReservedShared = 1024, SharedUnit = 128;
        int warps = (threadsPerBlock + WarpSize - 1) / WarpSize;
        int byWarps = MaxWarps / warps;
        int byRegisters = int.MaxValue;
        if (registers > 0)
        {
            int perWarp = RoundUp(registers * WarpSize, RegisterUnit);
            int warpsPerPartition = RegistersPerSm / Partitions / perWarp;
            byRegisters = warpsPerPartition * Partitions / warps;
        }

        int byShared = SharedPerSm / RoundUp(sharedBytes + ReservedShared, SharedUnit);
        int blocks = Math.Min(Math.Min(byWarps, MaxBlocks), Math.Min(byRegisters, byShared));
        return (blocks, (double)(blocks * warps) / MaxWarps);
    }

    /// <summary>
    /// The group size an auto-grouped launch gets on CUDA, where ILGPU asks the driver for the block size of
    /// highest occupancy: the largest multiple of 32 up to 1,024 with the most active warps.
    /// </summary>
    public static int Sm90AutoGroupSize(int registers, int sharedBytes)
    {
        int best = 32;
        double bestWarps = -1;
        for (int threads = 1024; threads >= 32; threads -= 32)
        {
            var (blocks, _) = Sm90Occupancy(threads, registers, sharedBytes);
            double active = blocks * (threads / 32);
            if (active > bestWarps)
            {
                bestWarps = active;
                best = threads;
            }
        }

        return best;
    }

    private static int RoundUp(int value, int unit) => (value + unit - 1) / unit * unit;

    /// <summary>Formats an integer for tables.</summary>
    public static string N(int value) => value.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>A line for logs: kernel, grouping and resources.</summary>
    public static string Describe(KernelEntry kernel, PtxasResources r) => string.Create(CultureInfo.InvariantCulture,
        $"{kernel.Name} ({(kernel.ImplicitlyGrouped ? "implicit" : "explicit")}) {r.Arch}: {r.Registers} regs, "
        + $"{r.SpillStores}/{r.SpillLoads} B spill st/ld, {r.SharedBytes} B smem, {r.StackBytes} B stack");

    /// <summary>Appends a markdown row.</summary>
    public static void Row(StringBuilder table, params string[] cells) =>
        table.Append("| ").Append(string.Join(" | ", cells)).Append(" |\n");
}
