using System.Runtime.InteropServices;

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
public static partial class Gemm
{
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
                Execute(args.Backend, b, dc, da, null, null, d, GemmCpu.DefaultIsa);
            }
            else
            {
                Execute(args.Backend, dc, b, da, null, null, d, GemmCpu.DefaultIsa);
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
                Execute(args.Backend, dc, a, db, null, null, d, GemmCpu.DefaultIsa);
            }
            else
            {
                Execute(args.Backend, a, dc, db, null, null, d, GemmCpu.DefaultIsa);
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
        var args = new OpArgs("Gemm.Prepack").Add("b", b).RequireRank("b", b, 2);
        var weight = new PackedWeight(b, transposeB);
        args.Backend.GemmPrepack(weight);
        return weight;
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
        Execute(args.Backend, a, b, c, bias, preActivation, d, isa, packed, kernel);
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

    private static void Execute(Backend backend, Tensor<float> a, Tensor<float> b, Tensor<float> c,
        Tensor<float>? bias, Tensor<float>? pre, GemmDims d, GemmIsa isa, PackedWeight? packed = null, GemmKernel kernel = GemmKernel.Auto)
    {
        if (d.M == 0 || d.N == 0 || d.Batch == 0)
        {
            return;
        }

        backend.GemmRun(a, b, c, bias, pre, d, isa, packed, kernel);
    }

    #region LRP

    /// <summary>
    /// The ε-rule of LRP through a linear layer <c>c = a·op(b) (+ bias)</c>, in signal form (relevance = tensor ⊙ signal):
    /// <c>R_a = a ⊙ op(b)ᵀ(R_c / (c + ε·sign c))</c> with <c>R_c = c ⊙ dc</c>, so <c>da = (dc ⊙ c / (c + ε·sign c))·op(b)ᵀ</c>.
    /// The bias and ε absorb their share. Linear form only: <c>a [..., k]</c>, <c>b [k, n]</c> (<c>[n, k]</c> with
    /// <paramref name="transposeB"/>), <c>c [..., n]</c>, the output of the forward pass, bias included.
    /// </summary>
    /// <param name="a">The layer's input.</param>
    /// <param name="b">The weight.</param>
    /// <param name="c">The layer's output (the forward's, bias included).</param>
    /// <param name="dc">The signal at the output, shaped like <paramref name="c"/>.</param>
    /// <param name="da">Receives the signal at the input, shaped like <paramref name="a"/>.</param>
    /// <param name="epsilon">The stabiliser ε, positive.</param>
    /// <param name="scratch">Shaped like <paramref name="c"/>: holds <c>dc ⊙ c / (c + ε·sign c)</c>; may be <paramref name="dc"/>, which is then overwritten.</param>
    /// <param name="transposeB">As in the forward call.</param>
    /// <param name="accumulate">Add into <paramref name="da"/> instead of overwriting it.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, misshaped or aliased, or ε is not positive and finite.</exception>
    public static void Relevance(Tensor<float> a, Tensor<float> b, Tensor<float> c, Tensor<float> dc, Tensor<float> da,
        float epsilon, Tensor<float> scratch, bool transposeB = false, bool accumulate = false)
    {
        var args = new OpArgs("Gemm.Relevance").Add("a", a).Add("b", b).Add("c", c).Add("dc", dc).Add("da", da).Add("scratch", scratch)
            .Require(b.Shape.Rank == 2, "b must be a [k, n] weight (the linear form)")
            .Require(float.IsFinite(epsilon) && epsilon > 0, $"epsilon must be positive and finite (got {epsilon})");
        var shape = Resolve(args, a, b, transposeA: false, transposeB);
        RequireOutput(args, "c", c, shape, a, b);
        RequireOutput(args, "dc", dc, shape, a, b);
        RequireOutput(args, "scratch", scratch, shape, a, b);
        args.RequireShape("da", da, a.Shape.Dims)
            .Require(!ReferenceEquals(da, a) && !ReferenceEquals(da, b) && !ReferenceEquals(da, c) && !ReferenceEquals(da, dc) && !ReferenceEquals(da, scratch),
                "da must not be a, b, c, dc or scratch")
            .Require(!ReferenceEquals(scratch, a) && !ReferenceEquals(scratch, b) && !ReferenceEquals(scratch, c), "scratch must not be a, b or c");
        Elementwise.EpsilonShare(dc, c, scratch, epsilon);
        Backward(a, b, scratch, da, null, null, transposeB: transposeB, accumulate: accumulate);
    }

    #endregion
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
public sealed unsafe partial class PackedWeight : IDisposable
{
    private float[]? data;

    // The strips are packed by the backend that reads them (Backend.GemmPrepack).
    internal PackedWeight(Tensor<float> source, bool transposed)
    {
        Source = source;
        Transposed = transposed;
        K = transposed ? source.Shape[1] : source.Shape[0];
        N = transposed ? source.Shape[0] : source.Shape[1];
        Isa = GemmCpu.DefaultIsa;
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

/// <summary>GEMM's entry points on each backend (Gemm.Cpu.cs, Gemm.Ilgpu.cs).</summary>
internal abstract partial class Backend
{
    /// <summary>
    /// One GEMM problem <paramref name="d"/> (not empty: m, n and the batch count are positive), operands validated;
    /// <paramref name="isa"/> and <paramref name="packed"/> choose the CPU micro-kernel and strips, <paramref name="kernel"/> the ILGPU kernel.
    /// </summary>
    internal abstract void GemmRun(Tensor<float> a, Tensor<float> b, Tensor<float> c, Tensor<float>? bias, Tensor<float>? pre,
        GemmDims d, GemmIsa isa, PackedWeight? packed, GemmKernel kernel);

    /// <summary>Packs <paramref name="weight"/>'s source for this backend's GEMM, where it packs at all.</summary>
    internal abstract void GemmPrepack(PackedWeight weight);
}
