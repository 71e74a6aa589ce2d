using System.Globalization;
using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="Gemm"/>: both operand forms, every transpose combination, broadcast
/// batches, the fused epilogues, alpha and beta, k = 0, shapes that fill no tile of either backend and
/// k large enough to be blocked on the CPU; the backward pass against float64 adjoints and, once,
/// against finite differences of the float64 forward.
/// </summary>
public sealed class GemmCases : IOpCaseSource
{
    private static readonly int[] LargeK = [257, 600];

    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        var sizes = TestData.Sizes;

        // Plain products over a grid of m × n, k and the transposes rotating so every pair meets each.
        for (int i = 0; i < sizes.Length; i++)
        {
            for (int j = 0; j < sizes.Length; j++)
            {
                int m = sizes[i];
                int n = sizes[j];
                int k = sizes[(i + (2 * j)) % sizes.Length];
                int t = (i + j) % 4;
                yield return Plain(m, k, n, (t & 1) != 0, (t & 2) != 0);
            }
        }

        // Every transpose at shapes that need edge tiles everywhere and k blocks on the CPU.
        foreach (var (m, k, n) in new[] { (3, 17, 1), (17, 3, 17), (7, 130, 67), (67, 257, 130), (130, 600, 67), (1030, 65, 67), (33, 65, 900), (19, 1024, 40) })
        {
            for (int t = 0; t < 4; t++)
            {
                yield return Plain(m, k, n, (t & 1) != 0, (t & 2) != 0);
            }
        }

        // Fused epilogues: bias, both GELU forms with the pre-activation saved, through each CPU path
        // (direct rows, direct columns, packed) and both operand forms.
        foreach (var (m, k, n) in new[] { (17, 17, 17), (1, 33, 130), (5, 65, 67), (130, 65, 3), (67, 600, 65), (3, 3, 1) })
        {
            foreach (var epilogue in new[] { Epilogue.None, Epilogue.GeluErf, Epilogue.GeluTanh })
            {
                bool tb = epilogue == Epilogue.GeluTanh;
                yield return Forward(new Spec([m, k], tb ? [n, k] : [k, n], false, tb) { Bias = true, Epilogue = epilogue, Pre = epilogue != Epilogue.None });
            }
        }

        // alpha and beta: beta = 0 ignores a NaN-poisoned c; beta ≠ 0 reads a pre-filled c.
        foreach (var (m, k, n) in new[] { (3, 17, 17), (65, 130, 67), (1, 600, 33) })
        {
            yield return Forward(new Spec([m, k], [k, n], false, false) { Alpha = -0.5f });
            yield return Forward(new Spec([m, k], [k, n], false, false) { Beta = 1f });
            yield return Forward(new Spec([k, m], [n, k], true, true) { Alpha = 2f, Beta = -0.75f, Bias = true, Epilogue = Epilogue.GeluErf, Pre = true });
            yield return Forward(new Spec([m, k], [k, n], false, false) { Beta = 0.5f, Bias = true, Epilogue = Epilogue.GeluTanh, Pre = true, Seed = 7 });
        }

        // k = 0: c = act(beta·c + bias), with and without the old c.
        foreach (var (m, n) in new[] { (3, 17), (67, 130) })
        {
            yield return Forward(new Spec([m, 0], [0, n], false, false) { Bias = true, Epilogue = Epilogue.GeluErf, Pre = true });
            yield return Forward(new Spec([m, 0], [0, n], false, false) { Beta = 0.7f, Bias = true, Epilogue = Epilogue.GeluTanh });
            yield return Forward(new Spec([0, m], [n, 0], true, true) { Beta = 2f });
        }

        // Empty outputs do nothing.
        yield return Forward(new Spec([0, 5], [5, 3], false, false) { Bias = true });
        yield return Forward(new Spec([4, 5], [5, 0], false, false));
        yield return Forward(new Spec([0, 3, 5], [0, 5, 2], false, false));

