using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="LayerNorm"/>: plain and fused with a residual add, in place and not,
/// ε = 1e-5 (GPT-2) and 1e-12 (BERT), rows with a large common offset (which E[x²] − E[x]² would
/// ruin), and the backward with and without accumulation, all against float64 references.
/// </summary>
public sealed class LayerNormCases : IOpCaseSource
{
    /// <summary>Which operands a forward case passes and which alias each other.</summary>
    private enum Layout
    {
        /// <summary>x → y, mean and rstd saved.</summary>
        Plain,

        /// <summary>y is x.</summary>
        InPlace,

        /// <summary>x + residual → sum, y; mean and rstd saved.</summary>
        ResidualSum,

        /// <summary>x + residual → y only (no sum, y doubles as the scratch row); only the mean saved.</summary>
        ResidualNoSum,

        /// <summary>x += residual in place (sum is x), y separate.</summary>
        ResidualSumIsX,

        /// <summary>y is residual, no sum.</summary>
        ResidualYIsResidual,
    }

    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int rows in TestData.Sizes)
        {
            foreach (int d in TestData.Sizes)
            {
                bool tiny = rows <= 17 && d <= 17;
                int[] shape = [rows, d];
                string s = $"[{rows}, {d}]";
                yield return new OpCase("LayerNorm.Forward", $"{s} eps=1e-5", tiny, dev => Forward(dev, shape, 1e-5f, 0f, Layout.Plain));
                yield return new OpCase("LayerNorm.Forward+residual+sum", $"{s} eps=1e-12", tiny, dev => Forward(dev, shape, 1e-12f, 0f, Layout.ResidualSum));
                yield return new OpCase("LayerNorm.Backward", s, tiny, dev => Backward(dev, shape, 0f, BackwardLayout.Plain));
            }
        }

        foreach (int d in TestData.Sizes)
        {
            bool tiny = d <= 17;
            int[] shape = [17, d];
            string s = $"[17, {d}]";
            yield return new OpCase("LayerNorm.Forward", $"{s} eps=1e-12 offset=1000", tiny, dev => Forward(dev, shape, 1e-12f, 1000f, Layout.Plain));
            yield return new OpCase("LayerNorm.Forward+residual+sum", $"{s} eps=1e-12 offset=1000", tiny, dev => Forward(dev, shape, 1e-12f, 1000f, Layout.ResidualSum));
            yield return new OpCase("LayerNorm.Forward+residual", $"{s} eps=1e-5", tiny, dev => Forward(dev, shape, 1e-5f, 0f, Layout.ResidualNoSum));
            yield return new OpCase("LayerNorm.Forward in place", $"{s} eps=1e-5 y=x", tiny, dev => Forward(dev, shape, 1e-5f, 0f, Layout.InPlace));
            yield return new OpCase("LayerNorm.Forward+residual+sum", $"{s} eps=1e-5 sum=x", tiny, dev => Forward(dev, shape, 1e-5f, 0f, Layout.ResidualSumIsX));
            yield return new OpCase("LayerNorm.Forward+residual", $"{s} eps=1e-5 y=residual", tiny, dev => Forward(dev, shape, 1e-5f, 0f, Layout.ResidualYIsResidual));
            yield return new OpCase("LayerNorm.Backward", $"{s} offset=1000", tiny, dev => Backward(dev, shape, 1000f, BackwardLayout.Plain));
            yield return new OpCase("LayerNorm.Backward+accumulate", s, tiny, dev => Backward(dev, shape, 0f, BackwardLayout.Accumulate));
            yield return new OpCase("LayerNorm.Backward", $"{s} dx=dy dgamma only", tiny, dev => Backward(dev, shape, 0f, BackwardLayout.DxIsDyGammaOnly));
            yield return new OpCase("LayerNorm.Backward", $"{s} dbeta only", tiny, dev => Backward(dev, shape, 0f, BackwardLayout.BetaOnly));
        }

        // Every leading dimension is a row; mean and rstd may take the leading shape.
        // Each ILGPU forward kernel forced (group per row, thread per row), at tiny shapes the simulator runs;
        // the CPU backend ignores the choice.
        foreach (bool perThread in new[] { false, true })
        {
            string k = perThread ? "kernel=thread-per-row" : "kernel=group-per-row";
            foreach (var layout in Enum.GetValues<Layout>())
            {
                yield return new OpCase("LayerNorm.Forward", $"[3, 17] eps=1e-12 offset=1000 {layout} {k}", true, dev => Forward(dev, [3, 17], 1e-12f, 1000f, layout, perThread));
            }

            yield return new OpCase("LayerNorm.Forward", $"[2, 3, 65] eps=1e-5 ResidualSum {k}", true, dev => Forward(dev, [2, 3, 65], 1e-5f, 0f, Layout.ResidualSum, perThread));
        }

        // Both ILGPU row paths (warp per row where the backend has warps, shared memory per group), forced to the
        // row kernels at shapes around the warp length and the warp path's row limit (RowPathCases has the rest).
        foreach (bool shared in new[] { false, true })
        {
            string path = shared ? "rows=shared" : "rows=default";
            foreach (int[] shape in new[] { new[] { 1, 1 }, [3, 31], [9, 32], [5, 33], [2, 1024], [2, 1025] })
            {
                string s = $"{TensorShape.Format(shape)} eps=1e-5 {path}";
                yield return new OpCase("LayerNorm.Forward", s, true, global::Headlight.Tests.Kernels.RowPathCases.On(shared, dev => Forward(dev, shape, 1e-5f, 0f, Layout.Plain, perThread: false)));
                yield return new OpCase("LayerNorm.Forward+residual+sum", $"{s} offset=1000", true,
                    global::Headlight.Tests.Kernels.RowPathCases.On(shared, dev => Forward(dev, shape, 1e-5f, 1000f, Layout.ResidualSum, perThread: false)));
            }
        }

        yield return new OpCase("LayerNorm.Forward+residual+sum", "[2, 5, 33] eps=1e-12", false, dev => Forward(dev, [2, 5, 33], 1e-12f, 0f, Layout.ResidualSum));
        yield return new OpCase("LayerNorm.Backward", "[2, 5, 33]", false, dev => Backward(dev, [2, 5, 33], 0f, BackwardLayout.Plain));
        // Large enough for the host path's workers (rows in parallel, dgamma/dbeta by column ranges).
        yield return new OpCase("LayerNorm.Forward+residual+sum", "[130, 384] eps=1e-12 offset=1000", false, dev => Forward(dev, [130, 384], 1e-12f, 1000f, Layout.ResidualSum));
        yield return new OpCase("LayerNorm.Backward", "[130, 384]", false, dev => Backward(dev, [130, 384], 0f, BackwardLayout.Plain));
        yield return new OpCase("LayerNorm.Backward+accumulate", "[130, 384]", false, dev => Backward(dev, [130, 384], 0f, BackwardLayout.Accumulate));
        yield return new OpCase("LayerNorm.Forward constant rows", "[3, 17] eps=1e-12", true, ConstantRows);
        yield return new OpCase("LayerNorm.Backward no rows", "[0, 5] dgamma dbeta", true, NoRows);
    }

    /// <summary>Float64 LayerNorm of <paramref name="v"/> <c>[rows, d]</c>: the output and each row's mean and 1/σ, two-pass.</summary>
    internal static (double[] Y, double[] Mean, double[] Rstd) Reference(double[] v, double[] gamma, double[] beta, int d, double epsilon)
    {
        int rows = v.Length / d;
        var y = new double[v.Length];
        var mean = new double[rows];
        var rstd = new double[rows];
        for (int r = 0; r < rows; r++)
        {
            double m = 0;
            for (int c = 0; c < d; c++)
            {
                m += v[(r * d) + c];
            }

            m /= d;
            double variance = 0;
            for (int c = 0; c < d; c++)
            {
                double dv = v[(r * d) + c] - m;
                variance += dv * dv;
            }

            double k = 1 / Math.Sqrt((variance / d) + epsilon);
            for (int c = 0; c < d; c++)
            {
                y[(r * d) + c] = ((v[(r * d) + c] - m) * k * gamma[c]) + beta[c];
            }

            mean[r] = m;
            rstd[r] = k;
        }

        return (y, mean, rstd);
    }

    /// <summary>
    /// Float64 LayerNorm backward at <paramref name="v"/> with the given statistics: x̂ = (v − mean)·rstd,
    /// g = dy·gamma, dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), dgamma = Σ dy·x̂, dbeta = Σ dy.
    /// </summary>
    internal static (double[] Dx, double[] Dgamma, double[] Dbeta) ReferenceBackward(
        double[] dy, double[] v, double[] gamma, double[] mean, double[] rstd, int d)
    {
        int rows = v.Length / d;
        var dx = new double[v.Length];
        var dgamma = new double[d];
        var dbeta = new double[d];
        for (int r = 0; r < rows; r++)
        {
            double a = 0;
            double b = 0;
            for (int c = 0; c < d; c++)
            {
                int i = (r * d) + c;
                double xhat = (v[i] - mean[r]) * rstd[r];
                double g = dy[i] * gamma[c];
                a += g;
                b += g * xhat;
                dgamma[c] += dy[i] * xhat;
                dbeta[c] += dy[i];
            }

            a /= d;
            b /= d;
            for (int c = 0; c < d; c++)
            {
                int i = (r * d) + c;
                double xhat = (v[i] - mean[r]) * rstd[r];
                dx[i] = rstd[r] * ((dy[i] * gamma[c]) - a - (xhat * b));
            }
        }

        return (dx, dgamma, dbeta);
    }

    private static void Forward(Device device, int[] shape, float epsilon, float offset, Layout layout, bool? perThread = null)
    {
        int d = shape[^1];
        int n = shape.Aggregate(1, (p, s) => p * s);
        int rows = n / d;
        bool residual = layout is Layout.ResidualSum or Layout.ResidualNoSum or Layout.ResidualSumIsX or Layout.ResidualYIsResidual;
        float[] x = TestData.Normal(31, n).Select(v => v + offset).ToArray();
        float[] res = TestData.Normal(32, n);
        float[] gamma = TestData.Normal(33, d);
        float[] beta = TestData.Normal(34, d);

        using var tx = device.FromHost<float>(x, shape);
        using var tr = device.FromHost<float>(res, shape);
        using var tg = device.FromHost<float>(gamma, d);
        using var tb = device.FromHost<float>(beta, d);
        using var ownY = TestData.Poisoned(device, shape);
        using var ownSum = TestData.Poisoned(device, shape);
        int[] statsShape = shape[..^1];
        using var tmean = TestData.Poisoned(device, statsShape);
        using var trstd = TestData.Poisoned(device, statsShape);
        var ty = layout switch
        {
            Layout.InPlace => tx,
            Layout.ResidualYIsResidual => tr,
            _ => ownY,
        };
        var tsum = layout switch
        {
            Layout.ResidualSum => ownSum,
            Layout.ResidualSumIsX => tx,
            _ => null,
        };
        bool saveRstd = layout != Layout.ResidualNoSum;

        LayerNorm.ForwardWith(tx, tg, tb, ty, epsilon, tmean, saveRstd ? trstd : null, residual ? tr : null, tsum, perThread);

        // The fused input is the float32 sum the op stores: one IEEE addition, rounded as the op must round it.
        float[] input = residual ? x.Select((v, i) => v + res[i]).ToArray() : x;
        var (y, mean, rstd) = Reference(TestData.ToDouble(input), TestData.ToDouble(gamma), TestData.ToDouble(beta), d, epsilon);
        Compare.Close(ty.ToArray(), y, Tolerances.LayerNorm, "y");
        Compare.Close(tmean.ToArray(), mean, Tolerances.LayerNorm, "mean");
        if (saveRstd)
        {
            Compare.Close(trstd.ToArray(), rstd, Tolerances.LayerNorm, "rstd");
        }
        else
        {
            Assert.True(trstd.ToArray().All(float.IsNaN), "rstd was not asked for but was written.");
        }

        if (tsum is not null)
        {
            Compare.Exact(tsum.ToArray(), input, "sum");
        }

        if (layout == Layout.ResidualNoSum)
        {
            Assert.Equal(x, tx.ToArray());
            Assert.Equal(res, tr.ToArray());
        }

        Assert.Equal(rows, mean.Length);
    }

    /// <summary>Which outputs a backward case passes.</summary>
    private enum BackwardLayout
    {
        /// <summary>dx, dgamma, dbeta overwritten.</summary>
        Plain,

        /// <summary>dx, dgamma, dbeta added to.</summary>
        Accumulate,

        /// <summary>dx is dy (overwritten in place); dgamma only.</summary>
        DxIsDyGammaOnly,

        /// <summary>dbeta only.</summary>
        BetaOnly,
    }

    private static void Backward(Device device, int[] shape, float offset, BackwardLayout layout)
    {
        int d = shape[^1];
        int n = shape.Aggregate(1, (p, s) => p * s);
        float[] v = TestData.Normal(41, n).Select(x => x + offset).ToArray();
        float[] dy = TestData.Normal(42, n);
        float[] gamma = TestData.Normal(43, d);
        float[] beta = TestData.Normal(44, d);
        float[] dxStart = TestData.Normal(45, n);
        float[] dgStart = TestData.Normal(46, d);
        float[] dbStart = TestData.Normal(47, d);
        bool accumulate = layout == BackwardLayout.Accumulate;

        // The saved statistics are the float64 ones rounded to float32, as a forward would store them.
        var stats = Reference(TestData.ToDouble(v), TestData.ToDouble(gamma), TestData.ToDouble(beta), d, 1e-5);
        float[] mean = stats.Mean.Select(m => (float)m).ToArray();
        float[] rstd = stats.Rstd.Select(k => (float)k).ToArray();
        int[] statsShape = shape[..^1];

        using var tv = device.FromHost<float>(v, shape);
        using var tdy = device.FromHost<float>(dy, shape);
        using var tg = device.FromHost<float>(gamma, d);
        using var tmean = device.FromHost<float>(mean, statsShape);
        using var trstd = device.FromHost<float>(rstd, statsShape);
        using var ownDx = accumulate ? device.FromHost<float>(dxStart, shape) : TestData.Poisoned(device, shape);
        using var tdg = accumulate ? device.FromHost<float>(dgStart, d) : TestData.Poisoned(device, d);
        using var tdb = accumulate ? device.FromHost<float>(dbStart, d) : TestData.Poisoned(device, d);
        var tdx = layout == BackwardLayout.DxIsDyGammaOnly ? tdy : ownDx;
        bool withGamma = layout != BackwardLayout.BetaOnly;
        bool withBeta = layout != BackwardLayout.DxIsDyGammaOnly;

        LayerNorm.Backward(tdy, tv, tg, tmean, trstd, tdx, withGamma ? tdg : null, withBeta ? tdb : null, accumulate, accumulateInput: accumulate);

        var (dx, dgamma, dbeta) = ReferenceBackward(TestData.ToDouble(dy), TestData.ToDouble(v), TestData.ToDouble(gamma),
            TestData.ToDouble(mean), TestData.ToDouble(rstd), d);
        if (accumulate)
        {
            dx = dx.Select((g, i) => g + dxStart[i]).ToArray();
            dgamma = dgamma.Select((g, i) => g + dgStart[i]).ToArray();
            dbeta = dbeta.Select((g, i) => g + dbStart[i]).ToArray();
        }

        Compare.Close(tdx.ToArray(), dx, Tolerances.LayerNorm, "dx");
        if (withGamma)
        {
            Compare.Close(tdg.ToArray(), dgamma, Tolerances.LayerNorm, "dgamma");
        }
        else
        {
            Assert.True(tdg.ToArray().All(float.IsNaN), "dgamma was not asked for but was written.");
        }

        if (withBeta)
        {
            Compare.Close(tdb.ToArray(), dbeta, Tolerances.LayerNorm, "dbeta");
        }
        else
        {
            Assert.True(tdb.ToArray().All(float.IsNaN), "dbeta was not asked for but was written.");
        }
    }

    // Variance 0 with ε = 1e-12 (rstd = 1e6): every deviation must be exactly 0, so y = beta.
    private static void ConstantRows(Device device)
    {
        const int rows = 3;
        const int d = 17;
        float[] x = Enumerable.Range(0, rows * d).Select(i => 2.5f * ((i / d) - 1)).ToArray();
        float[] gamma = TestData.Normal(35, d);
        float[] beta = TestData.Normal(36, d);
        using var tx = device.FromHost<float>(x, rows, d);
        using var tg = device.FromHost<float>(gamma, d);
        using var tb = device.FromHost<float>(beta, d);
        using var ty = TestData.Poisoned(device, rows, d);
        using var trstd = TestData.Poisoned(device, rows);
        LayerNorm.Forward(tx, tg, tb, ty, 1e-12f, rstd: trstd);
        Compare.Close(ty.ToArray(), Enumerable.Range(0, rows * d).Select(i => (double)beta[i % d]).ToArray(), Tolerances.LayerNorm, "y");
        Compare.Close(trstd.ToArray(), [1e6, 1e6, 1e6], Tolerances.LayerNorm, "rstd");
    }

    // No rows: dgamma and dbeta are sums over nothing, so 0.
    private static void NoRows(Device device)
    {
        using var empty = device.Allocate<float>(0, 5);
        using var stats = device.Allocate<float>(0);
        using var tg = device.FromHost<float>(TestData.Normal(37, 5), 5);
        using var tdg = TestData.Poisoned(device, 5);
        using var tdb = TestData.Poisoned(device, 5);
        LayerNorm.Backward(empty, empty, tg, stats, stats, empty, tdg, tdb);
        Compare.Close(tdg.ToArray(), new double[5], Tolerances.LayerNorm, "dgamma");
        Compare.Close(tdb.ToArray(), new double[5], Tolerances.LayerNorm, "dbeta");
    }
}

