using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="CrossEntropy"/>: odd shapes, rows not counted, scratch blocks of 1, 3 and all rows, with
/// and without each gradient, dHead accumulating onto nonzero content, logits near ±80, and gradients checked against
/// central finite differences of the float64 loss.
/// </summary>
public sealed class CrossEntropyCases : IOpCaseSource
{
    /// <summary>Which gradients a case asks for.</summary>
    [Flags]
    private enum Grads
    {
        None = 0,
        Hidden = 1,
        Head = 2,
        Both = Hidden | Head,
    }

    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        int index = 0;
        foreach (int rows in new[] { 1, 7, 33 })
        {
            foreach (int d in new[] { 5, 64 })
            {
                foreach (int vocab in new[] { 3, 257, 1000 })
                {
                    bool tiny = rows <= 7 && vocab <= 257;
                    int[] blocks = [1, 3, rows + 2];
                    Grads[] partial = [Grads.None, Grads.Hidden, Grads.Head];
                    yield return Case(rows, d, vocab, blocks[index % 3], Grads.Both, tiny, extreme: false);
                    yield return Case(rows, d, vocab, blocks[(index + 1) % 3], partial[index % 3], tiny, extreme: false);
                    index++;
                }
            }
        }

        // Logits near ±80: exp without the maximum subtracted overflows float32.
        yield return Case(7, 5, 257, 3, Grads.Both, tiny: true, extreme: true);
        yield return Case(33, 64, 1000, 33, Grads.Both, tiny: false, extreme: true);
        yield return Case(1, 64, 3, 1, Grads.Both, tiny: true, extreme: true);

        // Longer than a warp-per-row kernel takes, and the shared-memory row path forced on short rows.
        yield return Case(2, 5, 1500, 1, Grads.Both, tiny: true, extreme: false);
        yield return Shared(Case(7, 5, 257, 3, Grads.Both, tiny: true, extreme: false));
        yield return Shared(Case(3, 64, 3, 2, Grads.Both, tiny: true, extreme: false));
        yield return Shared(Case(7, 5, 257, 3, Grads.Both, tiny: true, extreme: true));

        // Every row not counted: loss and dHidden all 0, dHead unchanged.
        yield return new OpCase("CrossEntropy.Run", "rows=3 d=5 vocab=7 all ignored", true, d => Run(d, 3, 5, 7, 2, Grads.Both, extreme: false, allIgnored: true, finiteDifferences: false));