        // Batched form: every transpose, broadcast operands, several batch dimensions, and the
        // linear form with leading dimensions (a [..., k]).
        foreach (var (batch, m, k, n) in new[] { (2, 3, 17, 5), (3, 17, 3, 17), (5, 33, 65, 67), (3, 130, 257, 33) })
        {
            for (int t = 0; t < 4; t++)
            {
                bool ta = (t & 1) != 0;
                bool tb = (t & 2) != 0;
                int[] a = ta ? [k, m] : [m, k];
                int[] b = tb ? [n, k] : [k, n];
                yield return Forward(new Spec([batch, .. a], [batch, .. b], ta, tb) { Bias = t == 3, Epilogue = t == 3 ? Epilogue.GeluErf : Epilogue.None, Pre = t == 3 });
                yield return Forward(new Spec(a, [batch, .. b], ta, tb));
                if (ta)
                {
                    yield return Forward(new Spec([batch, .. a], b, ta, tb) { Beta = 1f });
                }
            }

            yield return Forward(new Spec([batch, 2, m, k], [batch, 2, k, n], false, false));
            yield return Forward(new Spec([batch, 2, m, k], [n, k], false, true) { Bias = true });
        }

        // Attention-sized heads: many small products, run in parallel over the batch on the CPU.
        yield return Forward(new Spec([12, 128, 32], [12, 128, 32], false, true) { Alpha = 0.17677669f });
        yield return Forward(new Spec([12, 128, 128], [12, 128, 32], false, false));

        // The Vector256 micro-kernel (the fallback where AVX-512 is absent), forced on the CPU.
        foreach (var (m, k, n) in new[] { (17, 3, 17), (67, 600, 130), (130, 257, 67), (13, 33, 19) })
        {
            for (int t = 0; t < 4; t++)
            {
                bool ta = (t & 1) != 0;
                bool tb = (t & 2) != 0;
                yield return Forward(new Spec(ta ? [k, m] : [m, k], tb ? [n, k] : [k, n], ta, tb)
                {
                    Isa = GemmIsa.Vector256, Bias = t >= 2, Epilogue = t == 3 ? Epilogue.GeluTanh : Epilogue.None, Pre = t == 3, Beta = t == 1 ? 1f : 0f,
                });
            }
        }

        // Weights packed once (Gemm.Prepack): several k-blocks, n not a multiple of the strip width, too few
        // rows for the packed path (which then reads the source), leading dimensions, every epilogue, beta, a
        // transposed weight, and the Vector256 micro-kernel (whose strips differ, so the source is packed per call).
        foreach (var (m, k, n) in new[] { (130, 600, 67), (67, 1100, 33), (5, 65, 130), (33, 17, 1), (17, 17, 17), (129, 384, 1152) })
        {
            yield return Forward(new Spec([m, k], [k, n], false, false) { Packed = true, Bias = true });
            yield return Forward(new Spec([m, k], [n, k], false, true) { Packed = true, Bias = true, Epilogue = Epilogue.GeluErf, Pre = true });
        }

        // One to four rows (decoding): four-row dot blocks against an [out, in] weight with ragged k and n, and
        // k·n past the size at which few-row products split their columns over the workers.
        for (int m = 1; m <= 4; m++)
        {
            foreach (var (k, n) in new[] { (19, 7), (257, 259), (33, 2050) })
            {
                yield return Forward(new Spec([m, k], [n, k], false, true) { Bias = m % 2 == 1, Epilogue = m == 3 ? Epilogue.GeluTanh : Epilogue.None, Pre = m == 3 });
                yield return Forward(new Spec([m, k], [k, n], false, false) { Packed = m >= 3, Bias = true, Epilogue = m == 2 ? Epilogue.GeluErf : Epilogue.None, Pre = m == 2 });
                yield return Forward(new Spec([m, k], [n, k], false, true) { Packed = true, Alpha = -0.5f, Beta = m == 4 ? 0.75f : 0f, Bias = m != 1, Seed = m });
            }
        }

        yield return Forward(new Spec([2, 33, 65], [65, 130], false, false) { Packed = true, Epilogue = Epilogue.GeluTanh, Alpha = 0.5f, Beta = 1f, Bias = true });
        yield return Forward(new Spec([67, 257], [257, 130], false, false) { Packed = true, Isa = GemmIsa.Vector256, Bias = true, Epilogue = Epilogue.GeluErf });

