using Headlight.Explain;
using Headlight.Explain.Census;
using Headlight.Models;
using Headlight.Tests.Explain;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Library;

/// <summary>Long operations report progress after each batch, stop at the next batch when cancelled, and leave the model usable.</summary>
public sealed class CancellationTests
{
    private static readonly string[] Texts = Enumerable.Range(0, 37)
        .Select(i => $"Sentence number {i} talks about {(i % 3 == 0 ? "cats" : i % 3 == 1 ? "interest rates" : "the weather in Paris")}.")
        .ToArray();

    [Fact]
    public void Batched_embedding_reports_progress_per_batch_and_matches_one_text_at_a_time()
    {
        using var model = HeadlightModel.Load("minilm", Backends.Require("cpu"));
        var reports = new List<OperationProgress>();
        var batched = model.Embed(Texts, batchSize: 8, progress: new SynchronousProgress(reports.Add));

        Assert.Equal([8L, 16, 24, 32, 37], reports.Select(r => r.Completed));
        Assert.All(reports, r => Assert.Equal(Texts.Length, r.Total));
        for (int i = 0; i < Texts.Length; i += 6)
        {
            var alone = model.Embed([Texts[i]])[0];
            Compare.Close(batched[i], alone.Select(v => (double)v).ToArray(), new Tolerance(1e-5, 0), $"text {i} embedded in a batch of 8 and alone");
        }
    }

    [Fact]
    public void Cancelled_embedding_stops_at_the_next_batch_and_the_model_still_works()
    {
        using var model = HeadlightModel.Load("minilm", Backends.Require("cpu"));
        var expected = model.Embed([Texts[0]])[0];
        using var cancel = new CancellationTokenSource();
        int batches = 0;
        var progress = new SynchronousProgress(_ =>
        {
            if (++batches == 2)
            {
                cancel.Cancel();
            }
        });

        Assert.ThrowsAny<OperationCanceledException>(() => model.Embed(Texts, batchSize: 4, progress: progress, cancellationToken: cancel.Token));
        Assert.Equal(2, batches);
        Assert.Equal(expected, model.Embed([Texts[0]])[0]);
    }

    [Fact]
    public void A_cancelled_integrated_gradients_run_stops_within_a_batch_and_the_model_gives_the_same_answer_afterwards()
    {
        using var model = HeadlightModel.Load("minilm", Backends.Require("cpu"));
        var target = new EmbeddingSimilarityTarget("Where is the cat?");

        // A small memory budget makes many batches: 256 steps of ~10 rows each.
        var options = new IntegratedGradientsOptions { Steps = 256, MemoryBudgetBytes = 8L << 20 };
        var before = Explainer.Explain(model, "The cat sat on the mat.", target, options with { Steps = 16 });

        using var cancel = new CancellationTokenSource();
        var reports = new List<OperationProgress>();
        var progress = new SynchronousProgress(p =>
        {
            reports.Add(p);
            if (reports.Count == 3)
            {
                cancel.Cancel();
            }
        });
        Assert.ThrowsAny<OperationCanceledException>(() => Explainer.Explain(model, "The cat sat on the mat.", target, options, progress, cancel.Token));

        // Stopped before the fourth batch, with far fewer passes done than expected.
        Assert.Equal(3, reports.Count);
        Assert.All(reports, r => Assert.Equal("integrated-gradients", r.Operation));
        Assert.True(reports[^1].Completed < reports[^1].Total / 4, $"{reports[^1].Completed} of {reports[^1].Total} passes ran before the run stopped.");

        var after = Explainer.Explain(model, "The cat sat on the mat.", target, options with { Steps = 16 });
        Assert.Equal(before.Rows[0].TokenScores, after.Rows[0].TokenScores);
    }

    [Fact]
    public void Kernel_shap_reports_coalitions_and_stops_when_cancelled()
    {
        using var model = HeadlightModel.Load("minilm", Backends.Require("cpu"));
        var target = new EmbeddingSimilarityTarget("Where is the cat?");
        var options = new KernelShapOptions { Budget = 400, MemoryBudgetBytes = 4L << 20 };
        var reports = new List<OperationProgress>();
        Explainer.Explain(model, "The cat sat on the mat.", target, options, new SynchronousProgress(reports.Add));
        Assert.True(reports.Count > 1, $"{reports.Count} progress reports");
        Assert.Equal("coalitions", reports[0].Unit);
        Assert.True(reports.Zip(reports.Skip(1)).All(p => p.Second.Completed > p.First.Completed), "progress must grow");

        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => Explainer.Explain(model, "The cat sat on the mat.", target, options, cancellationToken: cancel.Token));
    }

    [Fact]
    public void A_census_cancelled_during_ablation_restores_the_ablated_weights()
    {
        using var tiny = TinyModel.Gpt2(9611);
        using var model = HeadlightModel.Load(tiny.Folder, Backends.Require("cpu"));
        var batch = model.FromIds([[1, 5, 9, 13, 2, 7]]);
        var before = model.Forward(batch).Logits!.ToArray();
        var options = new CensusOptions { Corpus = CensusCorpus.BuiltIn().WithRepeats(4, 5, 0), ControlSeeds = [], AblationTexts = 4 };

        using var cancel = new CancellationTokenSource();
        var stages = new List<CensusProgress>();
        var progress = new Reporter<CensusProgress>(p =>
        {
            stages.Add(p);
            if (p.Stage == "ablation" && p.Done == 2)
            {
                cancel.Cancel(); // the baseline and one ablated head are done: stop before zeroing the next
            }
        });

        Assert.ThrowsAny<OperationCanceledException>(() => HeadCensus.Run(model, options, progress, cancel.Token));
        Assert.Equal(2, stages[^1].Done);
        Assert.Equal(before, model.Forward(batch).Logits!.ToArray());
    }

    /// <summary>Reports on the calling thread, in order.</summary>
    private sealed class Reporter<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    /// <summary>Reports on the calling thread, in order (<see cref="Progress{T}"/> posts to the thread pool).</summary>
    internal sealed class SynchronousProgress(Action<OperationProgress> report) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value) => report(value);
    }
}
