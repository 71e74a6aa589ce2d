using Headlight.Explain;
using Headlight.Kernels;
using Xunit.Abstractions;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Explain;

/// <summary>
/// Attention rollout and gradient-weighted attention on tiny random encoders and decoders against float64 references:
/// the probabilities come from <see cref="LrpReference"/>'s float64 forward, their gradients from central differences
/// of the target value with each probability nudged in the reference forward (no backward pass), and the combination
/// across layers is written out here. Padded batches, so padding must not leak into the matrices.
/// </summary>
public sealed class RolloutTests(ITestOutputHelper output)
{
    private static readonly int[][] BertRows = [[2, 7, 12, 9, 20, 3], [2, 15, 6, 3]];
    private static readonly int[][] Gpt2Rows = [[5, 17, 33, 2, 28], [11, 3, 39]];

    public static TheoryData<string> Backends_ => new() { "cpu", "ilgpu-cpu", "cuda" };

    [SkippableTheory]
    [MemberData(nameof(Backends_))]
    public void Encoder_rollout_and_gradient_attention_match_float64(string backend)
    {
        var device = Backends.Require(backend);
        using var tiny = TinyModel.Bert(5100, TinyHead.Classifier);
        Check(device, tiny, BertRows, new ClassLogitTarget(1), _ => new LrpReference.ClassHead(1, false), _ => [0]);
    }

    [SkippableTheory]
    [MemberData(nameof(Backends_))]
    public void Decoder_rollout_and_gradient_attention_match_float64(string backend)
    {
        var device = Backends.Require(backend);
        using var tiny = TinyModel.Gpt2(5200);
        Check(device, tiny, Gpt2Rows, new NextTokenLogitTarget(7), ids => new LrpReference.LmHead(ids.Length - 1, 7), ids => [ids.Length - 1]);
    }

    [Fact]
    public void Mean_pooling_reads_every_real_token()
    {
        using var tiny = TinyModel.Bert(5300, TinyHead.MeanPooling);
        var other = LrpTests.Embedding(tiny, [2, 21, 8, 17, 3], cls: false);
        Check(Backends.Require("cpu"), tiny, BertRows, new EmbeddingSimilarityTarget(other), _ => new LrpReference.SimilarityHead(TestData.ToDouble(other), false),
            ids => Enumerable.Range(0, ids.Length).ToArray());
    }

    [Fact]
    public void Bad_options_are_typed_errors()
    {
        using var tiny = TinyModel.Gpt2(5400);
        using var model = HeadlightModel.Load(tiny.Folder, Backends.Require("cpu"));
        var batch = model.FromIds(Gpt2Rows);
        foreach (double w in new[] { -0.1, 1.5, double.NaN })
        {
            var e = Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.Rollout(model, batch, new NextTokenLogitTarget(3), new AttentionRolloutOptions { ResidualWeight = w }));
            Assert.Contains(nameof(AttentionRolloutOptions.ResidualWeight), e.Message, StringComparison.Ordinal);
        }