        // Each ILGPU kernel forced (tiled with barriers; one thread per 4×4 block), at shapes the simulator runs
        // quickly: every transpose, batches with a broadcast operand, epilogues, beta and an empty sum over k.
        foreach (var kernel in new[] { GemmKernel.Tiled, GemmKernel.PerThread })
        {
            for (int t = 0; t < 4; t++)
            {
                bool ta = (t & 1) != 0;
                bool tb = (t & 2) != 0;
                yield return Forward(new Spec(ta ? [17, 13] : [13, 17], tb ? [6, 17] : [17, 6], ta, tb) { Kernel = kernel, Bias = t >= 2, Epilogue = t == 3 ? Epilogue.GeluErf : Epilogue.None, Pre = t == 3 });
            }

            yield return Forward(new Spec([3, 5, 9], [9, 7], false, false) { Kernel = kernel, Beta = 0.5f, Epilogue = Epilogue.GeluTanh, Bias = true });
            yield return Forward(new Spec([3, 9, 5], [3, 7, 9], true, true) { Kernel = kernel, Alpha = -1.5f });
            yield return Forward(new Spec([4, 0], [0, 5], false, false) { Kernel = kernel, Beta = 2f, Bias = true });
            yield return Forward(new Spec([70, 17], [17, 66], false, false) { Kernel = kernel, Bias = true, Tiny = true });
        }

        // The tiled kernel's 16-byte loads (every row, batch and offset a multiple of 4 floats) against its scalar
        // loads (the same shapes one float into their buffers), every transpose; then split-K (one output tile,
        // long k: the splits' sums reduced in a second pass with the epilogue), also with batches, a broadcast
        // operand and odd k. Small enough for the simulator.
        for (int t = 0; t < 4; t++)
        {
            bool ta = (t & 1) != 0;
            bool tb = (t & 2) != 0;
            int[] a = ta ? [16, 12] : [12, 16];
            int[] b = tb ? [20, 16] : [16, 20];
            yield return Forward(new Spec(a, b, ta, tb) { Bias = t >= 2, Epilogue = t == 3 ? Epilogue.GeluTanh : Epilogue.None, Tiny = true });
            yield return Forward(new Spec(a, b, ta, tb) { Offset = 1, Beta = t == 1 ? 0.5f : 0f, Tiny = true });
            yield return Forward(new Spec(ta ? [264, 3] : [3, 264], tb ? [8, 264] : [264, 8], ta, tb)
            {
                Bias = t != 1, Epilogue = t == 2 ? Epilogue.GeluErf : Epilogue.None, Pre = t == 2, Beta = t == 3 ? -1f : 0f, Alpha = t == 0 ? 0.5f : 1f, Tiny = true,
            });
        }

        yield return Forward(new Spec([3, 259], [259, 5], false, false) { Bias = true, Tiny = true });
        yield return Forward(new Spec([2, 4, 272], [272, 4], false, false) { Tiny = true });
        yield return Forward(new Spec([2, 272, 4], [2, 4, 272], true, true) { Beta = 1f, Tiny = true });
        yield return Forward(new Spec([4, 520], [520, 4], false, false) { Offset = 1, Tiny = true });

        // Edges of the 128×128 tiles and split-K at sizes beyond the simulator: just above one tile, several
        // tiles with aligned and unaligned rows, and narrow outputs with long k.
        foreach (var (m, k, n) in new[] { (129, 40, 260), (128, 64, 128), (257, 36, 131), (16, 2048, 16), (1, 1536, 384), (129, 1030, 33) })
        {
            for (int t = 0; t < 4; t++)
            {
                bool ta = (t & 1) != 0;
                bool tb = (t & 2) != 0;
                yield return Forward(new Spec(ta ? [k, m] : [m, k], tb ? [n, k] : [k, n], ta, tb) { Bias = t == 2, Epilogue = t == 2 ? Epilogue.GeluErf : Epilogue.None, Beta = t == 3 ? 1f : 0f });
            }
        }

        yield return Forward(new Spec([3, 64, 1024], [3, 1024, 64], false, false) { Offset = 2, Bias = true });