/// <summary>Checks the float64 LayerNorm backward reference against central finite differences of the float64 forward.</summary>
public sealed class LayerNormReferenceTests
{
    /// <summary>dx, dgamma and dbeta of <c>L = Σ dy·LN(v)</c> by the formula match central differences to 1e-7.</summary>
    [Fact]
    public void BackwardReferenceMatchesFiniteDifferences()
    {
        const int d = 5;
        const double epsilon = 1e-5;
        const double h = 1e-5;
        double[] v = TestData.ToDouble(TestData.Normal(51, 2 * d));
        double[] dy = TestData.ToDouble(TestData.Normal(52, 2 * d));
        double[] gamma = TestData.ToDouble(TestData.Normal(53, d));
        double[] beta = TestData.ToDouble(TestData.Normal(54, d));
        var (_, mean, rstd) = LayerNormCases.Reference(v, gamma, beta, d, epsilon);
        var (dx, dgamma, dbeta) = LayerNormCases.ReferenceBackward(dy, v, gamma, mean, rstd, d);

        double Loss(double[] vv, double[] gg, double[] bb)
        {
            var y = LayerNormCases.Reference(vv, gg, bb, d, epsilon).Y;
            return y.Select((value, i) => value * dy[i]).Sum();
        }

        double Central(double[] target, int i, Func<double> loss)
        {
            double saved = target[i];
            target[i] = saved + h;
            double up = loss();
            target[i] = saved - h;
            double down = loss();
            target[i] = saved;
            return (up - down) / (2 * h);
        }

        for (int i = 0; i < v.Length; i++)
        {
            Assert.Equal(dx[i], Central(v, i, () => Loss(v, gamma, beta)), 1e-7);
        }

        for (int c = 0; c < d; c++)
        {
            Assert.Equal(dgamma[c], Central(gamma, c, () => Loss(v, gamma, beta)), 1e-7);
            Assert.Equal(dbeta[c], Central(beta, c, () => Loss(v, gamma, beta)), 1e-7);
        }
    }
}