        Assert.Throws<ArgumentNullException>(() => Explainer.Rollout(model, batch, null!, new GradientAttentionOptions()));
        Assert.Throws<TargetException>(() => Explainer.Rollout(model, batch, new NextTokenLogitTarget(TinyModel.Gpt2Vocab + 5), new GradientAttentionOptions()));
    }

    private void Check(Device device, TinyModel tiny, int[][] rows, ITarget target, Func<int[], LrpReference.Head> head, Func<int[], int[]> queries)
    {
        using var model = HeadlightModel.Load(tiny.Folder, device);
        var reference = new LrpReference(tiny);
        var batch = model.FromIds(rows);
        foreach (double w in new[] { 0.5, 0.2 })
        {
            var rollout = Explainer.Rollout(model, batch, target, new AttentionRolloutOptions { ResidualWeight = w });
            Assert.Equal("rollout", rollout.Attributions.Method);
            for (int r = 0; r < rows.Length; r++)
            {
                var expected = ReferenceRollout(reference.Probabilities(rows[r]), w, rows[r].Length);
                Agree($"{device.Name} {(tiny.IsBert ? "encoder" : "decoder")} rollout w={w} row {r}", rollout, r, expected, queries(rows[r]), 1e-5);
            }
        }

        var gradient = Explainer.Rollout(model, batch, target, new GradientAttentionOptions());
        Assert.Equal("gradattn", gradient.Attributions.Method);
        for (int r = 0; r < rows.Length; r++)
        {
            var probabilities = reference.Probabilities(rows[r]);
            var gradients = ReferenceGradients(reference, rows[r], head(rows[r]), probabilities);
            var expected = ReferenceGradientAttention(probabilities, gradients, rows[r].Length);
            Agree($"{device.Name} {(tiny.IsBert ? "encoder" : "decoder")} gradattn row {r}", gradient, r, expected, queries(rows[r]), 1e-4);
        }
    }

    private void Agree(string what, RolloutResult result, int r, double[,] expected, int[] queries, double tolerance)
    {
        int n = expected.GetLength(0);
        var matrix = result.Matrices[r];
        Assert.Equal(n, matrix.GetLength(0));
        Assert.Equal(n, matrix.GetLength(1));
        double error = LrpTests.RelativeL2(matrix.Cast<double>().ToArray(), expected.Cast<double>().ToArray());
        Assert.True(error <= tolerance, $"{what}: matrix relative L2 error {error:E2} vs float64.");

        var scores = Enumerable.Range(0, n).Select(j => queries.Sum(i => expected[i, j]) / queries.Length).ToArray();
        double scoreError = LrpTests.RelativeL2(result.Attributions.Rows[r].TokenScores.ToArray(), scores);
        Assert.True(scoreError <= tolerance, $"{what}: token scores relative L2 error {scoreError:E2} vs float64.");
        output.WriteLine($"{what}: matrix error {error:E2}, scores error {scoreError:E2}");
    }

    // M = Ã_L ⋯ Ã_1, Ã = (1 − w)·mean_h P + w·I.
    private static double[,] ReferenceRollout(double[][][][] probabilities, double w, int n)
    {
        var m = Identity(n);
        foreach (var layer in probabilities)
        {
            var mixed = new double[n, n];
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    mixed[i, j] = ((1 - w) * layer.Average(h => h[i][j])) + (i == j ? w : 0);
                }
            }

            m = Product(mixed, m);
        }

        return m;
    }

    // R = I; R ← R + mean_h (G ⊙ P)⁺ · R per layer from the first; R − I.
    private static double[,] ReferenceGradientAttention(double[][][][] probabilities, double[][][][] gradients, int n)
    {
        var r = Identity(n);
        for (int l = 0; l < probabilities.Length; l++)
        {
            var a = new double[n, n];
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    for (int h = 0; h < probabilities[l].Length; h++)
                    {
                        a[i, j] += Math.Max(0, gradients[l][h][i][j] * probabilities[l][h][i][j]) / probabilities[l].Length;
                    }
                }
            }

            var step = Product(a, r);
            for (int i = 0; i < n; i++)
            {
                for (int j = 0; j < n; j++)
                {
                    r[i, j] += step[i, j];
                }
            }
        }

        for (int i = 0; i < n; i++)
        {
            r[i, i] -= 1;
        }

        return r;
    }

    // ∂F/∂P[l][h][i][j] by central differences of the float64 forward with that one probability nudged.
    private static double[][][][] ReferenceGradients(LrpReference reference, int[] ids, LrpReference.Head head, double[][][][] probabilities)
    {
        const double step = 1e-5;
        return probabilities.Select((layer, l) => layer.Select((p, h) => p.Select((row, i) => row.Select((_, j) =>
        {
            double Nudged(double by) => reference.Value(ids, head, (at, probs) =>
            {
                if (at == l)
                {
                    probs[h][i][j] += by;
                }
            });

            return (Nudged(step) - Nudged(-step)) / (2 * step);
        }).ToArray()).ToArray()).ToArray()).ToArray();
    }

    private static double[,] Product(double[,] a, double[,] b)
    {
        int n = a.GetLength(0);
        var c = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            for (int j = 0; j < n; j++)
            {
                for (int k = 0; k < n; k++)
                {
                    c[i, j] += a[i, k] * b[k, j];
                }
            }
        }

        return c;
    }

    private static double[,] Identity(int n)
    {
        var m = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            m[i, i] = 1;
        }

        return m;
    }
}
