namespace Headlight.Explain;

/// <summary>
/// The float64 arithmetic of Kernel SHAP: the weighted least-squares fit with efficiency enforced by eliminating
/// the last feature, its sandwich standard errors, and exact Shapley values by the Shapley formula.
/// </summary>
/// <remarks>
/// With y_k = v(z_k) − v(∅) and Δ = v(1) − v(∅), substituting φ_M = Δ − Σ_{i&lt;M} φ_i leaves an unconstrained fit of
/// y_k − z_{k,M}·Δ on the M − 1 columns z_{k,i} − z_{k,M}. Its normal equations A·β = b are solved by Cholesky after
/// symmetric scaling to a unit diagonal (which removes the spread of the kernel weights from the conditioning), with
/// one step of iterative refinement; a pivot below 1e-11 marks a direction the coalitions do not determine, whose
/// component is set to 0 (a basic least-squares solution).
/// </remarks>
internal static class ShapSolver
{
    private const double PivotTolerance = 1e-11;

    /// <summary>Shapley values and standard errors from the coalitions, their values and <c>v(∅)</c>, <c>v(1)</c>.</summary>
    public static (double[] Phi, double[] StandardErrors) Solve(CoalitionSet set, ReadOnlySpan<double> values, double empty, double full)
    {
        int m = set.Features;
        double delta = full - empty;
        if (m == 1)
        {
            return ([delta], [0]);
        }

        int p = m - 1;
        int n = set.Count;
        var a = new double[p * p];
        var b = new double[p];
        var x = new double[p];
        var residual = new double[n];
        var target = new double[n];
        for (int k = 0; k < n; k++)
        {
            Row(set.Mask(k), x);
            target[k] = values[k] - empty - (set.Mask(k)[p] * delta);
            double w = set.Weights[k];
            for (int i = 0; i < p; i++)
            {
                if (x[i] == 0)
                {
                    continue;
                }

                double wx = w * x[i];
                b[i] += wx * target[k];
                for (int j = 0; j <= i; j++)
                {
                    a[(i * p) + j] += wx * x[j];
                }
            }
        }

        for (int i = 0; i < p; i++)
        {
            for (int j = 0; j < i; j++)
            {
                a[(j * p) + i] = a[(i * p) + j];
            }
        }

        var factor = new Cholesky(a, p);
        double[] beta = factor.Solve(b);

        // One step of iterative refinement against the unscaled system.
        var r = new double[p];
        for (int i = 0; i < p; i++)
        {
            double sum = b[i];
            for (int j = 0; j < p; j++)
            {
                sum -= a[(i * p) + j] * beta[j];
            }

            r[i] = sum;
        }

        double[] correction = factor.Solve(r);
        for (int i = 0; i < p; i++)
        {
            beta[i] += correction[i];
        }

        var phi = new double[m];
        beta.CopyTo(phi, 0);
        phi[p] = delta - beta.Sum();
        for (int k = 0; k < n; k++)
        {
            Row(set.Mask(k), x);
            double fit = 0;
            for (int i = 0; i < p; i++)
            {
                fit += x[i] * beta[i];
            }

            residual[k] = target[k] - fit;
        }

        return (phi, StandardErrors(set, factor, residual, p));
    }

    /// <summary>
    /// Exact Shapley values from the values of all 2^M coalitions, indexed by bit mask (bit i = feature i present):
    /// φ_i = Σ_{S ∌ i} |S|!(M − |S| − 1)!/M! · (v(S ∪ {i}) − v(S)).
    /// </summary>
    public static double[] Exact(int m, ReadOnlySpan<double> values)
    {
        var weight = new double[m];
        for (int s = 0; s < m; s++)
        {
            weight[s] = 1 / (m * CoalitionSet.Choose(m - 1, s));
        }

        var phi = new double[m];
        for (int set = 0; set < values.Length; set++)
        {
            double w = weight[Math.Min(System.Numerics.BitOperations.PopCount((uint)set), m - 1)];
            for (int i = 0; i < m; i++)
            {
                if ((set & (1 << i)) == 0)
                {
                    phi[i] += w * (values[set | (1 << i)] - values[set]);
                }
            }
        }

        return phi;
    }

    // x [M − 1] = z_i − z_M for one coalition.
    private static void Row(byte[] mask, double[] x)
    {
        int p = x.Length;
        for (int i = 0; i < p; i++)
        {
            x[i] = mask[i] - mask[p];
        }
    }