        // Gradients against central differences of the float64 loss·scale sum.
        yield return new OpCase("CrossEntropy.Run", "rows=7 d=5 vocab=3 block=3 finite differences", true, d => Run(d, 7, 5, 3, 3, Grads.Both, extreme: false, allIgnored: false, finiteDifferences: true));
        yield return new OpCase("CrossEntropy.Run", "rows=7 d=5 vocab=257 block=1 finite differences", true, d => Run(d, 7, 5, 257, 1, Grads.Both, extreme: false, allIgnored: false, finiteDifferences: true));
        yield return new OpCase("CrossEntropy.Run", "rows=3 d=64 vocab=33 block=8 finite differences", true, d => Run(d, 3, 64, 33, 8, Grads.Both, extreme: false, allIgnored: false, finiteDifferences: true));
    }

    private static OpCase Case(int rows, int d, int vocab, int block, Grads grads, bool tiny, bool extreme)
    {
        string shape = $"rows={rows} d={d} vocab={vocab} block={block}"
            + ((grads & Grads.Hidden) != 0 ? " dHidden" : string.Empty)
            + ((grads & Grads.Head) != 0 ? " dHead" : string.Empty)
            + (extreme ? " logits±80" : string.Empty);
        return new OpCase("CrossEntropy.Run", shape, tiny, dev => Run(dev, rows, d, vocab, block, grads, extreme, allIgnored: false, finiteDifferences: false));
    }

    private static OpCase Shared(OpCase c) => c with { Shape = $"{c.Shape} rows=shared", Run = Headlight.Tests.Kernels.RowPathCases.On(true, c.Run) };

    private static void Run(Device device, int rows, int d, int vocab, int block, Grads grads, bool extreme, bool allIgnored, bool finiteDifferences)
    {
        // Normal entries give logits of standard deviation √d·sh·sw: 1 normally, 80 for the extreme cases.
        float logitScale = extreme ? 80f : 1f;
        float[] hidden = TestData.Normal(31 + rows, (long)rows * d, (float)(Math.Sqrt(logitScale) / Math.Sqrt(d)));
        float[] head = TestData.Normal(37 + vocab, (long)vocab * d, (float)Math.Sqrt(logitScale));
        float[] dHeadStart = TestData.Normal(41, (long)vocab * d);
        var random = new Random(43 + rows + vocab);
        int[] targets = new int[rows];
        for (int r = 0; r < rows; r++)
        {
            targets[r] = allIgnored || (rows > 1 && r % 3 == 1) ? -1 : random.Next(vocab);
        }

        float scale = 1f / Math.Max(1, targets.Count(t => t >= 0));

        using var th = device.FromHost<float>(hidden, rows, d);
        using var tw = device.FromHost<float>(head, vocab, d);
        using var tt = device.FromHost<int>(targets, rows);
        using var tloss = TestData.Poisoned(device, rows);
        using var tdh = (grads & Grads.Hidden) != 0 ? TestData.Poisoned(device, rows, d) : null;
        using var tdw = (grads & Grads.Head) != 0 ? device.FromHost<float>(dHeadStart, vocab, d) : null;
        using var scratch = TestData.Poisoned(device, block, vocab);
        CrossEntropy.Run(th, tw, tt, tloss, tdh, tdw, scale, scratch);

        var reference = Reference(hidden, head, targets, rows, d, vocab, scale);
        var tolerance = extreme ? Tolerances.CrossEntropyExtreme : Tolerances.CrossEntropy;
        Compare.Close(tloss.ToArray(), reference.Loss, tolerance, "loss");
        if (tdh is not null)
        {
            Compare.Close(tdh.ToArray(), reference.DHidden, tolerance, "dHidden");
        }

        if (tdw is not null)
        {
            var expected = new double[reference.DHead.Length];
            for (int i = 0; i < expected.Length; i++)
            {
                expected[i] = dHeadStart[i] + reference.DHead[i];
            }

            Compare.Close(tdw.ToArray(), expected, tolerance, "dHead");
        }

        if (finiteDifferences)
        {
            CheckFiniteDifferences(tdh!.ToArray(), tdw!.ToArray(), dHeadStart, hidden, head, targets, rows, d, vocab, scale);
        }
    }

    private readonly record struct Expected(double[] Loss, double[] DHidden, double[] DHead);

    // Float64: logits = h·wᵀ; loss = lse − logit[t]; G = scale·(softmax − onehot) (0 rows when not counted); dh = G·w; dw = Gᵀ·h.
    private static Expected Reference(float[] hidden, float[] head, int[] targets, int rows, int d, int vocab, double scale)
    {
        var loss = new double[rows];
        var dh = new double[rows * d];
        var dw = new double[vocab * d];
        var logits = new double[vocab];
        for (int r = 0; r < rows; r++)
        {
            if (targets[r] < 0)
            {
                continue;
            }

            RowLogits(hidden, head, r, d, vocab, logits);
            double max = logits.Max();
            double sum = logits.Sum(l => Math.Exp(l - max));
            loss[r] = max + Math.Log(sum) - logits[targets[r]];
            for (int c = 0; c < vocab; c++)
            {
                double g = scale * ((Math.Exp(logits[c] - max) / sum) - (c == targets[r] ? 1 : 0));
                for (int k = 0; k < d; k++)
                {
                    dh[(r * d) + k] += g * head[(c * d) + k];
                    dw[(c * d) + k] += g * hidden[(r * d) + k];
                }
            }
        }

        return new Expected(loss, dh, dw);
    }

    private static void RowLogits(ReadOnlySpan<float> hidden, ReadOnlySpan<float> head, int r, int d, int vocab, double[] logits)
    {
        for (int c = 0; c < vocab; c++)
        {
            double dot = 0;
            for (int k = 0; k < d; k++)
            {
                dot += (double)hidden[(r * d) + k] * head[(c * d) + k];
            }

            logits[c] = dot;
        }
    }

    // scale · Σ_r loss_r over the counted rows, in float64 with the inputs as doubles.
    private static double Objective(double[] hidden, double[] head, int[] targets, int rows, int d, int vocab, double scale)
    {
        double total = 0;
        var logits = new double[vocab];
        for (int r = 0; r < rows; r++)
        {
            if (targets[r] < 0)
            {
                continue;
            }

            for (int c = 0; c < vocab; c++)
            {
                double dot = 0;
                for (int k = 0; k < d; k++)
                {
                    dot += hidden[(r * d) + k] * head[(c * d) + k];
                }

                logits[c] = dot;
            }

            double max = logits.Max();
            total += max + Math.Log(logits.Sum(l => Math.Exp(l - max))) - logits[targets[r]];
        }

        return scale * total;
    }

    private static void CheckFiniteDifferences(float[] dHidden, float[] dHead, float[] dHeadStart, float[] hidden, float[] head,
        int[] targets, int rows, int d, int vocab, double scale)
    {
        const double h = 1e-4;
        double[] x = TestData.ToDouble(hidden);
        double[] w = TestData.ToDouble(head);
        var expectedHidden = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double keep = x[i];
            x[i] = keep + h;
            double up = Objective(x, w, targets, rows, d, vocab, scale);
            x[i] = keep - h;
            double down = Objective(x, w, targets, rows, d, vocab, scale);
            x[i] = keep;
            expectedHidden[i] = (up - down) / (2 * h);
        }

        var expectedHead = new double[w.Length];
        for (int i = 0; i < w.Length; i++)
        {
            double keep = w[i];
            w[i] = keep + h;
            double up = Objective(x, w, targets, rows, d, vocab, scale);
            w[i] = keep - h;
            double down = Objective(x, w, targets, rows, d, vocab, scale);
            w[i] = keep;
            expectedHead[i] = dHeadStart[i] + ((up - down) / (2 * h));
        }

        Compare.Close(dHidden, expectedHidden, Tolerances.CrossEntropy, "dHidden vs finite differences");
        Compare.Close(dHead, expectedHead, Tolerances.CrossEntropy, "dHead vs finite differences");
    }
}
