using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>What <see cref="Gemm.Forward"/> applies to each output element after the product, bias and beta term.</summary>
public enum Epilogue
{
    /// <summary>No activation: <c>c = alpha·op(a)·op(b) + beta·c + bias</c>.</summary>
    None = 0,

    /// <summary>Exact GELU (BERT): <c>c = gelu_erf(…)</c>.</summary>
    GeluErf = 1,

    /// <summary>GELU's tanh form (GPT-2's <c>gelu_new</c>): <c>c = gelu_tanh(…)</c>.</summary>
    GeluTanh = 2,
}

/// <summary>
/// General matrix multiply with a fused epilogue, <c>c = act(alpha·op(a)·op(b) + beta·c + bias)</c>, and its
/// backward pass. Two forms of operands are accepted:
/// <list type="bullet">
/// <item><b>Linear layer</b> (<c>b</c> of rank 2 and no <c>transposeA</c>): <c>a [..., k]</c> with every leading
/// dimension flattened into rows, <c>b [k, n]</c> (<c>[n, k]</c> with <c>transposeB</c>), <c>c [..., n]</c>.</item>
/// <item><b>Batched</b>: <c>a [batch..., m, k]</c> (<c>[batch..., k, m]</c> with <c>transposeA</c>),
/// <c>b [batch..., k, n]</c> (<c>[batch..., n, k]</c>), <c>c [batch..., m, n]</c>; an operand of rank 2 is
/// shared by every batch.</item>
/// </list>
/// The output must not overlap the inputs. On the CPU this is a packed, cache-blocked SIMD GEMM;
/// on ILGPU accelerators a shared-memory tiled kernel.
/// </summary>
public static class Gemm
{
    // ILGPU tiling: a group of 16×16 threads computes a 64×64 tile of c, each thread a 4×4 block
    // strided by 16 so that neighbouring threads touch neighbouring columns; K advances 16 at a time.
    private const int TileM = 64;
    private const int TileN = 64;
    private const int TileK = 16;
    private const int GroupThreads = 256;

    // Row pitch of the shared tiles: 66 ≡ 2 (mod 32 banks) keeps the transposing tile stores free of bank conflicts.
    private const int SharedPitch = 66;

    // The barrier-free kernel: one thread per 4×4 block of c.
    private const int BlockM = 4;
    private const int BlockN = 4;

    // On ILGPU's CPU accelerator, problems up to this many multiply-adds keep the tiled kernel (so tests of tiny
    // shapes still run it there); larger ones take the barrier-free kernel.
    private const long SimulatorTiledWork = 1 << 15;

    /// <summary>
    /// <c>c = act(alpha·op(a)·op(b) + beta·c + bias)</c>, where <c>op(x)</c> is <c>x</c> or its transpose
    /// (last two dimensions) and <c>act</c> is chosen by <paramref name="epilogue"/>.
    /// </summary>
    /// <param name="a">The left operand; see <see cref="Gemm"/> for the accepted shapes.</param>
    /// <param name="b">The right operand.</param>
    /// <param name="c">The output; with <paramref name="beta"/> = 0 its old contents are ignored (they may be NaN).</param>
    /// <param name="transposeA">Use the transpose of <paramref name="a"/>'s last two dimensions (batched form only).</param>
    /// <param name="transposeB">Use the transpose of <paramref name="b"/>'s last two dimensions (<c>[out, in]</c> weights).</param>
    /// <param name="bias">Optional <c>[n]</c>, added to every row.</param>
    /// <param name="epilogue">The activation applied last.</param>
    /// <param name="alpha">Scales the product.</param>
    /// <param name="beta">Scales the old contents of <paramref name="c"/>.</param>
    /// <param name="preActivation">Optional, shaped like <paramref name="c"/>: receives the value before the activation, as <see cref="Gelu.Backward"/> needs.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, too large for 32-bit indexing, aliased or misshaped.</exception>
    public static void Forward(Tensor<float> a, Tensor<float> b, Tensor<float> c,
        bool transposeA = false, bool transposeB = false, Tensor<float>? bias = null,
        Epilogue epilogue = Epilogue.None, float alpha = 1f, float beta = 0f, Tensor<float>? preActivation = null)
    {
        ForwardWith(a, b, c, transposeA, transposeB, bias, epilogue, alpha, beta, preActivation, GemmCpu.DefaultIsa);
    }

