namespace Headlight.Kernels;

/// <summary>
/// Reductions over the rows or columns of a matrix view <c>[rows, columns]</c> (all leading
/// dimensions of the input are rows). Sums are accumulated in float32 per thread, then combined
/// in a tree, which keeps the error near <c>log2(columns)</c> roundings.
/// </summary>
public static partial class Reduce
{
    /// <summary><c>y[r] = Σ_c x[r, c]</c>.</summary>
    /// <remarks>Backward: <see cref="RowSumBackward"/>.</remarks>
    public static void RowSum(Tensor<float> x, Tensor<float> y) => RowReduce("Reduce.RowSum", x, y, RowKind.Sum);

    /// <summary><c>y[r] = max_c x[r, c]</c> (−∞ for an empty row).</summary>
    /// <remarks>Not differentiated: the gradient of a maximum is taken through the ops that use it (softmax, attention).</remarks>
    public static void RowMax(Tensor<float> x, Tensor<float> y) => RowReduce("Reduce.RowMax", x, y, RowKind.Max);

    /// <summary><c>y[r] = ‖x[r, :]‖₂</c>, as saliency needs per token.</summary>
    /// <remarks>Backward: <see cref="RowL2NormBackward"/>.</remarks>
    public static void RowL2Norm(Tensor<float> x, Tensor<float> y) => RowReduce("Reduce.RowL2Norm", x, y, RowKind.L2);

    /// <summary>Backward of <see cref="RowSum"/>: <c>dx[r, c] = dy[r]</c>.</summary>
    public static void RowSumBackward(Tensor<float> dy, Tensor<float> dx)
    {
        var args = new OpArgs("Reduce.RowSumBackward").Add("dy", dy).Add("dx", dx)
            .Require(dx.Shape.Rank >= 1 && dy.Length == dx.Shape.Rows, "dy must have one element per row of dx");
        int columns = dx.Shape.Rank == 0 ? 1 : dx.Shape[-1];
        int n = (int)dx.Length;
        if (n == 0)
        {
            return;
        }

        args.Backend.ReduceRowSumBackward(dy, dx, columns);
    }

    /// <summary>Backward of <see cref="RowL2Norm"/>: <c>dx[r, c] = dy[r] · x[r, c] / y[r]</c> (0 where <c>y[r] = 0</c>).</summary>
    public static void RowL2NormBackward(Tensor<float> dy, Tensor<float> x, Tensor<float> y, Tensor<float> dx)
    {
        var args = new OpArgs("Reduce.RowL2NormBackward").Add("dy", dy).Add("x", x).Add("y", y).Add("dx", dx)
            .Require(x.Shape == dx.Shape, "x and dx must have the same shape")
            .Require(x.Shape.Rank >= 1 && dy.Length == x.Shape.Rows && y.Length == x.Shape.Rows, "dy and y must have one element per row of x");
        int columns = x.Shape[-1];
        int n = (int)x.Length;
        if (n == 0)
        {
            return;
        }

        args.Backend.ReduceRowL2NormBackward(dy, x, y, dx, columns);
    }

    /// <summary>
    /// <c>y[c] = Σ_r x[r, c]</c>, or <c>y[c] += …</c> when <paramref name="accumulate"/> is set: the bias gradient of a linear layer.
    /// </summary>
    /// <remarks>Backward: <c>dx[r, c] = dy[c]</c> (<see cref="Elementwise.AddRowVector"/> onto zeros).</remarks>
    public static void ColumnSum(Tensor<float> x, Tensor<float> y, bool accumulate = false)
    {
        var args = new OpArgs("Reduce.ColumnSum").Add("x", x).Add("y", y)
            .Require(x.Shape.Rank >= 1 && y.Length == x.Shape[-1], "y must have one element per column of x");
        int columns = (int)y.Length;
        int rows = columns == 0 ? 0 : (int)(x.Length / columns);
        if (columns == 0)
        {
            return;
        }

        args.Backend.ReduceColumnSum(x, y, rows, columns, accumulate);
    }

    /// <summary>Which row reduction.</summary>
    internal enum RowKind
    {
        Sum = 0,
        Max = 1,
        L2 = 2,
    }

    private static void RowReduce(string op, Tensor<float> x, Tensor<float> y, RowKind kind)
    {
        var args = new OpArgs(op).Add("x", x).Add("y", y)
            .Require(x.Shape.Rank >= 1, "x must have at least one dimension")
            .Require(y.Length == x.Shape.Rows, "y must have one element per row of x");
        int rows = (int)y.Length;
        int columns = x.Shape[-1];
        if (rows == 0)
        {
            return;
        }

        args.Backend.ReduceRows(x, y, rows, columns, kind);
    }
}

/// <summary>The reductions' entry points on each backend (Reduce.Cpu.cs, Reduce.Ilgpu.cs); operands validated, none empty.</summary>
internal abstract partial class Backend
{
    /// <summary><c>y[r]</c> = the sum, maximum or L2 norm of <c>x[r, :]</c>.</summary>
    internal abstract void ReduceRows(Tensor<float> x, Tensor<float> y, int rows, int columns, Reduce.RowKind kind);

    /// <summary><c>dx[r, c] = dy[r]</c>.</summary>
    internal abstract void ReduceRowSumBackward(Tensor<float> dy, Tensor<float> dx, int columns);

    /// <summary><c>dx[r, c] = dy[r] · x[r, c] / y[r]</c> (0 where <c>y[r] = 0</c>).</summary>
    internal abstract void ReduceRowL2NormBackward(Tensor<float> dy, Tensor<float> x, Tensor<float> y, Tensor<float> dx, int columns);

    /// <summary><c>y[c] = Σ_r x[r, c]</c>, or <c>+=</c> with <paramref name="accumulate"/>.</summary>
    internal abstract void ReduceColumnSum(Tensor<float> x, Tensor<float> y, int rows, int columns, bool accumulate);
}