        foreach (var c in BackwardCases())
        {
            yield return c;
        }
    }

    private static IEnumerable<OpCase> BackwardCases()
    {
        // Linear form, both weight layouts, with leading dimensions and all three gradients.
        foreach (var (m, k, n) in new[] { (3, 17, 1), (17, 17, 17), (67, 130, 65), (130, 600, 33), (1, 65, 130) })
        {
            foreach (bool tb in new[] { false, true })
            {
                yield return Backward(new BackSpec([m, k], tb ? [n, k] : [k, n], false, tb));
            }
        }

        yield return Backward(new BackSpec([2, 3, 17], [17, 5], false, false) { Alpha = 0.5f });
        yield return Backward(new BackSpec([4, 33, 65], [67, 65], false, true) { Accumulate = true });

        // Batched form: every transpose, alone and with a broadcast operand (whose gradient sums the batches).
        foreach (var (batch, m, k, n) in new[] { (2, 3, 5, 17), (3, 17, 33, 65) })
        {
            for (int t = 0; t < 4; t++)
            {
                bool ta = (t & 1) != 0;
                bool tb = (t & 2) != 0;
                int[] a = ta ? [k, m] : [m, k];
                int[] b = tb ? [n, k] : [k, n];
                yield return Backward(new BackSpec([batch, .. a], [batch, .. b], ta, tb) { Alpha = t == 1 ? -2f : 1f });
                yield return Backward(new BackSpec(a, [batch, .. b], ta, tb) { Accumulate = t >= 2 });
                if (ta)
                {
                    yield return Backward(new BackSpec([batch, .. a], b, ta, tb) { Accumulate = t == 3 });
                }
            }
        }

        // Outputs may be left out; accumulate adds into the others.
        yield return Backward(new BackSpec([17, 3], [3, 17], false, false) { Accumulate = true, Outputs = 0b010 });
        yield return Backward(new BackSpec([17, 3], [17, 3], false, true) { Outputs = 0b101 });

        // The batch of a broadcast operand is empty: its gradient is an empty sum, zero.
        yield return Backward(new BackSpec([3, 5], [0, 5, 4], false, false));

        yield return new OpCase("Gemm.Backward", "finite differences a [2, 4, 3]ᵀ b [5, 4]ᵀ bias", true, FiniteDifferences);
    }

    private static OpCase Plain(int m, int k, int n, bool ta, bool tb)
    {
        return Forward(new Spec(ta ? [k, m] : [m, k], tb ? [n, k] : [k, n], ta, tb));
    }

    /// <summary>One forward case: operand shapes as stored, and the options.</summary>
    private sealed record Spec(int[] A, int[] B, bool TransposeA, bool TransposeB)
    {
        public bool Bias { get; init; }

        public Epilogue Epilogue { get; init; }

        public bool Pre { get; init; }

        public float Alpha { get; init; } = 1f;

        public float Beta { get; init; }

        public GemmIsa? Isa { get; init; }

        /// <summary>Multiply by the weight packed with <see cref="Gemm.Prepack"/> (linear form only).</summary>
        public bool Packed { get; init; }

        /// <summary>The ILGPU kernel to force (the CPU ignores it).</summary>
        public GemmKernel Kernel { get; init; }

        /// <summary>Places a and b this many floats into larger buffers (an offset that is not a multiple of 4 misaligns them).</summary>
        public int Offset { get; init; }

        /// <summary>Marks a case tiny for the simulator although its shape exceeds the usual limit.</summary>
        public bool Tiny { get; init; }

        public int Seed { get; init; } = 1;

        public string Describe()
        {
            var s = string.Create(CultureInfo.InvariantCulture,
                $"a {Fmt(A)}{(TransposeA ? "ᵀ" : string.Empty)} b {Fmt(B)}{(TransposeB ? "ᵀ" : string.Empty)}");
            if (Bias)
            {
                s += " bias";
            }

            if (Epilogue != Epilogue.None)
            {
                s += " " + Epilogue;
            }

            if (Pre)
            {
                s += " pre";
            }

            if (Alpha != 1f || Beta != 0f)
            {
                s += string.Create(CultureInfo.InvariantCulture, $" alpha={Alpha} beta={Beta}");
            }

            if (Isa is { } isa)
            {
                s += " " + isa;
            }

            if (Packed)
            {
                s += " packed";
            }

            if (Kernel != GemmKernel.Auto)
            {
                s += " kernel=" + Kernel;
            }

            if (Offset != 0)
            {
                s += string.Create(CultureInfo.InvariantCulture, $" offset={Offset}");
            }

            if (Seed != 1)
            {
                s += string.Create(CultureInfo.InvariantCulture, $" seed={Seed}");
            }

            return s;
        }
    }

    /// <summary>One backward case.</summary>
    private sealed record BackSpec(int[] A, int[] B, bool TransposeA, bool TransposeB)
    {
        public float Alpha { get; init; } = 1f;

        public bool Accumulate { get; init; }

        /// <summary>Which gradients are requested: bit 0 da, bit 1 db, bit 2 dbias.</summary>
        public int Outputs { get; init; } = 0b111;

        public string Describe()
        {
            var s = string.Create(CultureInfo.InvariantCulture,
                $"a {Fmt(A)}{(TransposeA ? "ᵀ" : string.Empty)} b {Fmt(B)}{(TransposeB ? "ᵀ" : string.Empty)}");
            if (Alpha != 1f)
            {
                s += string.Create(CultureInfo.InvariantCulture, $" alpha={Alpha}");
            }

            if (Accumulate)
            {
                s += " accumulate";
            }

            if (Outputs != 0b111)
            {
                s += " outputs=" + ((Outputs & 1) != 0 ? "da" : string.Empty) + ((Outputs & 2) != 0 ? "db" : string.Empty) + ((Outputs & 4) != 0 ? "dbias" : string.Empty);
            }

            return s;
        }
    }

    /// <summary>
    /// The product as the documentation states it, worked out again here: which element of a and b
    /// each op(a)[batch, i, p] and op(b)[batch, p, j] is, and the shape of c.
    /// </summary>
    private sealed class Layout
    {
        public Layout(int[] a, int[] b, bool ta, bool tb)
        {
            if (b.Length == 2 && !ta)
            {
                K = a[^1];
                N = tb ? b[0] : b[1];
                M = a[..^1].Aggregate(1, (x, y) => x * y);
                Batch = 1;
                CShape = [.. a[..^1], N];
                AIndex = (_, i, p) => (i * K) + p;
            }
            else
            {
                M = ta ? a[^1] : a[^2];
                K = ta ? a[^2] : a[^1];
                N = tb ? b[^2] : b[^1];
                int[] lead = a.Length > 2 ? a[..^2] : b[..^2];
                Batch = lead.Aggregate(1, (x, y) => x * y);
                CShape = [.. lead, M, N];
                int aStride = a.Length > 2 ? M * K : 0;
                AIndex = ta ? (bi, i, p) => (bi * aStride) + (p * M) + i : (bi, i, p) => (bi * aStride) + (i * K) + p;
            }

            int bStride = b.Length > 2 ? K * N : 0;
            int n = N;
            int k = K;
            BIndex = tb ? (bi, p, j) => (bi * bStride) + (j * k) + p : (bi, p, j) => (bi * bStride) + (p * n) + j;
        }

        public int Batch { get; }

        public int M { get; }

        public int N { get; }

        public int K { get; }

        public int[] CShape { get; }

        public Func<int, int, int, int> AIndex { get; }

        public Func<int, int, int, int> BIndex { get; }

        public int CIndex(int bi, int i, int j) => (((bi * M) + i) * N) + j;

        public int CLength => Batch * M * N;
    }

    private static OpCase Forward(Spec s)
    {
        var layout = new Layout(s.A, s.B, s.TransposeA, s.TransposeB);
        bool tiny = s.Tiny || (layout.M <= 17 && layout.N <= 17 && layout.K <= 17 && layout.Batch <= 6);
        return new OpCase("Gemm.Forward", s.Describe(), tiny, device => RunForward(device, s, layout));
    }

    private static void RunForward(Device device, Spec s, Layout l)
    {
        float[] a = TestData.Uniform(s.Seed, s.A.Aggregate(1, (x, y) => x * y));
        float[] b = TestData.Uniform(s.Seed + 1, s.B.Aggregate(1, (x, y) => x * y));
        float[] bias = TestData.Uniform(s.Seed + 2, l.N);
        float[] c0 = TestData.Uniform(s.Seed + 3, l.CLength);
        using var pa = s.Offset > 0 ? Upload(device, [.. new float[s.Offset], .. a], s.Offset + a.Length) : null;
        using var pb = s.Offset > 0 ? Upload(device, [.. new float[s.Offset], .. b], s.Offset + b.Length) : null;
        using var ta = pa?.Slice(s.Offset, s.A) ?? Upload(device, a, s.A);
        using var tb = pb?.Slice(s.Offset, s.B) ?? Upload(device, b, s.B);
        using var tbias = s.Bias ? Upload(device, bias, l.N) : null;
        using var tc = s.Beta == 0f ? Poisoned(device, l.CShape) : Upload(device, c0, l.CShape);
        using var tpre = s.Pre ? Poisoned(device, l.CShape) : null;
        if (s.Packed)
        {
            using var packed = Gemm.Prepack(tb, s.TransposeB);
            if (s.Isa is { } packedIsa)
            {
                Gemm.ForwardWith(ta, tb, tc, s.TransposeA, s.TransposeB, tbias, s.Epilogue, s.Alpha, s.Beta, tpre, packedIsa, packed);
            }
            else
            {
                Gemm.ForwardPacked(ta, packed, tc, tbias, s.Epilogue, s.Alpha, s.Beta, tpre);
            }
        }
        else if (s.Isa is not null || s.Kernel != GemmKernel.Auto)
        {
            Gemm.ForwardWith(ta, tb, tc, s.TransposeA, s.TransposeB, tbias, s.Epilogue, s.Alpha, s.Beta, tpre, s.Isa ?? GemmCpu.DefaultIsa, kernel: s.Kernel);
        }
        else
        {
            Gemm.Forward(ta, tb, tc, s.TransposeA, s.TransposeB, tbias, s.Epilogue, s.Alpha, s.Beta, tpre);
        }

        var expectedPre = new double[l.CLength];
        var expected = new double[l.CLength];
        for (int bi = 0; bi < l.Batch; bi++)
        {
            for (int i = 0; i < l.M; i++)
            {
                for (int j = 0; j < l.N; j++)
                {
                    double sum = 0;
                    for (int p = 0; p < l.K; p++)
                    {
                        sum += (double)a[l.AIndex(bi, i, p)] * b[l.BIndex(bi, p, j)];
                    }

                    int ci = l.CIndex(bi, i, j);
                    double v = (s.Alpha * sum) + (s.Beta == 0f ? 0 : (double)s.Beta * c0[ci]) + (s.Bias ? bias[j] : 0);
                    expectedPre[ci] = v;
                    expected[ci] = s.Epilogue switch
                    {
                        Epilogue.GeluErf => ReferenceMath.GeluErf(v),
                        Epilogue.GeluTanh => ReferenceMath.GeluTanh(v),
                        _ => v,
                    };
                }
            }
        }

        Compare.Close(Download(tc), expected, Tolerances.Gemm, "c");
        if (tpre is not null)
        {
            Compare.Close(Download(tpre), expectedPre, Tolerances.Gemm, "preActivation");
        }
    }

    private static OpCase Backward(BackSpec s)
    {
        var layout = new Layout(s.A, s.B, s.TransposeA, s.TransposeB);
        bool tiny = layout.M <= 17 && layout.N <= 17 && layout.K <= 17 && layout.Batch <= 6;
        return new OpCase("Gemm.Backward", s.Describe(), tiny, device => RunBackward(device, s, layout));
    }

    private static void RunBackward(Device device, BackSpec s, Layout l)
    {
        int aLength = s.A.Aggregate(1, (x, y) => x * y);
        int bLength = s.B.Aggregate(1, (x, y) => x * y);
        float[] a = TestData.Uniform(31, aLength);
        float[] b = TestData.Uniform(32, bLength);
        float[] dc = TestData.Uniform(33, l.CLength);
        float[] da0 = TestData.Uniform(34, aLength);
        float[] db0 = TestData.Uniform(35, bLength);
        float[] dbias0 = TestData.Uniform(36, l.N);
        using var ta = Upload(device, a, s.A);
        using var tb = Upload(device, b, s.B);
        using var tdc = Upload(device, dc, l.CShape);
        using var tda = (s.Outputs & 1) == 0 ? null : s.Accumulate ? Upload(device, da0, s.A) : Poisoned(device, s.A);
        using var tdb = (s.Outputs & 2) == 0 ? null : s.Accumulate ? Upload(device, db0, s.B) : Poisoned(device, s.B);
        using var tdbias = (s.Outputs & 4) == 0 ? null : s.Accumulate ? Upload(device, dbias0, l.N) : Poisoned(device, l.N);
        Gemm.Backward(ta, tb, tdc, tda, tdb, tdbias, s.TransposeA, s.TransposeB, s.Alpha, s.Accumulate);

        // The adjoint of c[bi, i, j] = alpha·Σ_p a(bi, i, p)·b(bi, p, j) + bias[j], accumulated element by element.
        var da = s.Accumulate ? TestData.ToDouble(da0) : new double[aLength];
        var db = s.Accumulate ? TestData.ToDouble(db0) : new double[bLength];
        var dbias = s.Accumulate ? TestData.ToDouble(dbias0) : new double[l.N];
        for (int bi = 0; bi < l.Batch; bi++)
        {
            for (int i = 0; i < l.M; i++)
            {
                for (int j = 0; j < l.N; j++)
                {
                    double g = dc[l.CIndex(bi, i, j)];
                    dbias[j] += g;
                    for (int p = 0; p < l.K; p++)
                    {
                        int ai = l.AIndex(bi, i, p);
                        int bj = l.BIndex(bi, p, j);
                        da[ai] += s.Alpha * g * b[bj];
                        db[bj] += s.Alpha * g * a[ai];
                    }
                }
            }
        }

        if (tda is not null)
        {
            Compare.Close(Download(tda), da, Tolerances.Gemm, "da");
        }

        if (tdb is not null)
        {
            Compare.Close(Download(tdb), db, Tolerances.Gemm, "db");
        }

        if (tdbias is not null)
        {
            Compare.Close(Download(tdbias), dbias, Tolerances.Gemm, "dbias");
        }
    }

    // The gradients of L = Σ w ⊙ (alpha·op(a)·op(b) + bias) against central differences of a float64 forward.
    private static void FiniteDifferences(Device device)
    {
        int[] aShape = [2, 4, 3]; // transposed: op(a) is [2, 3, 4]
        int[] bShape = [5, 4];    // transposed and shared: op(b) is [4, 5]
        const float alpha = 0.75f;
        var l = new Layout(aShape, bShape, true, true);
        float[] a = TestData.Uniform(41, 24);
        float[] b = TestData.Uniform(42, 20);
        float[] bias = TestData.Uniform(43, 5);
        float[] w = TestData.Uniform(44, l.CLength);

        double Loss(double[] av, double[] bv, double[] biasv)
        {
            double loss = 0;
            for (int bi = 0; bi < l.Batch; bi++)
            {
                for (int i = 0; i < l.M; i++)
                {
                    for (int j = 0; j < l.N; j++)
                    {
                        double sum = 0;
                        for (int p = 0; p < l.K; p++)
                        {
                            sum += av[l.AIndex(bi, i, p)] * bv[l.BIndex(bi, p, j)];
                        }

                        loss += w[l.CIndex(bi, i, j)] * ((alpha * sum) + biasv[j]);
                    }
                }
            }

            return loss;
        }

        double[] Differences(double[] x, Func<double[], double> f)
        {
            const double h = 1e-3;
            var grad = new double[x.Length];
            for (int i = 0; i < x.Length; i++)
            {
                double keep = x[i];
                x[i] = keep + h;
                double up = f(x);
                x[i] = keep - h;
                double down = f(x);
                x[i] = keep;
                grad[i] = (up - down) / (2 * h);
            }

            return grad;
        }

        var ad = TestData.ToDouble(a);
        var bd = TestData.ToDouble(b);
        var biasd = TestData.ToDouble(bias);
        var expectedDa = Differences(ad, x => Loss(x, bd, biasd));
        var expectedDb = Differences(bd, x => Loss(ad, x, biasd));
        var expectedDbias = Differences(biasd, x => Loss(ad, bd, x));

        using var ta = Upload(device, a, aShape);
        using var tb = Upload(device, b, bShape);
        using var tw = Upload(device, w, l.CShape);
        using var tda = Poisoned(device, aShape);
        using var tdb = Poisoned(device, bShape);
        using var tdbias = Poisoned(device, 5);
        Gemm.Backward(ta, tb, tw, tda, tdb, tdbias, transposeA: true, transposeB: true, alpha: alpha);
        Compare.Close(Download(tda), expectedDa, Tolerances.Gemm, "da vs finite differences");
        Compare.Close(Download(tdb), expectedDb, Tolerances.Gemm, "db vs finite differences");
        Compare.Close(Download(tdbias), expectedDbias, Tolerances.Gemm, "dbias vs finite differences");
    }

    // ILGPU has no view of an empty buffer, so empty tensors are allocated and read without copies.
    private static Tensor<float> Upload(Device device, float[] data, params int[] shape)
        => data.Length == 0 ? device.Allocate<float>(shape) : device.FromHost<float>(data, shape);

    private static Tensor<float> Poisoned(Device device, params int[] shape)
        => shape.Contains(0) ? device.Allocate<float>(shape) : TestData.Poisoned(device, shape);

    private static float[] Download(Tensor<float> tensor) => tensor.Length == 0 ? [] : tensor.ToArray();

    private static string Fmt(int[] shape) => "[" + string.Join(", ", shape) + "]";
}