    /// <summary>
    /// Gradients of <c>c = alpha·op(a)·op(b) (+ bias)</c>: <c>da = alpha·dc·op(b)ᵀ</c> (in <paramref name="a"/>'s layout),
    /// <c>db = alpha·op(a)ᵀ·dc</c> (in <paramref name="b"/>'s layout) and <c>dbias</c> = column sums of <paramref name="dc"/>.
    /// An operand shared by every batch receives the sum over the batches. For a GELU epilogue, first turn the
    /// output gradient into the pre-activation gradient with <see cref="Gelu.Backward"/>.
    /// </summary>
    /// <param name="a">The forward pass's left operand.</param>
    /// <param name="b">The forward pass's right operand.</param>
    /// <param name="dc">The gradient of the output, shaped like the forward output.</param>
    /// <param name="da">Receives the gradient of <paramref name="a"/>; may be null.</param>
    /// <param name="db">Receives the gradient of <paramref name="b"/>; may be null.</param>
    /// <param name="dbias">Receives the gradient of the bias, <c>[n]</c>; may be null.</param>
    /// <param name="transposeA">As in the forward call.</param>
    /// <param name="transposeB">As in the forward call.</param>
    /// <param name="alpha">As in the forward call.</param>
    /// <param name="accumulate">Add into the gradients instead of overwriting them (sums over several uses).</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, too large, aliased or misshaped.</exception>
    public static void Backward(Tensor<float> a, Tensor<float> b, Tensor<float> dc,
        Tensor<float>? da, Tensor<float>? db, Tensor<float>? dbias,
        bool transposeA = false, bool transposeB = false, float alpha = 1f, bool accumulate = false)
    {
        const string op = "Gemm.Backward";
        var args = new OpArgs(op).Add("a", a).Add("b", b).Add("dc", dc)
            .AddOptional("da", da).AddOptional("db", db).AddOptional("dbias", dbias);
        var shape = Resolve(args, a, b, transposeA, transposeB);
        RequireOutput(args, "dc", dc, shape, a, b);
        args.RequireShape("da", da, a.Shape.Dims)
            .RequireShape("db", db, b.Shape.Dims)
            .RequireShape("dbias", dbias, shape.N);
        args.Require(!IsInput(da, a, b, dc), "'da' must not be a, b or dc")
            .Require(!IsInput(db, a, b, dc), "'db' must not be a, b or dc")
            .Require(!IsInput(dbias, a, b, dc), "'dbias' must not be a, b or dc")
            .Require(da is null || (!ReferenceEquals(da, db) && !ReferenceEquals(da, dbias)), "da, db and dbias must be distinct")
            .Require(db is null || !ReferenceEquals(db, dbias), "da, db and dbias must be distinct");

        float beta = accumulate ? 1f : 0f;
        var f = shape.Dims;
        if (da is not null)
        {
            // !transposeA: da [m, k] = alpha·dc [m, n]·op(b)ᵀ [n, k];  transposeA: da [k, m] = alpha·op(b) [k, n]·dcᵀ [n, m]
            var d = transposeA
                ? Derived(f.K, f.M, f.N, transA: f.TransB != 0, transB: true, f.BBatchStride, f.CBatchStride, f, reduceOver: f.ABatchStride == 0)
                : Derived(f.M, f.K, f.N, transA: false, transB: f.TransB == 0, f.CBatchStride, f.BBatchStride, f, reduceOver: f.ABatchStride == 0);
            d.Alpha = alpha;
            d.Beta = beta;
            if (transposeA)
            {
                Execute(args.Device, b, dc, da, null, null, d, GemmCpu.DefaultIsa);
            }
            else
            {
                Execute(args.Device, dc, b, da, null, null, d, GemmCpu.DefaultIsa);
            }
        }

        if (db is not null)
        {
            // !transposeB: db [k, n] = alpha·op(a)ᵀ [k, m]·dc [m, n];  transposeB: db [n, k] = alpha·dcᵀ [n, m]·op(a) [m, k]
            var d = transposeB
                ? Derived(f.N, f.K, f.M, transA: true, transB: f.TransA != 0, f.CBatchStride, f.ABatchStride, f, reduceOver: f.BBatchStride == 0)
                : Derived(f.K, f.N, f.M, transA: f.TransA == 0, transB: false, f.ABatchStride, f.CBatchStride, f, reduceOver: f.BBatchStride == 0);
            d.Alpha = alpha;
            d.Beta = beta;
            if (transposeB)
            {
                Execute(args.Device, dc, a, db, null, null, d, GemmCpu.DefaultIsa);
            }
            else
            {
                Execute(args.Device, a, dc, db, null, null, d, GemmCpu.DefaultIsa);
            }
        }

        if (dbias is not null && dc.Length == 0)
        {
            // No rows: the sum is empty (and an empty dc has no ILGPU view to reduce).
            if (!accumulate && dbias.Length > 0)
            {
                dbias.Fill(0f);
            }
        }
        else if (dbias is not null)
        {
            Reduce.ColumnSum(dc, dbias, accumulate);
        }
    }

