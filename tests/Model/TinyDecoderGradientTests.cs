using Headlight.Explain;
using Headlight.Models;
using Xunit.Abstractions;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Model;

/// <summary>
/// GPT-NeoX, Llama and Qwen2 on tiny odd-sized random models (<see cref="TinyDecoder"/>), each backend a column: the
/// gradient w.r.t. the input embeddings against central finite differences of forward passes fed perturbed embeddings,
/// and LRP relevance totals with every bias zeroed (CP-LRP conserves F at every boundary and at the input).
/// </summary>
public sealed class TinyDecoderGradientTests(ITestOutputHelper output)
{
    /// <summary>The bar for |finite difference − g·u| / ‖g‖ along each direction u.</summary>
    public const double FiniteDifferenceRelative = 1e-4;

    // Central differences at h and h/2 combined by Richardson extrapolation (error O(h⁴)) along unit directions of the
    // whole [t, d] input (‖x‖ ≈ 10). h = 0.02 balances float32 rounding of the target (≈1e-6 absolute, divided by 2h)
    // against truncation: at 0.05 Llama's SwiGLU curvature shows (1.1e-4), at 0.01 rounding does (7e-5); here ≤ 2.2e-5.
    private const double Step = 0.02;

    private static readonly int[] Ids = [5, 70, 33, 120, 9, 201, 44, 260];

    public static TheoryData<TinyFamily, string> FamilyBackends
    {
        get
        {
            var data = new TheoryData<TinyFamily, string>();
            foreach (var f in TinyDecoder.All)
            {
                foreach (string b in new[] { "cpu", "ilgpu-cpu", "cuda" })
                {
                    data.Add(f, b);
                }
            }

            return data;
        }
    }

    public static TheoryData<TinyFamily> Families => new(TinyDecoder.All);

    [SkippableTheory]
    [MemberData(nameof(FamilyBackends))]
    public void Input_embedding_gradient_matches_finite_differences(TinyFamily family, string backend) => FiniteDifferences(family, backend);

    [SkippableTheory]
    [MemberData(nameof(Families))]
    [Trait("Category", "OpenCL")]
    public void OpenCL_input_embedding_gradient_matches_finite_differences(TinyFamily family) => FiniteDifferences(family, "opencl");

    [SkippableTheory]
    [MemberData(nameof(FamilyBackends))]
    public void Cp_lrp_conserves_relevance_without_biases(TinyFamily family, string backend) => Conservation(family, backend);

    [SkippableTheory]
    [MemberData(nameof(Families))]
    [Trait("Category", "OpenCL")]
    public void OpenCL_cp_lrp_conserves_relevance_without_biases(TinyFamily family) => Conservation(family, "opencl");

