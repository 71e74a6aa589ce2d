using System.Runtime.Intrinsics;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Kernels;

/// <summary>
/// Element-wise ops: add, add a row vector, scale, scaled accumulate, multiply and tanh. Each has its
/// backward next to it; most backward passes are the forward ops themselves, as noted.
/// </summary>
public static class Elementwise
{
    /// <summary><c>y = a + b</c>, all of one shape. <paramref name="y"/> may be <paramref name="a"/> or <paramref name="b"/>.</summary>
    /// <remarks>Backward: <c>da = dy</c> and <c>db = dy</c>.</remarks>
    public static void Add(Tensor<float> a, Tensor<float> b, Tensor<float> y)
    {
        var args = new OpArgs("Elementwise.Add").Add("a", a).Add("b", b).Add("y", y)
            .Require(a.Shape == b.Shape && a.Shape == y.Shape, "a, b and y must have the same shape");
        int n = (int)y.Length;
        if (n == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Elementwise.Add", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(AddKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, a.View, b.View, y.View);
            }
        }
        else
        {
            TensorPrimitives.Add(a.HostSpan, b.HostSpan, y.HostSpan);
        }
    }

    /// <summary>
    /// <c>y[r, c] = x[r, c] + bias[c]</c>: adds a row vector to every row. <paramref name="y"/> may be <paramref name="x"/>.
    /// </summary>
    /// <remarks>Backward: <c>dx = dy</c>, and <c>dbias</c> is the column sum of <c>dy</c> (<see cref="Reduce.ColumnSum"/>).</remarks>
    public static void AddRowVector(Tensor<float> x, Tensor<float> bias, Tensor<float> y)
    {
        var args = new OpArgs("Elementwise.AddRowVector").Add("x", x).Add("bias", bias).Add("y", y)
            .Require(x.Shape == y.Shape, "x and y must have the same shape")
            .Require(x.Shape.Rank >= 1 && bias.Shape.Rank == 1 && bias.Length == x.Shape[-1], "bias must be [n] where n is x's last dimension");
        int n = (int)y.Length;
        int columns = (int)bias.Length;
        if (n == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Elementwise.AddRowVector", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(AddRowVectorKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, x.View, bias.View, y.View, columns);
            }
        }
        else
        {
            var xs = x.HostSpan;
            var ys = y.HostSpan;
            var bs = bias.HostSpan;
            for (int row = 0; row < n; row += columns)
            {
                TensorPrimitives.Add(xs.Slice(row, columns), bs, ys.Slice(row, columns));
            }
        }
    }

    /// <summary><c>y = alpha · x</c>. <paramref name="y"/> may be <paramref name="x"/>.</summary>
    /// <remarks>Backward: <c>dx = alpha · dy</c>, the same op.</remarks>
    public static void Scale(Tensor<float> x, float alpha, Tensor<float> y)
    {
        var args = new OpArgs("Elementwise.Scale").Add("x", x).Add("y", y)
            .Require(x.Shape == y.Shape, "x and y must have the same shape");
        int n = (int)y.Length;
        if (n == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Elementwise.Scale", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, float, ArrayView<float>>(ScaleKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, x.View, alpha, y.View);
            }
        }
        else
        {
            TensorPrimitives.Multiply(x.HostSpan, alpha, y.HostSpan);
        }
    }

    /// <summary><c>y += alpha · x</c>: accumulates a scaled tensor, as gradient sums need.</summary>
    /// <remarks>Backward: <c>dx = alpha · dy</c> and <c>dy</c> passes through.</remarks>
    public static void AddScaled(Tensor<float> y, float alpha, Tensor<float> x)
    {
        var args = new OpArgs("Elementwise.AddScaled").Add("y", y).Add("x", x)
            .Require(x.Shape == y.Shape, "x and y must have the same shape");
        int n = (int)y.Length;
        if (n == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Elementwise.AddScaled", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, float, ArrayView<float>>(AddScaledKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, y.View, alpha, x.View);
            }
        }
        else
        {
            var ys = y.HostSpan;
            TensorPrimitives.MultiplyAdd(x.HostSpan, alpha, ys, ys);
        }
    }

    /// <summary><c>y = a ⊙ b</c>, all of one shape. <paramref name="y"/> may be <paramref name="a"/> or <paramref name="b"/>.</summary>
    /// <remarks>Backward: <see cref="MultiplyBackward"/>.</remarks>
    public static void Multiply(Tensor<float> a, Tensor<float> b, Tensor<float> y)
    {
        var args = new OpArgs("Elementwise.Multiply").Add("a", a).Add("b", b).Add("y", y)
            .Require(a.Shape == b.Shape && a.Shape == y.Shape, "a, b and y must have the same shape");
        int n = (int)y.Length;
        if (n == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Elementwise.Multiply", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(MultiplyKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, a.View, b.View, y.View);
            }
        }
        else
        {
            TensorPrimitives.Multiply(a.HostSpan, b.HostSpan, y.HostSpan);
        }
    }

    /// <summary>Backward of <see cref="Multiply"/>: <c>da = dy ⊙ b</c>, <c>db = dy ⊙ a</c>; either output may be null.</summary>
    public static void MultiplyBackward(Tensor<float> dy, Tensor<float> a, Tensor<float> b, Tensor<float>? da, Tensor<float>? db)
    {
        new OpArgs("Elementwise.MultiplyBackward").Add("dy", dy).Add("a", a).Add("b", b).AddOptional("da", da).AddOptional("db", db)
            .Require(dy.Shape == a.Shape && dy.Shape == b.Shape, "dy, a and b must have the same shape")
            .Require(!ReferenceEquals(da, a) && !ReferenceEquals(db, b), "da must not be a, and db must not be b");
        if (da is not null)
        {
            Multiply(dy, b, da);
        }

        if (db is not null)
        {
            Multiply(dy, a, db);
        }
    }

    /// <summary><c>y = tanh(x)</c> (the BERT pooler's activation). <paramref name="y"/> may be <paramref name="x"/>.</summary>
    /// <remarks>Backward: <see cref="TanhBackward"/>.</remarks>
    public static void Tanh(Tensor<float> x, Tensor<float> y)
    {
        var args = new OpArgs("Elementwise.Tanh").Add("x", x).Add("y", y)
            .Require(x.Shape == y.Shape, "x and y must have the same shape");
        int n = (int)y.Length;
        if (n == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Elementwise.Tanh", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>>(TanhKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, x.View, y.View);
            }
        }
        else
        {
            TensorPrimitives.Tanh(x.HostSpan, y.HostSpan);
        }
    }

    /// <summary>Backward of <see cref="Tanh"/> from its output: <c>dx = dy ⊙ (1 − y²)</c>. <paramref name="dx"/> may be <paramref name="dy"/>.</summary>
    public static void TanhBackward(Tensor<float> y, Tensor<float> dy, Tensor<float> dx)
    {
        var args = new OpArgs("Elementwise.TanhBackward").Add("y", y).Add("dy", dy).Add("dx", dx)
            .Require(y.Shape == dy.Shape && y.Shape == dx.Shape, "y, dy and dx must have the same shape");
        int n = (int)y.Length;
        if (n == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Elementwise.TanhBackward", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>>(TanhBackwardKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, y.View, dy.View, dx.View);
            }
        }
        else
        {
            var ys = y.HostSpan;
            var gs = dy.HostSpan;
            var ds = dx.HostSpan;
            for (int i = 0; i < ys.Length; i++)
            {
                ds[i] = gs[i] * (1f - (ys[i] * ys[i]));
            }
        }
    }

    // y [n] = a [n] + b [n]
    private static void AddKernel(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[i] = a[i] + b[i];

    // y [rows, columns] = x [rows, columns] + bias [columns]
    private static void AddRowVectorKernel(Index1D i, ArrayView<float> x, ArrayView<float> bias, ArrayView<float> y, int columns)
        => y[i] = x[i] + bias[i % columns];

    private static void ScaleKernel(Index1D i, ArrayView<float> x, float alpha, ArrayView<float> y) => y[i] = alpha * x[i];

    private static void AddScaledKernel(Index1D i, ArrayView<float> y, float alpha, ArrayView<float> x) => y[i] += alpha * x[i];

    private static void TanhKernel(Index1D i, ArrayView<float> x, ArrayView<float> y) => y[i] = XMath.Tanh(x[i]);

    private static void TanhBackwardKernel(Index1D i, ArrayView<float> y, ArrayView<float> dy, ArrayView<float> dx)
        => dx[i] = dy[i] * (1f - (y[i] * y[i]));

    private static void MultiplyKernel(Index1D i, ArrayView<float> a, ArrayView<float> b, ArrayView<float> y) => y[i] = a[i] * b[i];

    #region LRP

    // LRP runs as a modified backward pass: the signal s at a tensor t carries the relevance R = t ⊙ s. Each
    // rule maps the signal at an op's output to the signal at its inputs.

    /// <summary>
    /// The ε-normalised share of LRP in signal form: <c>dx = dy ⊙ z / (operands·z + ε·sign z)</c>, sign 0 taken as +1.
    /// With relevance <c>R = z ⊙ dy</c> at an op's output <c>z</c>, <c>dx = R / (operands·z + ε·sign z)</c> is what the
    /// ε-rule (<paramref name="operands"/> = 1, a linear layer) or the uniform rule (2, a product of two operands)
    /// hands back to the inputs per unit of their contribution. <paramref name="dx"/> may be <paramref name="dy"/>.
    /// </summary>
    /// <exception cref="ArgumentException">Shapes differ, ε is not positive and finite, or operands is not 1 or 2.</exception>
    public static void EpsilonShare(Tensor<float> dy, Tensor<float> z, Tensor<float> dx, float epsilon, int operands = 1)
    {
        var args = new OpArgs("Elementwise.EpsilonShare").Add("dy", dy).Add("z", z).Add("dx", dx)
            .Require(dy.Shape == z.Shape && dy.Shape == dx.Shape, "dy, z and dx must have the same shape")
            .Require(float.IsFinite(epsilon) && epsilon > 0, $"epsilon must be positive and finite (got {epsilon})")
            .Require(operands is 1 or 2, $"operands must be 1 or 2 (got {operands})");
        int n = (int)dx.Length;
        if (n == 0)
        {
            return;
        }

        if (args.Device is IlgpuDevice gpu)
        {
            var kernel = gpu.GetKernel("Elementwise.EpsilonShare", static acc =>
                acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, float>(EpsilonShareKernel));
            lock (gpu.SyncRoot)
            {
                kernel(gpu.Accelerator.DefaultStream, n, dy.View, z.View, dx.View, epsilon, operands);
            }
        }
        else
        {
            EpsilonShareHost(dy.HostSpan, z.HostSpan, dx.HostSpan, epsilon, operands);
        }
    }

    /// <summary>
    /// AttnLRP's uniform rule through <c>y = a ⊙ b</c> (an element-wise gate), in signal form: each operand gets half
    /// of <c>R_y = y ⊙ dy</c>, ε-normalised by <c>2y</c>: <c>da = b ⊙ dy ⊙ y / (2y + ε·sign y)</c>, <c>db = a ⊙ dy ⊙ y / (2y + ε·sign y)</c>.
    /// Either output may be null.
    /// </summary>
    /// <exception cref="ArgumentException">Shapes differ, an output aliases an input, or ε is not positive and finite.</exception>
    public static void MultiplyRelevance(Tensor<float> dy, Tensor<float> a, Tensor<float> b, Tensor<float>? da, Tensor<float>? db, float epsilon)
    {
        var args = new OpArgs("Elementwise.MultiplyRelevance").Add("dy", dy).Add("a", a).Add("b", b).AddOptional("da", da).AddOptional("db", db)
            .Require(dy.Shape == a.Shape && dy.Shape == b.Shape, "dy, a and b must have the same shape")
            .Require((da is null || da.Shape == dy.Shape) && (db is null || db.Shape == dy.Shape), "da and db must have dy's shape")
            .Require(!Aliases(da, dy, a, b) && !Aliases(db, dy, a, b) && (da is null || !ReferenceEquals(da, db)), "da and db must be distinct from each other and from dy, a and b")
            .Require(float.IsFinite(epsilon) && epsilon > 0, $"epsilon must be positive and finite (got {epsilon})");
        int n = (int)dy.Length;
        if (n == 0)
        {
            return;
        }

        // da takes the other operand b, db takes a.
        foreach (var (output, forA) in new[] { (da, 1), (db, 0) })
        {
            if (output is null)
            {
                continue;
            }

            if (args.Device is IlgpuDevice gpu)
            {
                var kernel = gpu.GetKernel("Elementwise.MultiplyRelevance", static acc =>
                    acc.LoadAutoGroupedKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, float, int>(MultiplyRelevanceKernel));
                lock (gpu.SyncRoot)
                {
                    kernel(gpu.Accelerator.DefaultStream, n, dy.View, a.View, b.View, output.View, epsilon, forA);
                }
            }
            else
            {
                var g = dy.HostSpan;
                var x = a.HostSpan;
                var w = b.HostSpan;
                var d = output.HostSpan;
                for (int i = 0; i < n; i++)
                {
                    d[i] = (forA != 0 ? w[i] : x[i]) * Share(g[i], x[i] * w[i], epsilon, 2f);
                }
            }
        }
    }

    /// <summary><c>g·z / (operands·z + ε·sign z)</c> with sign 0 = +1; usable inside ILGPU kernels.</summary>
    internal static float Share(float g, float z, float epsilon, float operands)
    {
        return g * z / ((operands * z) + (z >= 0f ? epsilon : -epsilon));
    }

    private static bool Aliases(Tensor<float>? output, Tensor<float> dy, Tensor<float> a, Tensor<float> b)
        => output is not null && (ReferenceEquals(output, dy) || ReferenceEquals(output, a) || ReferenceEquals(output, b));

    // dx = dy ⊙ z / (k·z + ε·sign z) on the host, 16 lanes at a time; dx may alias dy.
    private static void EpsilonShareHost(ReadOnlySpan<float> dy, ReadOnlySpan<float> z, Span<float> dx, float epsilon, float operands)
    {
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var k = Vector512.Create(operands);
            var plus = Vector512.Create(epsilon);
            var minus = Vector512.Create(-epsilon);
            for (; i <= dx.Length - Vector512<float>.Count; i += Vector512<float>.Count)
            {
                var zv = Vector512.Create(z.Slice(i, Vector512<float>.Count));
                var e = Vector512.ConditionalSelect(Vector512.GreaterThanOrEqual(zv, Vector512<float>.Zero), plus, minus);
                (Vector512.Create(dy.Slice(i, Vector512<float>.Count)) * zv / ((k * zv) + e)).CopyTo(dx.Slice(i, Vector512<float>.Count));
            }
        }

        for (; i < dx.Length; i++)
        {
            dx[i] = Share(dy[i], z[i], epsilon, operands);
        }
    }

    // dy, z [n] -> dx [n]
    private static void EpsilonShareKernel(Index1D i, ArrayView<float> dy, ArrayView<float> z, ArrayView<float> dx, float epsilon, float operands)
        => dx[i] = Share(dy[i], z[i], epsilon, operands);

    // dy, a, b [n] -> output [n] = (the other operand) ⊙ the share of dy at y = a ⊙ b: da when forA, else db
    private static void MultiplyRelevanceKernel(Index1D i, ArrayView<float> dy, ArrayView<float> a, ArrayView<float> b,
        ArrayView<float> output, float epsilon, int forA)
        => output[i] = (forA != 0 ? b[i] : a[i]) * Share(dy[i], a[i] * b[i], epsilon, 2f);

    #endregion
}