    /// <summary>
    /// <c>c = act(alpha·a·b + beta·c + bias)</c> with a weight packed once by <see cref="Prepack"/>: the linear
    /// form, <c>a [..., k]</c>, <c>c [..., n]</c>. The CPU reads the packed strips (no packing of b per call);
    /// other devices, and CPU paths that do not use strips, read <see cref="PackedWeight.Source"/>.
    /// </summary>
    /// <param name="a">The left operand <c>[..., k]</c>.</param>
    /// <param name="b">The weight, packed by <see cref="Prepack"/>.</param>
    /// <param name="c">The output <c>[..., n]</c>.</param>
    /// <param name="bias">Optional <c>[n]</c>, added to every row.</param>
    /// <param name="epilogue">The activation applied last.</param>
    /// <param name="alpha">Scales the product.</param>
    /// <param name="beta">Scales the old contents of <paramref name="c"/>.</param>
    /// <param name="preActivation">Optional, shaped like <paramref name="c"/>: receives the value before the activation.</param>
    /// <remarks>A separate name rather than an overload of <see cref="Forward"/>, so that references to that stay unambiguous.</remarks>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, too large for 32-bit indexing, aliased or misshaped.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="b"/> has been disposed.</exception>
    public static void ForwardPacked(Tensor<float> a, PackedWeight b, Tensor<float> c, Tensor<float>? bias = null,
        Epilogue epilogue = Epilogue.None, float alpha = 1f, float beta = 0f, Tensor<float>? preActivation = null)
    {
        ArgumentNullException.ThrowIfNull(b);
        ObjectDisposedException.ThrowIf(b.IsDisposed, b);
        ForwardWith(a, b.Source, c, false, b.Transposed, bias, epilogue, alpha, beta, preActivation, GemmCpu.DefaultIsa, b);
    }

    /// <summary>
    /// Packs a constant right operand once (a weight <c>b [k, n]</c>, or <c>[n, k]</c> with <paramref name="transposeB"/>)
    /// into the CPU micro-kernel's strip layout, for <see cref="ForwardPacked"/>.
    /// On ILGPU devices nothing is packed. The result refers to <paramref name="b"/>, which must outlive it and stay unchanged.
    /// </summary>
    /// <param name="b">The weight.</param>
    /// <param name="transposeB">Use the transpose of <paramref name="b"/> (weights stored <c>[out, in]</c>).</param>
    /// <exception cref="ArgumentException"><paramref name="b"/> is missing, freed or not of rank 2.</exception>
    public static PackedWeight Prepack(Tensor<float> b, bool transposeB = false)
    {
        new OpArgs("Gemm.Prepack").Add("b", b).RequireRank("b", b, 2);
        return new PackedWeight(b, transposeB);
    }

    /// <summary>
    /// The forward pass with the CPU micro-kernel, and the ILGPU kernel, chosen explicitly (tests exercise the
    /// Vector256 fallback and both ILGPU kernels this way).
    /// </summary>
    internal static void ForwardWith(Tensor<float> a, Tensor<float> b, Tensor<float> c,
        bool transposeA, bool transposeB, Tensor<float>? bias,
        Epilogue epilogue, float alpha, float beta, Tensor<float>? preActivation, GemmIsa isa, PackedWeight? packed = null,
        GemmKernel kernel = GemmKernel.Auto)
    {
        const string op = "Gemm.Forward";
        var args = new OpArgs(op).Add("a", a).Add("b", b).Add("c", c)
            .AddOptional("bias", bias).AddOptional("preActivation", preActivation)
            .Require(Enum.IsDefined(epilogue), "epilogue must be None, GeluErf or GeluTanh");
        var shape = Resolve(args, a, b, transposeA, transposeB);
        RequireOutput(args, "c", c, shape, a, b);
        RequireOutput(args, "preActivation", preActivation, shape, a, b);
        args.RequireShape("bias", bias, shape.N)
            .Require(!ReferenceEquals(c, a) && !ReferenceEquals(c, b), "c must not be a or b")
            .Require(preActivation is null || (!ReferenceEquals(preActivation, c) && !ReferenceEquals(preActivation, a)
                && !ReferenceEquals(preActivation, b) && !ReferenceEquals(preActivation, bias)), "preActivation must not be a, b, c or bias")
            .Require(bias is null || !ReferenceEquals(bias, c), "bias must not be c");

        var d = shape.Dims;
        d.Alpha = alpha;
        d.Beta = beta;
        d.Activation = (int)epilogue;
        d.HasBias = bias is null ? 0 : 1;
        d.HasPre = preActivation is null ? 0 : 1;
        Execute(args.Device, a, b, c, bias, preActivation, d, isa, packed, kernel);
    }

