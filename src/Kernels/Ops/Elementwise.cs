namespace Headlight.Kernels;

/// <summary>
/// Element-wise ops: add, add a row vector, scale, scaled accumulate, multiply and tanh. Each has its
/// backward next to it; most backward passes are the forward ops themselves, as noted.
/// </summary>
public static partial class Elementwise
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

        args.Backend.ElementwiseAdd(a, b, y);
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
        if (n == 0)
        {
            return;
        }

        args.Backend.ElementwiseAddRowVector(x, bias, y);
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

        args.Backend.ElementwiseScale(x, alpha, y);
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

        args.Backend.ElementwiseAddScaled(y, alpha, x);
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

        args.Backend.ElementwiseMultiply(a, b, y);
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

        args.Backend.ElementwiseTanh(x, y);
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

        args.Backend.ElementwiseTanhBackward(y, dy, dx);
    }

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

        args.Backend.ElementwiseEpsilonShare(dy, z, dx, epsilon, operands);
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

            args.Backend.ElementwiseMultiplyRelevance(dy, a, b, output, epsilon, forA);
        }
    }

    /// <summary><c>g·z / (operands·z + ε·sign z)</c> with sign 0 = +1; usable inside ILGPU kernels.</summary>
    internal static float Share(float g, float z, float epsilon, float operands)
    {
        return g * z / ((operands * z) + (z >= 0f ? epsilon : -epsilon));
    }

    private static bool Aliases(Tensor<float>? output, Tensor<float> dy, Tensor<float> a, Tensor<float> b)
        => output is not null && (ReferenceEquals(output, dy) || ReferenceEquals(output, a) || ReferenceEquals(output, b));

    #endregion
}

/// <summary>The element-wise ops' entry points on each backend (Elementwise.Cpu.cs, Elementwise.Ilgpu.cs); operands validated and not empty.</summary>
internal abstract partial class Backend
{
    /// <summary><c>y = a + b</c>.</summary>
    internal abstract void ElementwiseAdd(Tensor<float> a, Tensor<float> b, Tensor<float> y);

    /// <summary><c>y[r, c] = x[r, c] + bias[c]</c>.</summary>
    internal abstract void ElementwiseAddRowVector(Tensor<float> x, Tensor<float> bias, Tensor<float> y);

    /// <summary><c>y = alpha · x</c>.</summary>
    internal abstract void ElementwiseScale(Tensor<float> x, float alpha, Tensor<float> y);

    /// <summary><c>y += alpha · x</c>.</summary>
    internal abstract void ElementwiseAddScaled(Tensor<float> y, float alpha, Tensor<float> x);

    /// <summary><c>y = a ⊙ b</c>.</summary>
    internal abstract void ElementwiseMultiply(Tensor<float> a, Tensor<float> b, Tensor<float> y);

    /// <summary><c>y = tanh(x)</c>.</summary>
    internal abstract void ElementwiseTanh(Tensor<float> x, Tensor<float> y);

    /// <summary><c>dx = dy ⊙ (1 − y²)</c>.</summary>
    internal abstract void ElementwiseTanhBackward(Tensor<float> y, Tensor<float> dy, Tensor<float> dx);

    /// <summary><c>dx = dy ⊙ z / (operands·z + ε·sign z)</c>.</summary>
    internal abstract void ElementwiseEpsilonShare(Tensor<float> dy, Tensor<float> z, Tensor<float> dx, float epsilon, int operands);

    /// <summary>One output of the uniform rule through <c>a ⊙ b</c>: <c>da</c> when <paramref name="forA"/> is 1, else <c>db</c>.</summary>
    internal abstract void ElementwiseMultiplyRelevance(Tensor<float> dy, Tensor<float> a, Tensor<float> b, Tensor<float> output, float epsilon, int forA);
}
