using System.Diagnostics;
using System.Globalization;
using Headlight.Models;

namespace Headlight.Explain.Census;

/// <summary>
/// The head census: what every attention head of a model does, measured without labels over a corpus
/// (entropy, confidence, previous/next-token and fixed-offset scores, attention to [CLS]/BOS, [SEP] and
/// punctuation, duplicate-token and induction scores on repeated random tokens), each head's importance
/// (mean |∂L/∂ξ| of a gate on its output, Michel et al. 2019) and the drop of the target when it is
/// ablated, the roles that pass <see cref="CensusThresholds"/>, and the same census of random-weight
/// models of the same configuration as controls.
/// </summary>
/// <remarks>
/// Only attention probabilities are captured; the metrics are summed batch by batch and nothing else is
/// kept. Every number is a deterministic function of the model, the corpus and the options: running the
/// census twice gives the same numbers (only <see cref="CensusResult.Elapsed"/> differs).
/// </remarks>
public static class HeadCensus
{
    private const int MaxBatchRows = 64;
    private const long GradientMemoryBudget = 256L << 20;

    /// <summary>Runs the census of <paramref name="model"/>.</summary>
    /// <exception cref="ArgumentException">The model cannot run the corpus (an option is out of range, a text is longer than the model allows).</exception>
    /// <exception cref="InvalidOperationException">The model produced a value or gradient that is not finite.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled: the census stops after the batch (or ablated head) in progress, with every weight restored, and the model stays usable.</exception>
    public static CensusResult Run(Model model, CensusOptions? options = null, IProgress<CensusProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        options ??= new CensusOptions();
        options.Validate();
        var clock = Stopwatch.StartNew();
        var corpus = options.Corpus ?? CensusCorpus.BuiltIn();
        var plan = CorpusPlan.Build(model, corpus, options.Tagged);
        var textBatches = CorpusPlan.Batches(plan.Texts.Select(t => t.Length).ToList(), options.BatchTokens, MaxBatchRows);
        var repeatBatches = CorpusPlan.Batches(plan.Repeats.Select(r => r.Length).ToList(), options.BatchTokens, MaxBatchRows);
        var taggedBatches = CorpusPlan.Batches(plan.Tagged.Select(r => r.Length).ToList(), options.BatchTokens, MaxBatchRows);
        var config = model.Config;

        var (stats, embeddings) = Capture(model, plan, textBatches, repeatBatches, taggedBatches, options.Importance && config.Family == ModelFamily.BertEncoder, progress, "capture", cancellationToken);
        var gallery = embeddings is null ? null : RetrievalGallery.Calibrate(embeddings);
        var heads = Heads(stats, config.Layers, config.Heads);

        string? target = null;
        double? baseline = null;
        int ablationTexts = 0;
        if (options.Importance)
        {
            target = CensusTargets.Describe(config.Family, gallery);
            var importance = Importance(model, plan, textBatches, gallery, progress, cancellationToken);
            var (drops, mean, count) = Ablation(model, plan, gallery, options, progress, cancellationToken);
            baseline = mean;
            ablationTexts = count;
            double total = importance.Sum();
            heads = heads.Select((h, i) => h with
            {
                Importance = importance[i],
                ImportanceShare = total == 0 ? 0 : importance[i] / total,
                AblationDrop = drops[i],
            }).ToArray();
        }

        var controls = new List<ControlCensus>();
        foreach (int seed in options.ControlSeeds)
        {
            using var control = RandomWeights.Control(model, seed);
            var (controlStats, _) = Capture(control, plan, textBatches, repeatBatches, taggedBatches, false, progress, $"control seed {seed}", cancellationToken);
            var controlHeads = Heads(controlStats, config.Layers, config.Heads);
            controls.Add(new ControlCensus(seed, controlHeads, RoleShares.Of(controlHeads)));
        }

        return new CensusResult
        {
            Model = model.Name,
            Family = FamilyText(config),
            Parameters = config.ParameterCount,
            Layers = config.Layers,
            HeadsPerLayer = config.Heads,
            Device = model.Device.Name,
            Corpus = new CorpusSummary(corpus.Name, corpus.Sha256, plan.TextSource, plan.Texts.Count, plan.TextTokens, plan.Repeats.Count, plan.RepeatLength, plan.RepeatTokens, corpus.Seed, ablationTexts),
            Tagged = options.Tagged is null ? null : TaggedSummaryOf(options.Tagged, plan),
            Target = target,
            TargetBaseline = baseline,
            Heads = heads,
            Chance = stats.Chance(),
            Shares = RoleShares.Of(heads),
            Controls = controls,
            Elapsed = clock.Elapsed,
        };
    }

