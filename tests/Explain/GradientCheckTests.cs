using Headlight.Explain;
using Headlight.Kernels;
using Headlight.Models.Tokenization;
using Xunit.Abstractions;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Explain;

/// <summary>
/// The backward pass against central finite differences of an independent float64 forward pass
/// (<see cref="ReferenceTransformer"/>) on tiny random encoders and decoders, for every target type:
/// the target value, the whole gradient with respect to the word embeddings (one difference per
/// coordinate), directional derivatives along random directions, zero gradient at padding, and the
/// head-gate gradients. Each backend is a column; OpenCL runs in the trixie root.
/// </summary>
public sealed class GradientCheckTests(ITestOutputHelper output)
{
    /// <summary>Relative error allowed between our gradient and the finite differences (the issue's bar).</summary>
    public const double GradientRelative = 1e-4;

    private const double Step = 1e-5;

    private static readonly int[][] BertRows = [[2, 7, 12, 9, 20, 3], [2, 15, 6, 3]];
    private static readonly int[][] Gpt2Rows = [[5, 17, 33, 2, 28], [11, 3, 39]];

    public static TheoryData<string> Backends_ => new() { "cpu", "ilgpu-cpu", "cuda" };

    [SkippableTheory]
    [MemberData(nameof(Backends_))]
    public void Encoder_targets_match_finite_differences(string backend) => Encoder(backend);

    [SkippableTheory]
    [MemberData(nameof(Backends_))]
    public void Decoder_targets_match_finite_differences(string backend) => Decoder(backend);

    [SkippableTheory]
    [MemberData(nameof(Backends_))]
    public void Head_gate_gradients_match_finite_differences(string backend) => Gates(backend);

    [SkippableFact]
    [Trait("Category", "OpenCL")]
    public void OpenCL_encoder_targets_match_finite_differences() => Encoder("opencl");

    [SkippableFact]
    [Trait("Category", "OpenCL")]
    public void OpenCL_decoder_targets_match_finite_differences() => Decoder("opencl");

    [SkippableFact]
    [Trait("Category", "OpenCL")]
    public void OpenCL_head_gate_gradients_match_finite_differences() => Gates("opencl");

    /// <summary>A target and the same scalar computed from the reference's last hidden state of one row.</summary>
    private sealed record Case(string Name, ITarget Target, Func<ReferenceTransformer, double[][], double> Reference);

    private void Encoder(string backend)
    {
        var device = Backends.Require(backend);
        using (var tiny = TinyModel.Bert(1000, TinyHead.Classifier))
        {
            Check(device, tiny, BertRows,
            [
                new("class logit", new ClassLogitTarget(1), (r, h) => r.ClassLogits(h)[1]),
                new("class probability", new ClassProbabilityTarget(2), (r, h) => Softmax(r.ClassLogits(h))[2]),
                new("output unit", new OutputUnitTarget(2, 5), (_, h) => h[2][5]),
            ]);
        }

        using (var tiny = TinyModel.Bert(2000, TinyHead.MeanPooling))
        {
            var reference = new ReferenceTransformer(tiny);
            var other = reference.SentenceEmbedding(reference.Hidden(reference.Embed([2, 21, 8, 17, 3])), cls: false);
            Check(device, tiny, BertRows,
            [
                new("similarity (mean pooling)", new EmbeddingSimilarityTarget(other.Select(v => (float)v).ToArray()), (r, h) => Dot(r.SentenceEmbedding(h, cls: false), other)),
                new("pooled unit", OutputUnitTarget.Pooled(3), (r, h) => r.SentenceEmbedding(h, cls: false)[3]),
            ]);
        }

        using (var tiny = TinyModel.Bert(3000, TinyHead.ClsPooling))
        {
            var reference = new ReferenceTransformer(tiny);
            var other = reference.SentenceEmbedding(reference.Hidden(reference.Embed([2, 11, 25, 3])), cls: true);
            Check(device, tiny, BertRows,
            [
                new("similarity (cls pooling)", new EmbeddingSimilarityTarget(other.Select(v => (float)v).ToArray()), (r, h) => Dot(r.SentenceEmbedding(h, cls: true), other)),
            ]);
        }
    }

