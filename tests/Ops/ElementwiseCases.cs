using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>Matrix cases for <see cref="Elementwise"/>.</summary>
public sealed class ElementwiseCases : IOpCaseSource
{
    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int rows in TestData.Sizes)
        {
            foreach (int columns in new[] { 1, 17, 130 })
            {
                bool tiny = rows <= 17 && columns <= 17;
                string shape = $"[{rows}, {columns}]";
                yield return new OpCase("Elementwise.Add", shape, tiny, d => Binary(d, rows, columns, Elementwise.Add, (a, b) => a + b));
                yield return new OpCase("Elementwise.Multiply", shape, tiny, d => Binary(d, rows, columns, Elementwise.Multiply, (a, b) => a * b));
                yield return new OpCase("Elementwise.Scale", shape, tiny, d => Scale(d, rows, columns));
                yield return new OpCase("Elementwise.AddScaled", shape, tiny, d => AddScaled(d, rows, columns));
                yield return new OpCase("Elementwise.AddRowVector", shape, tiny, d => AddRowVector(d, rows, columns));
                yield return new OpCase("Elementwise.MultiplyBackward", shape, tiny, d => MultiplyBackward(d, rows, columns));
                yield return new OpCase("Elementwise.Tanh", shape, tiny, d => Tanh(d, rows, columns));
                yield return new OpCase("Elementwise.TanhBackward", shape, tiny, d => TanhBackward(d, rows, columns));
            }
        }
    }

    private static void Binary(Device device, int rows, int columns, Action<Tensor<float>, Tensor<float>, Tensor<float>> op, Func<double, double, double> reference)
    {
        float[] a = TestData.Normal(1, rows * columns);
        float[] b = TestData.Normal(2, rows * columns);
        using var ta = device.FromHost<float>(a, rows, columns);
        using var tb = device.FromHost<float>(b, rows, columns);
        using var ty = TestData.Poisoned(device, rows, columns);
        op(ta, tb, ty);
        var expected = new double[a.Length];
        for (int i = 0; i < a.Length; i++)
        {
            expected[i] = reference(a[i], b[i]);
        }

        Compare.Close(ty.ToArray(), expected, Tolerances.Elementwise, "y");
    }

    private static void Scale(Device device, int rows, int columns)
    {
        float[] x = TestData.Normal(3, rows * columns);
        using var tx = device.FromHost<float>(x, rows, columns);
        using var ty = TestData.Poisoned(device, rows, columns);
        Elementwise.Scale(tx, -0.37f, ty);
        Compare.Close(ty.ToArray(), x.Select(v => -0.37 * v).ToArray(), Tolerances.Elementwise, "y");
    }

    private static void AddScaled(Device device, int rows, int columns)
    {
        float[] x = TestData.Normal(4, rows * columns);
        float[] y = TestData.Normal(5, rows * columns);
        using var tx = device.FromHost<float>(x, rows, columns);
        using var ty = device.FromHost<float>(y, rows, columns);
        Elementwise.AddScaled(ty, 2.5f, tx);
        Compare.Close(ty.ToArray(), y.Select((v, i) => v + 2.5 * x[i]).ToArray(), Tolerances.Elementwise, "y");
    }

    private static void AddRowVector(Device device, int rows, int columns)
    {
        float[] x = TestData.Normal(6, rows * columns);
        float[] bias = TestData.Normal(7, columns);
        using var tx = device.FromHost<float>(x, rows, columns);
        using var tb = device.FromHost<float>(bias, columns);
        using var ty = TestData.Poisoned(device, rows, columns);
        Elementwise.AddRowVector(tx, tb, ty);
        Compare.Close(ty.ToArray(), x.Select((v, i) => v + (double)bias[i % columns]).ToArray(), Tolerances.Elementwise, "y");
    }

    private static void MultiplyBackward(Device device, int rows, int columns)
    {
        float[] dy = TestData.Normal(8, rows * columns);
        float[] a = TestData.Normal(9, rows * columns);
        float[] b = TestData.Normal(10, rows * columns);
        using var tdy = device.FromHost<float>(dy, rows, columns);
        using var ta = device.FromHost<float>(a, rows, columns);
        using var tb = device.FromHost<float>(b, rows, columns);
        using var tda = TestData.Poisoned(device, rows, columns);
        using var tdb = TestData.Poisoned(device, rows, columns);
        Elementwise.MultiplyBackward(tdy, ta, tb, tda, tdb);
        Compare.Close(tda.ToArray(), dy.Select((g, i) => (double)g * b[i]).ToArray(), Tolerances.Elementwise, "da");
        Compare.Close(tdb.ToArray(), dy.Select((g, i) => (double)g * a[i]).ToArray(), Tolerances.Elementwise, "db");
    }

    private static void Tanh(Device device, int rows, int columns)
    {
        float[] x = TestData.Uniform(18, rows * columns, 4f);
        using var tx = device.FromHost<float>(x, rows, columns);
        using var ty = TestData.Poisoned(device, rows, columns);
        Elementwise.Tanh(tx, ty);
        Compare.Close(ty.ToArray(), x.Select(v => Math.Tanh(v)).ToArray(), Tolerances.Gelu, "y");
    }

    private static void TanhBackward(Device device, int rows, int columns)
    {
        float[] y = TestData.Uniform(19, rows * columns, 0.99f);
        float[] dy = TestData.Normal(20, rows * columns);
        using var ty = device.FromHost<float>(y, rows, columns);
        using var tdy = device.FromHost<float>(dy, rows, columns);
        using var tdx = TestData.Poisoned(device, rows, columns);
        Elementwise.TanhBackward(ty, tdy, tdx);
        Compare.Close(tdx.ToArray(), y.Select((v, i) => dy[i] * (1 - ((double)v * v))).ToArray(), Tolerances.Elementwise, "dx");
    }
}