    /// <summary>
    /// What shape analysis yields: the problem, and how the output shape follows from the operands: the linear
    /// form gives <c>a</c>'s leading dimensions and n, the batched form the batch dimensions (of <c>a</c>, or of
    /// <c>b</c> when <c>a</c> has none) and m, n.
    /// </summary>
    private readonly record struct Resolved(GemmDims Dims, bool Linear, bool LeadFromA)
    {
        public int N => Dims.N;
    }

    // The output c (or a tensor shaped like it) must have the shape the operands imply; compared without allocating.
    private static void RequireOutput(OpArgs args, string name, Tensor<float>? tensor, in Resolved r, Tensor<float> a, Tensor<float> b)
    {
        if (tensor is null)
        {
            return;
        }

        var prefix = OutputLead(r, a, b);
        var dims = tensor.Shape.Dims;
        int tail = r.Linear ? 1 : 2;
        bool ok = dims.Length == prefix.Length + tail && dims[..prefix.Length].SequenceEqual(prefix)
            && dims[^1] == r.Dims.N && (r.Linear || dims[^2] == r.Dims.M);
        if (!ok)
        {
            int[] expected = r.Linear ? [.. prefix, r.Dims.N] : [.. prefix, r.Dims.M, r.Dims.N];
            args.Fail($"'{name}' must have shape {TensorShape.Format(expected)}");
        }
    }

    private static ReadOnlySpan<int> OutputLead(in Resolved r, Tensor<float> a, Tensor<float> b)
        => r.Linear ? a.Shape.Dims[..^1] : r.LeadFromA ? a.Shape.Dims[..^2] : b.Shape.Dims[..^2];

    // Works out m, n, k, the batch layout and c's shape from a and b, or fails naming all shapes.
    private static Resolved Resolve(OpArgs args, Tensor<float> a, Tensor<float> b, bool transposeA, bool transposeB)
    {
        var sa = a.Shape;
        var sb = b.Shape;
        var d = new GemmDims { TransA = transposeA ? 1 : 0, TransB = transposeB ? 1 : 0, Reduce = 1 };
        bool leadFromA = true;
        if (sb.Rank == 2 && !transposeA)
        {
            // Linear form: a [..., k] · b [k, n] -> c [..., n]
            args.Require(sa.Rank >= 1, "a must have at least one dimension");
            int k = sa[-1];
            int bk = transposeB ? sb[1] : sb[0];
            int n = transposeB ? sb[0] : sb[1];
            if (bk != k)
            {
                args.Fail($"a's last dimension ({k}) must equal b's {(transposeB ? "second" : "first")} dimension ({bk})");
            }

            long rows = 1;
            for (int i = 0; i < sa.Rank - 1; i++)
            {
                rows *= sa[i];
            }

            d.M = args.ToInt32(rows, "the row count m of a");
            d.N = n;
            d.K = k;
            d.Batch = 1;
            d.CBatchStride = args.ToInt32((long)d.M * n, "m·n");
        }
        else
        {
            // Batched form: a [batch..., m, k] · b [batch..., k, n] -> c [batch..., m, n]; rank-2 operands broadcast.
            args.Require(sa.Rank >= 2 && sb.Rank >= 2, "the batched form needs a and b of rank 2 or more (a rank-1 or transposed a needs it)");
            int m = transposeA ? sa[-1] : sa[-2];
            int k = transposeA ? sa[-2] : sa[-1];
            int bk = transposeB ? sb[-1] : sb[-2];
            int n = transposeB ? sb[-2] : sb[-1];
            if (bk != k)
            {
                args.Fail($"the inner dimensions differ: op(a) is [{m}, {k}], op(b) is [{bk}, {n}]");
            }

            var leadA = sa.Dims[..^2];
            var leadB = sb.Dims[..^2];
            args.Require(leadA.Length == 0 || leadB.Length == 0 || leadA.SequenceEqual(leadB),
                "a and b must have the same batch dimensions (or one of them rank 2)");
            leadFromA = leadA.Length > 0;
            var lead = leadFromA ? leadA : leadB;
            long batch = 1;
            foreach (int x in lead)
            {
                batch *= x;
            }

            d.M = m;
            d.N = n;
            d.K = k;
            d.Batch = args.ToInt32(batch, "the batch count");
            d.ABatchStride = leadA.Length == 0 ? 0 : args.ToInt32((long)m * k, "m·k");
            d.BBatchStride = leadB.Length == 0 ? 0 : args.ToInt32((long)k * n, "k·n");
            d.CBatchStride = args.ToInt32((long)m * n, "m·n");
            return new Resolved(d, Linear: false, leadFromA);
        }

        return new Resolved(d, Linear: true, LeadFromA: true);
    }