    private void FiniteDifferences(TinyFamily family, string backend)
    {
        var device = Backends.Require(backend);
        using var tiny = TinyDecoder.Create(family, 7100 + (int)family);
        using var model = HeadlightModel.Load(tiny.Folder, device);
        int d = model.Config.Hidden;
        int t = Ids.Length;
        var batch = model.FromIds([Ids]);
        var words = model.WordEmbeddings.ToArray();
        var x = new float[t * d];
        for (int i = 0; i < t; i++)
        {
            words.AsSpan(Ids[i] * d, d).CopyTo(x.AsSpan(i * d, d));
        }

        // Two targets read off the last hidden state at the last position: one logit, and a random projection.
        var head = model.OutputEmbeddings.ToArray();
        var projection = TestData.Uniform(7300 + (int)family, d);
        var targets = new (string Name, float[] Weights)[] { ("logit 17 at the last position", head.AsSpan(17 * d, d).ToArray()), ("random projection of the last hidden state", projection) };
        foreach (var (name, w) in targets)
        {
            double Value(float[] embeddings)
            {
                using var pass = model.Run(PassRequest.For(batch) with { TokenEmbeddings = embeddings });
                var hidden = pass.LastHiddenState.ToArray();
                double sum = 0;
                for (int j = 0; j < d; j++)
                {
                    sum += (double)w[j] * hidden[((t - 1) * d) + j];
                }

                return sum;
            }

            var seed = new float[t * d];
            w.CopyTo(seed.AsSpan((t - 1) * d, d));
            float[] g;
            using (var pass = model.Run(PassRequest.For(batch) with { TokenEmbeddings = x, Backward = new BackwardOptions { Rule = BackwardRule.Gradient } }))
            {
                pass.Backward(seed);
                g = pass.InputSignal.ToArray();
            }

            double norm = Math.Sqrt(g.Sum(v => (double)v * v));
            Assert.True(norm > 1e-3, $"{family} on {backend}, {name}: the gradient is (nearly) zero, ‖g‖ = {norm:E2}.");

            // The gradient's own direction (a true relative error) and three random unit directions.
            var directions = new List<double[]> { g.Select(v => v / norm).ToArray() };
            for (int k = 0; k < 3; k++)
            {
                var u = TestData.Normal(7400 + (10 * (int)family) + k, t * d).Select(v => (double)v).ToArray();
                double un = Math.Sqrt(u.Sum(v => v * v));
                directions.Add(u.Select(v => v / un).ToArray());
            }

            double worst = 0;
            foreach (var u in directions)
            {
                double Central(double h)
                {
                    var plus = new float[x.Length];
                    var minus = new float[x.Length];
                    for (int i = 0; i < x.Length; i++)
                    {
                        plus[i] = (float)(x[i] + (h * u[i]));
                        minus[i] = (float)(x[i] - (h * u[i]));
                    }

                    return (Value(plus) - Value(minus)) / (2 * h);
                }

                double fd = ((4 * Central(Step / 2)) - Central(Step)) / 3;
                double analytic = 0;
                for (int i = 0; i < x.Length; i++)
                {
                    analytic += g[i] * u[i];
                }

                double error = Math.Abs(fd - analytic) / norm;
                worst = Math.Max(worst, error);
                Assert.True(error <= FiniteDifferenceRelative, $"{family} on {backend}, {name}: g·u = {analytic:R}, finite difference {fd:R}, |Δ|/‖g‖ = {error:E2}.");
            }

            output.WriteLine($"{family} on {device.Name}, {name}: ‖g‖ = {norm:F5}, worst |FD − g·u|/‖g‖ over 4 directions {worst:E2} (h = {Step}, Richardson).");
        }
    }

    private void Conservation(TinyFamily family, string backend)
    {
        var device = Backends.Require(backend);
        using var tiny = TinyDecoder.Create(family, 7200 + (int)family, zeroBiases: true);
        using var model = HeadlightModel.Load(tiny.Folder, device);
        int[][] rows = [Ids, [12, 250, 3, 77, 140]];
        var batch = model.FromIds(rows);
        var target = new NextTokenLogitTarget(17);
        const double epsilon = 1e-9;
        var cp = Explainer.Relevance(model, batch, target, new LrpOptions { Rules = LrpRules.CpLrp, Epsilon = epsilon });
        var attn = Explainer.Relevance(model, batch, target, new LrpOptions { Epsilon = epsilon });
        for (int r = 0; r < rows.Length; r++)
        {
            string what = $"{family} on {device.Name}, row {r}";
            var row = cp.Rows[r];
            double f = row.TargetValue;
            double worst = new[] { row.InputTotal, row.OutputTotal }.Concat(row.LayerTotals).Select(v => Math.Abs(v - f)).Aggregate(0.0, Math.Max) / Math.Abs(f);
            Assert.True(worst <= 1e-3, $"{what}: CP-LRP without biases is {worst:E2} (relative) from F = {f} somewhere: input {row.InputTotal}, "
                + $"boundaries [{string.Join(", ", row.LayerTotals)}], output {row.OutputTotal}.");

            // AttnLRP: the softmax's Taylor rule is not conservative, but nothing is lost above the last attention crossed.
            var a = attn.Rows[r];
            Assert.Equal(f, a.TargetValue, 1e-9 * Math.Max(1, Math.Abs(f)));
            double top = Math.Max(Math.Abs(a.OutputTotal - f), Math.Abs(a.LayerTotals[^1] - f)) / Math.Abs(f);
            Assert.True(top <= 1e-3, $"{what}: AttnLRP loses {top:E2} of F = {f} above the last attention (output {a.OutputTotal}, last boundary {a.LayerTotals[^1]}).");
            Assert.All(a.LayerTotals.Append(a.InputTotal), v => Assert.True(double.IsFinite(v), $"{what}: AttnLRP total {v}."));
            output.WriteLine($"{what}: F {f:F6}; CP-LRP worst |Σ R − F|/|F| {worst:E2} (input {row.InputTotal:F6}); AttnLRP Σ per boundary "
                + $"[{string.Join(", ", a.LayerTotals.Select(v => v.ToString("F5")))}], input {a.InputTotal:F6}");
        }
    }
}