    // The block layout, and for grouped-query attention which key/value head each query head reads (heads are counted per query head).
    private static string FamilyText(ModelConfig config)
    {
        string family = config.Family switch
        {
            ModelFamily.BertEncoder => "bert-encoder",
            ModelFamily.Gpt2Decoder => "gpt2-decoder",
            ModelFamily.GptNeoXDecoder => "gpt-neox-decoder",
            ModelFamily.LlamaDecoder => "llama-decoder",
            _ => "qwen2-decoder",
        };
        int group = config.Heads / config.KeyValueHeads;
        return group == 1
            ? family
            : string.Create(CultureInfo.InvariantCulture, $"{family}, grouped-query attention: {config.Heads} query heads over {config.KeyValueHeads} kv heads, query head h uses kv head h/{group}");
    }

    private static TaggedSummary TaggedSummaryOf(TaggedCorpus tagged, CorpusPlan plan)
    {
        int Count(SyntacticRelation relation) => plan.Tagged.Sum(r => r.Links.Count(l => l.Relation == relation));
        return new TaggedSummary(
            tagged.Name, tagged.Files, plan.Tagged.Count, plan.Tagged.Sum(r => r.Length),
            Count(SyntacticRelation.DetNoun), Count(SyntacticRelation.AdjNoun), Count(SyntacticRelation.PrepObject), Count(SyntacticRelation.VerbSubject));
    }

    private static HeadScores[] Heads(AttentionStatistics stats, int layers, int heads)
    {
        var result = new HeadScores[layers * heads];
        for (int l = 0; l < layers; l++)
        {
            for (int h = 0; h < heads; h++)
            {
                var s = stats.Scores(l, h);
                result[(l * heads) + h] = s with { Roles = CensusThresholds.Assign(s) };
            }
        }

        return result;
    }

    // Forward passes over every batch, capturing only attention probabilities and folding them into the
    // statistics row by row; for the importance target of encoders also the texts' normalised embeddings.
    private static (AttentionStatistics Stats, double[][]? Embeddings) Capture(
        Model model, CorpusPlan plan, List<int[]> textBatches, List<int[]> repeatBatches, List<int[]> taggedBatches, bool embeddings, IProgress<CensusProgress>? progress, string stage, CancellationToken cancellationToken)
    {
        var config = model.Config;
        int layers = config.Layers;
        int heads = config.Heads;
        var stats = new AttentionStatistics(layers, heads, config.IsCausal);
        var capture = Enumerable.Range(0, layers).Select(ActivationNames.AttentionProbs).ToArray();
        var gallery = embeddings ? new double[plan.Texts.Count][] : null;
        int total = textBatches.Count + repeatBatches.Count + taggedBatches.Count;
        int done = 0;
        progress?.Report(new CensusProgress(stage, 0, total));

        foreach (var batchRows in textBatches)
        {
            var batch = model.FromIds(batchRows.Select(i => (IReadOnlyList<int>)plan.Texts[i].Ids).ToList());
            var result = model.Forward(batch, capture);
            int t = batch.SequenceLength;
            for (int l = 0; l < layers; l++)
            {
                var probs = result.Activations[capture[l]].Data;
                for (int r = 0; r < batchRows.Length; r++)
                {
                    stats.AddText(l, probs.AsSpan(r * heads * t * t, heads * t * t), t, plan.Texts[batchRows[r]]);
                }
            }

            for (int r = 0; r < batchRows.Length; r++)
            {
                var row = plan.Texts[batchRows[r]];
                stats.AddTextChance(row);
                if (gallery is not null)
                {
                    gallery[batchRows[r]] = CensusTargets.Embedding(result, r, row.Length);
                }
            }

            cancellationToken.ThrowIfCancellationRequested();

            progress?.Report(new CensusProgress(stage, ++done, total));
        }

        // Repeated sequences and tagged sentences: each row's probabilities of every layer, then its chance level.
        void Rows<TRow>(List<int[]> batches, IReadOnlyList<TRow> rows, Func<TRow, int[]> ids, AddRow<TRow> add, Action<TRow> addChance)
        {
            foreach (var batchRows in batches)
            {
                var batch = model.FromIds(batchRows.Select(i => (IReadOnlyList<int>)ids(rows[i])).ToList());
                var result = model.Forward(batch, capture);
                int t = batch.SequenceLength;
                for (int l = 0; l < layers; l++)
                {
                    var probs = result.Activations[capture[l]].Data;
                    for (int r = 0; r < batchRows.Length; r++)
                    {
                        add(l, probs.AsSpan(r * heads * t * t, heads * t * t), t, rows[batchRows[r]]);
                    }
                }

                foreach (int i in batchRows)
                {
                    addChance(rows[i]);
                }

                cancellationToken.ThrowIfCancellationRequested();
                progress?.Report(new CensusProgress(stage, ++done, total));
            }
        }

        Rows(repeatBatches, plan.Repeats, r => r.Ids, stats.AddRepeat, stats.AddRepeatChance);
        Rows(taggedBatches, plan.Tagged, r => r.Ids, stats.AddTagged, stats.AddTaggedChance);
        return (stats, gallery);
    }