    private static bool IsInput(Tensor<float>? output, Tensor<float> a, Tensor<float> b, Tensor<float> dc)
        => output is not null && (ReferenceEquals(output, a) || ReferenceEquals(output, b) || ReferenceEquals(output, dc));

    // A gradient GEMM out [m, n] = op(x) [m, k] · op(y) [k, n] over the forward problem's batches; when the
    // gradient's operand was shared by every batch, the batches are summed into one output instead.
    private static GemmDims Derived(int m, int n, int k, bool transA, bool transB, int xStride, int yStride, GemmDims forward, bool reduceOver)
    {
        var d = new GemmDims { M = m, N = n, K = k, TransA = transA ? 1 : 0, TransB = transB ? 1 : 0 };
        // Batch 0 still reduces (to an empty sum), so the gradient is zeroed rather than left alone.
        if (reduceOver && forward.Batch != 1)
        {
            d.Batch = 1;
            d.Reduce = forward.Batch;
            d.AReduceStride = xStride;
            d.BReduceStride = yStride;
            d.CBatchStride = m * n;
        }
        else
        {
            d.Batch = forward.Batch;
            d.Reduce = 1;
            d.ABatchStride = xStride;
            d.BBatchStride = yStride;
            d.CBatchStride = m * n;
        }

        return d;
    }

    private static void Execute(Device device, Tensor<float> a, Tensor<float> b, Tensor<float> c,
        Tensor<float>? bias, Tensor<float>? pre, GemmDims d, GemmIsa isa, PackedWeight? packed = null, GemmKernel kernel = GemmKernel.Auto)
    {
        if (d.M == 0 || d.N == 0 || d.Batch == 0)
        {
            return;
        }

        if (device is IlgpuDevice gpu)
        {
            // Absent optional operands are never read or written (HasBias/HasPre), nor are empty a or b
            // (k = 0); ILGPU has no view of an empty buffer, so c's view stands in for them.
            var cView = c.View;
            var aView = a.Length == 0 ? cView : a.View;
            var bView = b.Length == 0 ? cView : b.View;
            var biasView = bias?.View ?? cView;
            var preView = pre?.View ?? cView;
            if (kernel == GemmKernel.Auto)
            {
                // ILGPU's CPU accelerator runs each thread of a group on its own OS thread and every barrier
                // synchronises them all: beyond tiny problems the tiled kernel spends its time in barriers.
                long work = (long)d.M * d.N * Math.Max(d.K, 1) * d.Batch * Math.Max(d.Reduce, 1);
                kernel = gpu.Kind == DeviceKind.IlgpuCpu && work > SimulatorTiledWork ? GemmKernel.PerThread : GemmKernel.Tiled;
            }

            if (kernel == GemmKernel.PerThread)
            {
                var direct = gpu.GetKernel("Gemm.PerThread", static acc => acc.LoadAutoGroupedKernel<
                    Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmDims>(PerThreadKernel));
                d.MTiles = (d.M + BlockM - 1) / BlockM;
                d.NTiles = (d.N + BlockN - 1) / BlockN;
                int threads = checked(d.MTiles * d.NTiles * d.Batch);
                lock (gpu.SyncRoot)
                {
                    direct(gpu.Accelerator.DefaultStream, threads, aView, bView, cView, biasView, preView, d);
                }

                return;
            }

            if (gpu.MaxGroupSize < GroupThreads)
            {
                throw new NotSupportedException(
                    $"Gemm: device '{gpu.Name}' runs at most {gpu.MaxGroupSize} threads per group; the tiled kernel needs {GroupThreads}.");
            }

            var tiled = gpu.GetKernel("Gemm.Tiled", static acc =>
                acc.LoadKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmDims>(TiledKernel));
            d.MTiles = (d.M + TileM - 1) / TileM;
            d.NTiles = (d.N + TileN - 1) / TileN;
            int groups = checked(d.MTiles * d.NTiles * d.Batch);
            lock (gpu.SyncRoot)
            {
                tiled(gpu.Accelerator.DefaultStream, new KernelConfig(groups, GroupThreads), aView, bView, cView, biasView, preView, d);
            }

            return;
        }

        GemmCpu.Run((CpuDevice)device, a.HostSpan, b.HostSpan, c.HostSpan,
            bias is null ? default : bias.HostSpan, pre is null ? default : pre.HostSpan, d, isa, packed);
        GC.KeepAlive(packed); // its pinned strips were read through a pointer
    }

