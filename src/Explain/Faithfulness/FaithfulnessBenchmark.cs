using System.Diagnostics;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain;

/// <summary>
/// The faithfulness benchmark: does an attribution method rank the words that matter first? For each case and
/// method the words are ordered by their score (highest first); removing them one by one traces the deletion curve
/// of the target, putting them back one by one into the fully removed input traces the insertion curve. A faithful
/// method makes the deletion curve fall and the insertion curve rise faster than a random order does; AOPC (the mean
/// change from the start over the curve's points, Samek et al. 2017) and the area under each curve summarise it.
/// </summary>
/// <remarks>
/// Special tokens ([CLS], [SEP], BOS) are never removed. Identical perturbed inputs (the full and the empty input,
/// shared first steps of two orders) are run once. Every perturbed input of a case runs in one batched,
/// forward-only pass.
/// </remarks>
public static class FaithfulnessBenchmark
{
    /// <summary>Number of points of <see cref="FaithfulnessResult.Grid"/>.</summary>
    public const int GridPoints = 21;

    /// <summary>Runs every method on every case and measures its deletion and insertion curves against random orders.</summary>
    /// <exception cref="ArgumentException">No cases or methods, a case without words, or a bad option.</exception>
    /// <exception cref="TargetException">A target does not fit the model.</exception>
    public static FaithfulnessResult Run(Model model, IReadOnlyList<FaithfulnessCase> cases, IReadOnlyList<AttributionOptions> methods, FaithfulnessOptions? options = null, IProgress<FaithfulnessProgress>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(cases);
        ArgumentNullException.ThrowIfNull(methods);
        options ??= new FaithfulnessOptions();
        options.Validate();
        foreach (var method in methods)
        {
            ArgumentNullException.ThrowIfNull(method, nameof(methods));
            method.Validate();
        }

        if (cases.Count == 0)
        {
            throw new ArgumentException("The faithfulness benchmark needs at least one case.", nameof(cases));
        }

        if (methods.Count == 0)
        {
            throw new ArgumentException("The faithfulness benchmark needs at least one method.", nameof(methods));
        }

        int replacement = Replacement(model, options);
        var clock = Stopwatch.StartNew();
        var perMethod = methods.Select(_ => new List<FaithfulnessCurves>()).ToArray();
        var times = new TimeSpan[methods.Count];
        var random = new List<FaithfulnessCurves>();
        int passes = 0;
        for (int c = 0; c < cases.Count; c++)
        {
            var item = cases[c] ?? throw new ArgumentException($"Case {c} is null.", nameof(cases));
            var batch = model.Tokenize([item.Text]);
            var text = batch.Texts[0];
            var words = text.Words.Where(w => w.FirstToken + w.TokenCount <= text.Count).ToArray();
            if (words.Length == 0)
            {
                throw new ArgumentException($"Case {c} (\"{item.Text}\") has no words to remove.", nameof(cases));
            }

            var orders = new List<int[]>();
            for (int m = 0; m < methods.Count; m++)
            {
                progress?.Report(new FaithfulnessProgress($"case {c + 1}/{cases.Count}: {methods[m].Method}", c, cases.Count));
                var methodClock = Stopwatch.StartNew();
                var attribution = Explainer.Explain(model, batch, item.Target, methods[m]).Rows[0];
                times[m] += methodClock.Elapsed;
                orders.Add(Order(attribution, words));
            }

            var rng = new Random(unchecked((options.Seed * 1_000_003) + c));
            for (int s = 0; s < options.RandomOrders; s++)
            {
                var order = Enumerable.Range(0, words.Length).ToArray();
                rng.Shuffle(order);
                orders.Add(order);
            }

            progress?.Report(new FaithfulnessProgress($"case {c + 1}/{cases.Count}: curves", c, cases.Count));
            var (curves, casePasses) = Curves(model, text, words, item.Target, orders, options, replacement);
            passes += casePasses;
            for (int m = 0; m < methods.Count; m++)
            {
                perMethod[m].Add(curves[m]);
            }

            var randomCurves = curves.Skip(methods.Count).ToArray();
            random.Add(new FaithfulnessCurves(
                randomCurves[0].Fractions,
                Enumerable.Range(0, randomCurves[0].Deletion.Count).Select(i => randomCurves.Average(r => r.Deletion[i])).ToArray(),
                Enumerable.Range(0, randomCurves[0].Insertion.Count).Select(i => randomCurves.Average(r => r.Insertion[i])).ToArray()));
        }

        progress?.Report(new FaithfulnessProgress("done", cases.Count, cases.Count));
        var grid = Enumerable.Range(0, GridPoints).Select(i => i / (double)(GridPoints - 1)).ToArray();
        var results = methods.Select((m, i) => new MethodFaithfulness(m.Method, perMethod[i], grid, times[i])).ToArray();
        return new FaithfulnessResult(model.Name, model.Device.Name, options.Describe(), cases.Count, results, new MethodFaithfulness("random", random, grid, TimeSpan.Zero), grid, passes, clock.Elapsed);
    }

