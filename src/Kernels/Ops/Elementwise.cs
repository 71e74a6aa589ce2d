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
}