    // One group per 64×64 tile of one batch's c: a, b, c as described by p, bias [n], pre like c.
    private static void TiledKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias, ArrayView<float> pre, GemmDims p)
    {
        var sa = SharedMemory.Allocate<float>(TileK * SharedPitch); // op(a) tile, [kk][row]
        var sb = SharedMemory.Allocate<float>(TileK * SharedPitch); // op(b) tile, [kk][col]
        int tid = Group.IdxX;
        int tx = tid % 16;
        int ty = tid / 16;
        int g = Grid.IdxX;
        int nTile = g % p.NTiles;
        int rest = g / p.NTiles;
        int mTile = rest % p.MTiles;
        int batch = rest / p.MTiles;
        int row0 = mTile * TileM;
        int col0 = nTile * TileN;

        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f;
        float c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f;
        float c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;

        for (int r = 0; r < p.Reduce; r++)
        {
            long aBase = ((long)batch * p.ABatchStride) + ((long)r * p.AReduceStride);
            long bBase = ((long)batch * p.BBatchStride) + ((long)r * p.BReduceStride);
            for (int k0 = 0; k0 < p.K; k0 += TileK)
            {
                // Each thread stages 4 elements of each tile; the index order follows memory so loads coalesce.
                for (int l = 0; l < 4; l++)
                {
                    int idx = tid + (l * GroupThreads);
                    int rr;
                    int kk;
                    if (p.TransA == 0)
                    {
                        rr = idx / TileK; // a [m, k]: consecutive threads walk k
                        kk = idx % TileK;
                    }
                    else
                    {
                        kk = idx / TileM; // a [k, m]: consecutive threads walk m
                        rr = idx % TileM;
                    }

                    int gi = row0 + rr;
                    int gk = k0 + kk;
                    float v = 0f;
                    if (gi < p.M && gk < p.K)
                    {
                        v = p.TransA == 0 ? a[aBase + ((long)gi * p.K) + gk] : a[aBase + ((long)gk * p.M) + gi];
                    }

                    sa[(kk * SharedPitch) + rr] = v;

                    int cc;
                    if (p.TransB == 0)
                    {
                        kk = idx / TileN; // b [k, n]: consecutive threads walk n
                        cc = idx % TileN;
                    }
                    else
                    {
                        cc = idx / TileK; // b [n, k]: consecutive threads walk k
                        kk = idx % TileK;
                    }

                    int gj = col0 + cc;
                    gk = k0 + kk;
                    float w = 0f;
                    if (gj < p.N && gk < p.K)
                    {
                        w = p.TransB == 0 ? b[bBase + ((long)gk * p.N) + gj] : b[bBase + ((long)gj * p.K) + gk];
                    }

                    sb[(kk * SharedPitch) + cc] = w;
                }

                Group.Barrier();
                for (int kk = 0; kk < TileK; kk++)
                {
                    int ra = (kk * SharedPitch) + ty;
                    int rb = (kk * SharedPitch) + tx;
                    float a0 = sa[ra];
                    float a1 = sa[ra + 16];
                    float a2 = sa[ra + 32];
                    float a3 = sa[ra + 48];
                    float b0 = sb[rb];
                    float b1 = sb[rb + 16];
                    float b2 = sb[rb + 32];
                    float b3 = sb[rb + 48];
                    c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                    c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                    c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                    c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
                }

                Group.Barrier();
            }
        }

        long cBase = (long)batch * p.CBatchStride;
        int r0 = row0 + ty;
        int j0 = col0 + tx;
        Store(c, bias, pre, p, cBase, r0, j0, c00, c01, c02, c03);
        Store(c, bias, pre, p, cBase, r0 + 16, j0, c10, c11, c12, c13);
        Store(c, bias, pre, p, cBase, r0 + 32, j0, c20, c21, c22, c23);
        Store(c, bias, pre, p, cBase, r0 + 48, j0, c30, c31, c32, c33);
    }

    // One thread per 4×4 block of one batch's c, with no shared memory and no barriers (for ILGPU's CPU
    // accelerator, which simulates barriers with OS threads). a, b, c as described by p; bias [n], pre like c.
    // Rows and columns past the edge are clamped to the last one: they are computed, never stored.
    private static void PerThreadKernel(Index1D index, ArrayView<float> a, ArrayView<float> b, ArrayView<float> c,
        ArrayView<float> bias, ArrayView<float> pre, GemmDims p)
    {
        int jBlock = index % p.NTiles;
        int rest = index / p.NTiles;
        int iBlock = rest % p.MTiles;
        int batch = rest / p.MTiles;
        int i0 = iBlock * BlockM;
        int j0 = jBlock * BlockN;

        // op(a)[i, k] = a[i·aRow + k·aStep], op(b)[k, j] = b[j·bCol + k·bStep] (plus the batch offsets).
        long aRow = p.TransA == 0 ? p.K : 1;
        long aStep = p.TransA == 0 ? 1 : p.M;
        long bCol = p.TransB == 0 ? 1 : p.K;
        long bStep = p.TransB == 0 ? p.N : 1;
        long ra0 = XMath.Min(i0, p.M - 1) * aRow;
        long ra1 = XMath.Min(i0 + 1, p.M - 1) * aRow;
        long ra2 = XMath.Min(i0 + 2, p.M - 1) * aRow;
        long ra3 = XMath.Min(i0 + 3, p.M - 1) * aRow;
        long cb0 = XMath.Min(j0, p.N - 1) * bCol;
        long cb1 = XMath.Min(j0 + 1, p.N - 1) * bCol;
        long cb2 = XMath.Min(j0 + 2, p.N - 1) * bCol;
        long cb3 = XMath.Min(j0 + 3, p.N - 1) * bCol;

        float c00 = 0f, c01 = 0f, c02 = 0f, c03 = 0f;
        float c10 = 0f, c11 = 0f, c12 = 0f, c13 = 0f;
        float c20 = 0f, c21 = 0f, c22 = 0f, c23 = 0f;
        float c30 = 0f, c31 = 0f, c32 = 0f, c33 = 0f;
        for (int r = 0; r < p.Reduce; r++)
        {
            long aBase = ((long)batch * p.ABatchStride) + ((long)r * p.AReduceStride);
            long bBase = ((long)batch * p.BBatchStride) + ((long)r * p.BReduceStride);
            for (int k = 0; k < p.K; k++)
            {
                long ak = aBase + (k * aStep);
                long bk = bBase + (k * bStep);
                float a0 = a[ak + ra0];
                float a1 = a[ak + ra1];
                float a2 = a[ak + ra2];
                float a3 = a[ak + ra3];
                float b0 = b[bk + cb0];
                float b1 = b[bk + cb1];
                float b2 = b[bk + cb2];
                float b3 = b[bk + cb3];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
        }

        long cBase = (long)batch * p.CBatchStride;
        StoreBlockRow(c, bias, pre, p, cBase, i0, j0, c00, c01, c02, c03);
        StoreBlockRow(c, bias, pre, p, cBase, i0 + 1, j0, c10, c11, c12, c13);
        StoreBlockRow(c, bias, pre, p, cBase, i0 + 2, j0, c20, c21, c22, c23);
        StoreBlockRow(c, bias, pre, p, cBase, i0 + 3, j0, c30, c31, c32, c33);
    }

    // One row of a 4×4 block: columns j0 to j0 + 3.
    private static void StoreBlockRow(ArrayView<float> c, ArrayView<float> bias, ArrayView<float> pre, GemmDims p,
        long cBase, int row, int j0, float v0, float v1, float v2, float v3)
    {
        if (row >= p.M)
        {
            return;
        }

        long rowBase = cBase + ((long)row * p.N);
        StoreOne(c, bias, pre, p, rowBase, j0, v0);
        StoreOne(c, bias, pre, p, rowBase, j0 + 1, v1);
        StoreOne(c, bias, pre, p, rowBase, j0 + 2, v2);
        StoreOne(c, bias, pre, p, rowBase, j0 + 3, v3);
    }

    // One row of a thread's 4×4 block: columns j0, j0 + 16, j0 + 32, j0 + 48.
    private static void Store(ArrayView<float> c, ArrayView<float> bias, ArrayView<float> pre, GemmDims p,
        long cBase, int row, int j0, float v0, float v1, float v2, float v3)
    {
        if (row >= p.M)
        {
            return;
        }

        long rowBase = cBase + ((long)row * p.N);
        StoreOne(c, bias, pre, p, rowBase, j0, v0);
        StoreOne(c, bias, pre, p, rowBase, j0 + 16, v1);
        StoreOne(c, bias, pre, p, rowBase, j0 + 32, v2);
        StoreOne(c, bias, pre, p, rowBase, j0 + 48, v3);
    }

    // c = act(alpha·acc + beta·c + bias); beta = 0 never reads c, which may hold NaN.
    private static void StoreOne(ArrayView<float> c, ArrayView<float> bias, ArrayView<float> pre, GemmDims p, long rowBase, int col, float acc)
    {
        if (col >= p.N)
        {
            return;
        }

        long i = rowBase + col;
        float v = p.Alpha * acc;
        if (p.Beta != 0f)
        {
            v += p.Beta * c[i];
        }

        if (p.HasBias != 0)
        {
            v += bias[col];
        }

        if (p.HasPre != 0)
        {
            pre[i] = v;
        }

        if (p.Activation != 0)
        {
            v = Gelu.Value(v, p.Activation - 1);
        }

        c[i] = v;
    }
}