    private void Decoder(string backend)
    {
        var device = Backends.Require(backend);
        using var tiny = TinyModel.Gpt2(4000);
        Check(device, tiny, Gpt2Rows,
        [
            new("next-token logit (last position)", new NextTokenLogitTarget(7), (r, h) => r.Logit(h, h.Length - 1, 7)),
            new("logit difference at position 1", new LogitDifferenceTarget(12, 30, 1), (r, h) => r.Logit(h, 1, 12) - r.Logit(h, 1, 30)),
            new("output unit", new OutputUnitTarget(2, 9), (_, h) => h[2][9]),
        ]);
    }

    private void Gates(string backend)
    {
        var device = Backends.Require(backend);
        using (var tiny = TinyModel.Bert(5000, TinyHead.Classifier))
        {
            CheckGates(device, tiny, BertRows, new ClassLogitTarget(0), (r, h) => r.ClassLogits(h)[0]);
        }

        using (var tiny = TinyModel.Gpt2(6000))
        {
            CheckGates(device, tiny, Gpt2Rows, new NextTokenLogitTarget(19), (r, h) => r.Logit(h, h.Length - 1, 19));
        }
    }

    private void Check(Device device, TinyModel tiny, int[][] rows, Case[] cases)
    {
        using var model = HeadlightModel.Load(tiny.Folder, device);
        var reference = new ReferenceTransformer(tiny);
        var batch = model.FromIds(rows);
        int seq = batch.SequenceLength;
        int d = TinyModel.Hidden;
        foreach (var c in cases)
        {
            var (values, gradients) = OurGradients(model, batch, c.Target);
            for (int r = 0; r < rows.Length; r++)
            {
                string what = $"{device.Name}, {(tiny.IsBert ? "encoder" : "decoder")}, {c.Name}, row {r}";
                var words = reference.Embed(rows[r]);
                double F(double[][] w) => c.Reference(reference, reference.Hidden(w));
                double value = F(words);
                Assert.True(Math.Abs(values[r] - value) <= 1e-5 * Math.Max(1, Math.Abs(value)), $"{what}: target value {values[r]} vs reference {value}.");

                // The whole gradient, one central difference per coordinate.
                int length = rows[r].Length;
                var ours = gradients[r].AsSpan(0, length * d).ToArray();
                var numeric = new double[length * d];
                for (int i = 0; i < numeric.Length; i++)
                {
                    numeric[i] = Directional(F, words, Unit(length, d, i));
                }

                double full = RelativeL2(ours, numeric);
                Assert.True(full <= GradientRelative, $"{what}: gradient relative L2 error {full:E2} vs finite differences.");

                // Random directions: our directional derivative against the difference along it.
                double worst = 0;
                for (int k = 0; k < 3; k++)
                {
                    var v = TestData.Normal(7000 + (31 * r) + k, length * d).Select(x => (double)x).ToArray();
                    double fd = Directional(F, words, v);
                    double ad = Enumerable.Range(0, v.Length).Sum(i => ours[i] * v[i]);
                    // Relative to |fd|, or to a typical directional derivative (‖g‖‖v‖/√n) where a
                    // direction happens to be nearly orthogonal to the gradient.
                    double scale = Math.Max(Math.Abs(fd), 0.1 * Norm(numeric) * Norm(v) / Math.Sqrt(v.Length));
                    worst = Math.Max(worst, Math.Abs(ad - fd) / scale);
                }

                Assert.True(worst <= GradientRelative, $"{what}: directional derivative relative error {worst:E2}.");

                // Padding never receives gradient.
                double pad = Norm(gradients[r].AsSpan(length * d).ToArray().Select(x => (double)x).ToArray());
                Assert.True(pad <= 1e-6 * Norm(numeric), $"{what}: padding positions got gradient norm {pad:E2}.");
                output.WriteLine($"{what}: value {values[r]:F6}, gradient rel. L2 {full:E2}, directional {worst:E2}");
            }
        }
    }