    /// <summary>Word indices by score, highest first (ties: earlier word first).</summary>
    internal static int[] Order(Attribution attribution, IReadOnlyList<TokenizedWord> words)
    {
        var scores = new double[words.Count];
        for (int w = 0; w < words.Count; w++)
        {
            var match = attribution.Words.FirstOrDefault(s => s.FirstToken == words[w].FirstToken);
            scores[w] = match?.Score ?? Sum(attribution.TokenScores, words[w].FirstToken, words[w].TokenCount);
        }

        return Enumerable.Range(0, words.Count).OrderByDescending(w => scores[w]).ThenBy(w => w).ToArray();
    }

    // The deletion and insertion curves of every order on one case, all perturbed inputs in one forward-only run.
    private static (FaithfulnessCurves[] Curves, int Passes) Curves(Model model, TokenizedText text, TokenizedWord[] words, ITarget target, List<int[]> orders, FaithfulnessOptions options, int replacement)
    {
        int m = words.Length;
        int steps = Math.Min(m, options.MaxSteps ?? m);
        var ks = Enumerable.Range(0, steps + 1).Select(i => (int)Math.Round(i * (double)m / steps, MidpointRounding.AwayFromZero)).ToArray();
        var fractions = ks.Select(k => k / (double)m).ToArray();

        // Each curve point is a set of removed words; equal sets share one row.
        var rows = new List<IReadOnlyList<int>>();
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        int Row(bool[] removed)
        {
            string key = new(removed.Select(r => r ? '1' : '0').ToArray());
            if (!index.TryGetValue(key, out int row))
            {
                row = rows.Count;
                index[key] = row;
                rows.Add(Perturb(text, words, removed, options.Removal, replacement));
            }

            return row;
        }

        var plan = orders.Select(order => (
            Deletion: ks.Select(k => Row(Removed(m, order, k, deleting: true))).ToArray(),
            Insertion: ks.Select(k => Row(Removed(m, order, k, deleting: false))).ToArray())).ToArray();

        var batch = model.FromIds(rows);
        target.Prepare(model, batch);
        var values = new double[rows.Count];
        int passes = GradientRunner.Run(
            model, batch, target, rows.Count, job => job,
            (job, e) => GradientRunner.InputEmbeddings(model, batch, job).CopyTo(e),
            (job, value, _, _) => values[job] = value,
            options.MemoryBudgetBytes,
            backward: false);
        var curves = plan.Select(p => new FaithfulnessCurves(fractions, p.Deletion.Select(r => values[r]).ToArray(), p.Insertion.Select(r => values[r]).ToArray())).ToArray();
        return (curves, passes);
    }

    // Deleting: the first k words of the order are removed. Inserting: all but the first k are removed.
    private static bool[] Removed(int m, int[] order, int k, bool deleting)
    {
        var removed = new bool[m];
        for (int i = 0; i < m; i++)
        {
            removed[order[i]] = deleting ? i < k : i >= k;
        }

        return removed;
    }

    private static int[] Perturb(TokenizedText text, TokenizedWord[] words, bool[] removed, WordRemoval mode, int replacement)
    {
        var ids = text.Ids.ToArray();
        var drop = new bool[ids.Length];
        for (int w = 0; w < words.Length; w++)
        {
            if (!removed[w])
            {
                continue;
            }

            for (int t = words[w].FirstToken; t < words[w].FirstToken + words[w].TokenCount; t++)
            {
                if (mode == WordRemoval.Mask)
                {
                    ids[t] = replacement;
                }
                else
                {
                    drop[t] = true;
                }
            }
        }

        if (mode == WordRemoval.Mask)
        {
            return ids;
        }

        var kept = ids.Where((_, t) => !drop[t]).ToArray();

        // A text without special tokens loses every token when all words go: one replacement token stands in.
        return kept.Length > 0 ? kept : [replacement];
    }

    private static int Replacement(Model model, FaithfulnessOptions options)
    {
        int id = options.ReplacementTokenId
            ?? Explainer.MaskToken(model)
            ?? model.Tokenizer?.PadTokenId
            ?? 0;
        if ((uint)id >= (uint)model.Config.VocabSize)
        {
            throw new ArgumentException($"Replacement token {id} is outside the vocabulary [0, {model.Config.VocabSize}) of model '{model.Name}'.", nameof(options));
        }

        return id;
    }

    private static double Sum(IReadOnlyList<double> values, int start, int count)
    {
        double sum = 0;
        for (int i = start; i < Math.Min(values.Count, start + count); i++)
        {
            sum += values[i];
        }

        return sum;
    }
}