/// <summary>Which ILGPU kernel <see cref="Gemm"/> launches.</summary>
internal enum GemmKernel
{
    /// <summary>The tiled kernel on GPUs and for tiny problems on ILGPU's CPU accelerator; the per-thread kernel for the rest there.</summary>
    Auto,

    /// <summary>Groups of 256 threads with shared-memory tiles and barriers: the GPU kernel.</summary>
    Tiled,

    /// <summary>One thread per 4×4 block of c, no shared memory or barriers: fast on ILGPU's CPU accelerator.</summary>
    PerThread,
}

/// <summary>
/// A constant right operand of <see cref="Gemm"/> (a weight <c>b [k, n]</c>, or <c>[n, k]</c> transposed) with, on the
/// <c>cpu</c> device, its strips packed once for the micro-kernel, in pinned memory owned here: multiplying by it
/// (<see cref="Gemm.ForwardPacked"/>) skips the packing of b that every plain call does. Made by
/// <see cref="Gemm.Prepack"/>; on ILGPU devices it holds only the source.
/// </summary>
/// <remarks>The packed copy is taken once: later changes to <see cref="Source"/> are not seen by the CPU path.</remarks>
public sealed unsafe class PackedWeight : IDisposable
{
    private float[]? data;

    internal PackedWeight(Tensor<float> source, bool transposed)
    {
        Source = source;
        Transposed = transposed;
        K = transposed ? source.Shape[1] : source.Shape[0];
        N = transposed ? source.Shape[0] : source.Shape[1];
        Isa = GemmCpu.DefaultIsa;
        if (source.Device is CpuDevice && K > 0 && N > 0)
        {
            int nr = GemmCpu.TileOf(Isa).Nr;
            long length = (long)K * ((N + nr - 1) / nr * nr);
            data = GC.AllocateUninitializedArray<float>(checked((int)(length + 16)), pinned: true);
            nint address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(data));
            Strips = (float*)((address + 63) & ~(nint)63);
            GemmCpu.PackWhole(source.HostSpan, K, N, transposed, Isa, Strips);
        }
    }

    /// <summary>The weight as given; ILGPU devices and the CPU's unpacked paths read it.</summary>
    public Tensor<float> Source { get; }

    /// <summary>True when <see cref="Source"/> is <c>[n, k]</c> (used as its transpose).</summary>
    public bool Transposed { get; }

    /// <summary>Rows of op(b).</summary>
    public int K { get; }

    /// <summary>Columns of op(b).</summary>
    public int N { get; }

    /// <summary>The micro-kernel the strips are laid out for.</summary>
    internal GemmIsa Isa { get; }

    /// <summary>The packed strips, or null (nothing packed: not a CPU tensor, empty, or disposed).</summary>
    internal float* Strips { get; private set; }

    /// <summary>True once <see cref="Dispose"/> has run.</summary>
    public bool IsDisposed { get; private set; }

    /// <summary>Releases the packed strips (not <see cref="Source"/>).</summary>
    public void Dispose()
    {
        IsDisposed = true;
        Strips = null;
        data = null;
    }
}