    private static ITarget Target(Model model, RetrievalGallery? gallery, int[] rows)
        => model.Config.Family == ModelFamily.BertEncoder ? new SelfRetrievalTarget(gallery!, rows) : new TextLikelihoodTarget();

    // Mean over every text of |∂L/∂ξ| per head [layer · heads + head].
    private static double[] Importance(Model model, CorpusPlan plan, List<int[]> batches, RetrievalGallery? gallery, IProgress<CensusProgress>? progress, CancellationToken cancellationToken)
    {
        var config = model.Config;
        int count = config.Layers * config.Heads;
        var sum = new double[count];
        int done = 0;
        progress?.Report(new CensusProgress("importance", 0, batches.Count));
        foreach (var rows in batches)
        {
            var batch = model.FromIds(rows.Select(i => (IReadOnlyList<int>)plan.Texts[i].Ids).ToList());
            var gates = Explainer.HeadGateGradients(model, batch, Target(model, gallery, rows), GradientMemoryBudget);
            var values = gates.Values;
            for (int r = 0; r < rows.Length; r++)
            {
                for (int k = 0; k < count; k++)
                {
                    sum[k] += Math.Abs(values[(r * count) + k]);
                }
            }

            cancellationToken.ThrowIfCancellationRequested();

            progress?.Report(new CensusProgress("importance", ++done, batches.Count));
        }

        return sum.Select(s => s / plan.Texts.Count).ToArray();
    }

    // For each head: the mean over the ablation texts of L(all heads) − L(head zeroed), the head zeroed by a gate of 0
    // on its output for the passes that measure it (the model's weights are as loaded again after each).
    private static (double[] Drops, double Baseline, int Texts) Ablation(Model model, CorpusPlan plan, RetrievalGallery? gallery, CensusOptions options, IProgress<CensusProgress>? progress, CancellationToken cancellationToken)
    {
        var config = model.Config;
        int layers = config.Layers;
        int heads = config.Heads;
        int n = plan.Texts.Count;
        int k = Math.Min(options.AblationTexts, n);
        var drops = new double[layers * heads];
        if (k == 0)
        {
            return (drops, double.NaN, 0);
        }

        // Evenly spaced through the corpus, so every genre is represented.
        var chosen = Enumerable.Range(0, k).Select(i => (int)((long)i * n / k)).ToArray();
        var batches = CorpusPlan.Batches(chosen.Select(i => plan.Texts[i].Length).ToList(), options.BatchTokens, MaxBatchRows)
            .Select(b => b.Select(j => chosen[j]).ToArray()).ToList();
        var prepared = batches.Select(rows => (Rows: rows, Batch: model.FromIds(rows.Select(i => (IReadOnlyList<int>)plan.Texts[i].Ids).ToList()))).ToList();

        // Plain forward passes (the model's cached buffers, no backward state); the target's value per row.
        double Evaluate(float[] gates)
        {
            double sum = 0;
            foreach (var (rows, batch) in prepared)
            {
                var result = model.Forward(batch, null, gates);
                for (int r = 0; r < rows.Length; r++)
                {
                    int length = batch.Lengths[r];
                    sum += gallery is not null
                        ? gallery.Value(CensusTargets.Embedding(result, r, length), rows[r])
                        : CensusTargets.Likelihood(result, r, length);
                }
            }

            return sum / k;
        }

        int steps = (layers * heads) + 1;
        int done = 0;
        progress?.Report(new CensusProgress("ablation", 0, steps));
        var gates = new float[layers * heads];
        Array.Fill(gates, 1f);
        double baseline = Evaluate([]);
        cancellationToken.ThrowIfCancellationRequested();
        progress?.Report(new CensusProgress("ablation", ++done, steps));
        for (int i = 0; i < gates.Length; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            gates[i] = 0f;
            drops[i] = baseline - Evaluate(gates);
            gates[i] = 1f;
            cancellationToken.ThrowIfCancellationRequested();

            progress?.Report(new CensusProgress("ablation", ++done, steps));
        }

        return (drops, baseline, k);
    }

    // One row's probabilities of one layer into the statistics (a delegate: spans cannot be Action arguments).
    private delegate void AddRow<TRow>(int layer, ReadOnlySpan<float> probs, int stride, TRow row);
}
