using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>Matrix cases for <see cref="Reduce"/>.</summary>
public sealed class ReduceCases : IOpCaseSource
{
    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int rows in TestData.Sizes)
        {
            foreach (int columns in TestData.Sizes)
            {
                bool tiny = rows <= 17 && columns <= 17;
                string shape = $"[{rows}, {columns}]";
                yield return new OpCase("Reduce.RowSum", shape, tiny, d => Rows(d, rows, columns, Reduce.RowSum, r => r.Sum()));
                yield return new OpCase("Reduce.RowMax", shape, tiny, d => Rows(d, rows, columns, Reduce.RowMax, r => r.Max()));
                yield return new OpCase("Reduce.RowL2Norm", shape, tiny, d => Rows(d, rows, columns, Reduce.RowL2Norm, r => Math.Sqrt(r.Sum(v => v * v))));
                yield return new OpCase("Reduce.ColumnSum", shape, tiny, d => ColumnSum(d, rows, columns, accumulate: false));
                yield return new OpCase("Reduce.ColumnSum+accumulate", shape, tiny, d => ColumnSum(d, rows, columns, accumulate: true));
                yield return new OpCase("Reduce.RowSumBackward", shape, tiny, d => RowSumBackward(d, rows, columns));
                yield return new OpCase("Reduce.RowL2NormBackward", shape, tiny, d => RowL2NormBackward(d, rows, columns));
            }
        }

        // Rank-3 input: every leading dimension counts as rows.
        yield return new OpCase("Reduce.RowSum", "[3, 5, 33]", true, d =>
        {
            float[] x = TestData.Normal(11, 3 * 5 * 33);
            using var tx = d.FromHost<float>(x, 3, 5, 33);
            using var ty = TestData.Poisoned(d, 3, 5);
            Reduce.RowSum(tx, ty);
            var expected = Enumerable.Range(0, 15).Select(r => x.Skip(r * 33).Take(33).Sum(v => (double)v)).ToArray();
            Compare.Close(ty.ToArray(), expected, Tolerances.Reduce, "y");
        });
    }

    private static void Rows(Device device, int rows, int columns, Action<Tensor<float>, Tensor<float>> op, Func<IEnumerable<double>, double> reference)
    {
        float[] x = TestData.Normal(12, rows * columns);
        using var tx = device.FromHost<float>(x, rows, columns);
        using var ty = TestData.Poisoned(device, rows);
        op(tx, ty);
        var expected = Enumerable.Range(0, rows).Select(r => reference(x.Skip(r * columns).Take(columns).Select(v => (double)v))).ToArray();
        Compare.Close(ty.ToArray(), expected, Tolerances.Reduce, "y");
    }

    private static void ColumnSum(Device device, int rows, int columns, bool accumulate)
    {
        float[] x = TestData.Normal(13, rows * columns);
        float[] start = TestData.Normal(14, columns);
        using var tx = device.FromHost<float>(x, rows, columns);
        using var ty = accumulate ? device.FromHost<float>(start, columns) : TestData.Poisoned(device, columns);
        Reduce.ColumnSum(tx, ty, accumulate);
        var expected = new double[columns];
        for (int c = 0; c < columns; c++)
        {
            expected[c] = accumulate ? start[c] : 0;
            for (int r = 0; r < rows; r++)
            {
                expected[c] += x[(r * columns) + c];
            }
        }

        Compare.Close(ty.ToArray(), expected, Tolerances.Reduce, "y");
    }

    private static void RowSumBackward(Device device, int rows, int columns)
    {
        float[] dy = TestData.Normal(15, rows);
        using var tdy = device.FromHost<float>(dy, rows);
        using var tdx = TestData.Poisoned(device, rows, columns);
        Reduce.RowSumBackward(tdy, tdx);
        Compare.Close(tdx.ToArray(), Enumerable.Range(0, rows * columns).Select(i => (double)dy[i / columns]).ToArray(), Tolerances.Elementwise, "dx");
    }

    private static void RowL2NormBackward(Device device, int rows, int columns)
    {
        float[] x = TestData.Normal(16, rows * columns);
        float[] dy = TestData.Normal(17, rows);
        var norms = Enumerable.Range(0, rows).Select(r => Math.Sqrt(x.Skip(r * columns).Take(columns).Sum(v => (double)v * v))).ToArray();
        using var tx = device.FromHost<float>(x, rows, columns);
        using var tdy = device.FromHost<float>(dy, rows);
        using var ty = device.FromHost<float>(norms.Select(v => (float)v).ToArray(), rows);
        using var tdx = TestData.Poisoned(device, rows, columns);
        Reduce.RowL2NormBackward(tdy, tx, ty, tdx);
        var expected = Enumerable.Range(0, rows * columns).Select(i => dy[i / columns] * x[i] / norms[i / columns]).ToArray();
        Compare.Close(tdx.ToArray(), expected, Tolerances.Reduce, "dx");
    }
}