/// <summary>
/// One GEMM problem, as both backends run it: <c>c_b = act(alpha·Σ_r op(a_{b,r})·op(b_{b,r}) + beta·c_b + bias)</c>
/// for <c>b</c> &lt; <see cref="Batch"/> and <c>r</c> &lt; <see cref="Reduce"/>. Stored <c>a</c> is <c>[m, k]</c>
/// (<c>[k, m]</c> when transposed), <c>b</c> is <c>[k, n]</c> (<c>[n, k]</c>), <c>c</c> is <c>[m, n]</c>, all dense.
/// Passed to the ILGPU kernel as it is.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GemmDims
{
    public int M;
    public int N;
    public int K;
    public int TransA;
    public int TransB;
    public int Batch;
    public int ABatchStride;
    public int BBatchStride;
    public int CBatchStride;

    /// <summary>Products summed into each output: more than 1 only for the gradient of an operand shared by all batches.</summary>
    public int Reduce;
    public int AReduceStride;
    public int BReduceStride;
    public float Alpha;
    public float Beta;

    /// <summary>0 none, 1 exact GELU, 2 tanh GELU (the <see cref="Epilogue"/> values).</summary>
    public int Activation;
    public int HasBias;
    public int HasPre;
    public int MTiles;
    public int NTiles;
}