    /// <summary>
    /// Sandwich standard errors over the sampled units (pairs, or single draws), which are independent: with
    /// g_u = Σ_{k ∈ u} w_draw·x_k·r_k the unit's share of the normal equations' residual, Cov(β) ≈ A⁻¹·S·A⁻¹ with
    /// S the units' covariance of g times their number. Enumerated coalitions are not random and add nothing.
    /// </summary>
    private static double[] StandardErrors(CoalitionSet set, Cholesky factor, double[] residual, int p)
    {
        var se = new double[p + 1];
        int count = set.Units.Count;
        if (count == 0)
        {
            return se;
        }

        if (count == 1)
        {
            Array.Fill(se, double.NaN);
            return se;
        }

        var g = new double[count * p];
        var mean = new double[p];
        var x = new double[p];
        for (int u = 0; u < count; u++)
        {
            foreach (int k in set.Units[u])
            {
                Row(set.Mask(k), x);
                for (int i = 0; i < p; i++)
                {
                    g[(u * p) + i] += set.DrawWeight * x[i] * residual[k];
                }
            }

            for (int i = 0; i < p; i++)
            {
                mean[i] += g[(u * p) + i] / count;
            }
        }

        var variance = new double[p + 1];
        var centred = new double[p];
        for (int u = 0; u < count; u++)
        {
            for (int i = 0; i < p; i++)
            {
                centred[i] = g[(u * p) + i] - mean[i];
            }

            double[] h = factor.Solve(centred);
            double last = 0;
            for (int i = 0; i < p; i++)
            {
                variance[i] += h[i] * h[i];
                last += h[i];
            }

            variance[p] += last * last;
        }

        double scale = count / (count - 1.0);
        for (int i = 0; i <= p; i++)
        {
            se[i] = Math.Sqrt(variance[i] * scale);
        }

        return se;
    }

    /// <summary>Cholesky factor of D·A·D (D = diag(A)^−½), skipping pivots below <see cref="PivotTolerance"/>.</summary>
    private sealed class Cholesky
    {
        private readonly int n;
        private readonly double[] scale;
        private readonly double[] lower;
        private readonly bool[] skipped;

        public Cholesky(double[] a, int n)
        {
            this.n = n;
            scale = new double[n];
            skipped = new bool[n];
            lower = new double[n * n];
            for (int i = 0; i < n; i++)
            {
                double diagonal = a[(i * n) + i];
                skipped[i] = !(diagonal > 0);
                scale[i] = skipped[i] ? 0 : 1 / Math.Sqrt(diagonal);
            }

            for (int j = 0; j < n; j++)
            {
                if (skipped[j])
                {
                    continue;
                }

                double pivot = (a[(j * n) + j] * scale[j] * scale[j]) - SumOfProducts(j, j, j);
                if (pivot <= PivotTolerance)
                {
                    skipped[j] = true;
                    continue;
                }

                double root = Math.Sqrt(pivot);
                lower[(j * n) + j] = root;
                for (int i = j + 1; i < n; i++)
                {
                    if (!skipped[i])
                    {
                        lower[(i * n) + j] = ((a[(i * n) + j] * scale[i] * scale[j]) - SumOfProducts(i, j, j)) / root;
                    }
                }
            }
        }

        /// <summary>x with A·x = b on the determined directions, 0 on the skipped ones.</summary>
        public double[] Solve(ReadOnlySpan<double> b)
        {
            var z = new double[n];
            for (int i = 0; i < n; i++)
            {
                if (!skipped[i])
                {
                    double sum = b[i] * scale[i];
                    for (int k = 0; k < i; k++)
                    {
                        sum -= lower[(i * n) + k] * z[k];
                    }

                    z[i] = sum / lower[(i * n) + i];
                }
            }

            for (int i = n - 1; i >= 0; i--)
            {
                if (!skipped[i])
                {
                    double sum = z[i];
                    for (int k = i + 1; k < n; k++)
                    {
                        sum -= lower[(k * n) + i] * z[k];
                    }

                    z[i] = sum / lower[(i * n) + i];
                }
            }

            for (int i = 0; i < n; i++)
            {
                z[i] *= scale[i];
            }

            return z;
        }

        // Σ_{k < end} L[i, k]·L[j, k]
        private double SumOfProducts(int i, int j, int end)
        {
            double sum = 0;
            for (int k = 0; k < end; k++)
            {
                sum += lower[(i * n) + k] * lower[(j * n) + k];
            }

            return sum;
        }
    }
}