    private void CheckGates(Device device, TinyModel tiny, int[][] rows, ITarget target, Func<ReferenceTransformer, double[][], double> reference)
    {
        using var model = HeadlightModel.Load(tiny.Folder, device);
        var referenceModel = new ReferenceTransformer(tiny);
        var batch = model.FromIds(rows);
        var gates = Explainer.HeadGateGradients(model, batch, target);
        int layers = model.Config.Layers;
        int heads = model.Config.Heads;
        for (int r = 0; r < rows.Length; r++)
        {
            var words = referenceModel.Embed(rows[r]);
            var numeric = new double[layers * heads];
            var ours = new double[layers * heads];
            for (int l = 0; l < layers; l++)
            {
                for (int h = 0; h < heads; h++)
                {
                    double At(double xi)
                    {
                        var g = new double[layers, heads];
                        for (int a = 0; a < layers; a++)
                        {
                            for (int b = 0; b < heads; b++)
                            {
                                g[a, b] = a == l && b == h ? xi : 1;
                            }
                        }

                        return reference(referenceModel, referenceModel.Hidden(words, gates: g));
                    }

                    numeric[(l * heads) + h] = (At(1 + Step) - At(1 - Step)) / (2 * Step);
                    ours[(l * heads) + h] = gates[r, l, h];
                }
            }

            double error = RelativeL2(ours.Select(x => (float)x).ToArray(), numeric);
            string what = $"{device.Name}, {(tiny.IsBert ? "encoder" : "decoder")} head gates, row {r}";
            Assert.True(error <= GradientRelative, $"{what}: relative L2 error {error:E2}; ours [{string.Join(", ", ours)}], differences [{string.Join(", ", numeric)}].");
            output.WriteLine($"{what}: relative L2 error {error:E2}");
        }
    }

    /// <summary>Values and d(target)/d(word embeddings) [seq·d] per row, from the backward pass.</summary>
    internal static (double[] Values, float[][] Gradients) OurGradients(HeadlightModel model, TokenBatch batch, ITarget target)
    {
        target.Prepare(model, batch);
        var values = new double[batch.BatchSize];
        var gradients = new float[batch.BatchSize][];
        var embeddings = Enumerable.Range(0, batch.BatchSize).Select(r => GradientRunner.InputEmbeddings(model, batch, r)).ToArray();
        GradientRunner.Run(
            model, batch, target, batch.BatchSize, j => j,
            (j, e) => embeddings[j].CopyTo(e),
            (j, value, g, _) =>
            {
                values[j] = value;
                gradients[j] = g.ToArray();
            },
            256L << 20);
        return (values, gradients);
    }

    private static double Directional(Func<double[][], double> f, double[][] words, double[] v)
    {
        double At(double s) => f(words.Select((row, t) => row.Select((x, i) => x + (s * v[(t * row.Length) + i])).ToArray()).ToArray());
        return (At(Step) - At(-Step)) / (2 * Step);
    }

    private static double[] Unit(int length, int d, int index)
    {
        var v = new double[length * d];
        v[index] = 1;
        return v;
    }

    internal static double RelativeL2(float[] actual, double[] expected)
    {
        double num = 0;
        double den = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            num += (actual[i] - expected[i]) * (actual[i] - expected[i]);
            den += expected[i] * expected[i];
        }

        return Math.Sqrt(num / den);
    }

    private static double Norm(double[] v) => Math.Sqrt(v.Sum(x => x * x));

    private static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();

    private static double[] Softmax(double[] z)
    {
        double max = z.Max();
        var e = z.Select(x => Math.Exp(x - max)).ToArray();
        double sum = e.Sum();
        return e.Select(x => x / sum).ToArray();
    }
}
