using Headlight.Models;
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

    /// <summary>Reports on the calling thread, in order (<see cref="Progress{T}"/> posts to the thread pool).</summary>
    internal sealed class SynchronousProgress(Action<OperationProgress> report) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value) => report(value);
    }
}
