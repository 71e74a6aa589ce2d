using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain;

/// <summary>
/// The batch loop every method runs its passes through: rows are split into batches that fit the memory budget (by the
/// bytes a pass of their shape itself holds, <see cref="Model.BytesPerRow"/>), cancellation is checked before each batch,
/// each batch's pass is leased from the model (holding its lock) while <c>use</c> reads it, and progress advances after it.
/// </summary>
internal static class PassRunner
{
    /// <summary>The request for rows [<paramref name="start"/>, <paramref name="start"/> + <paramref name="count"/>), as a batch of <paramref name="rows"/> rows (rows past count top it up).</summary>
    public delegate PassRequest Build(int start, int count, int rows);

    /// <summary>Reads one batch's pass (under the model's lock).</summary>
    public delegate void Use(ModelPass pass, int start, int count);

    /// <summary>
    /// Runs <paramref name="jobs"/> rows shaped like <paramref name="shape"/>; returns the rows run, top-up rows included. With
    /// <paramref name="equalBatches"/> every batch has the same number of rows (see <see cref="ChunkRows"/>), so the model's cached
    /// buffers are made once; otherwise the last batch is smaller. <paramref name="done"/> runs after each batch, outside the lock.
    /// </summary>
    public static int Run(Model model, int jobs, PassRequest shape, long memoryBudget, bool equalBatches, RunControl control, Build build, Use use, Action<int, int>? done = null)
    {
        if (jobs == 0)
        {
            return 0;
        }

        int chunk = BatchRows(model, jobs, shape, memoryBudget, equalBatches);
        int passes = 0;
        for (int start = 0; start < jobs; start += chunk)
        {
            control.ThrowIfCancelled();
            int count = Math.Min(chunk, jobs - start);
            int rows = equalBatches ? chunk : count;
            var request = build(start, count, rows);
            using (var pass = model.Run(request))
            {
                use(pass, start, count);
            }

            passes += rows;
            done?.Invoke(start, count);
            control.Advance(count);
        }

        return passes;
    }

    /// <summary>The rows per batch <see cref="Run"/> uses for these arguments.</summary>
    public static int BatchRows(Model model, int jobs, PassRequest shape, long memoryBudget, bool equalBatches)
    {
        int maxRows = (int)Math.Clamp(memoryBudget / model.BytesPerRow(shape), 1, Math.Max(jobs, 1));
        return equalBatches ? ChunkRows(jobs, maxRows) : maxRows;
    }

    /// <summary>
    /// Rows per batch: at most <paramref name="maxRows"/>, all batches the same size, and as few padding rows as
    /// possible (52 jobs at most 19 per batch: 4 × 13, not 3 × 18 with 2 rows wasted); fewer batches on a tie.
    /// </summary>
    internal static int ChunkRows(int jobs, int maxRows)
    {
        int fewest = (jobs + maxRows - 1) / maxRows;
        int best = (jobs + fewest - 1) / fewest;
        long bestTotal = (long)best * fewest;
        for (int batches = fewest + 1; batches <= Math.Min(jobs, 2 * fewest) && bestTotal > jobs; batches++)
        {
            int rows = (jobs + batches - 1) / batches;
            if ((long)rows * batches < bestTotal)
            {
                best = rows;
                bestTotal = (long)rows * batches;
            }
        }

        return best;
    }

    /// <summary>Ids, mask and token types of input rows [start, start + count), with their lengths and indices, for one batch.</summary>
    internal sealed record Rows(int[] Ids, int[] Mask, int[] Types, int[] InputRows, int[] Lengths)
    {
        public static Rows Of(TokenBatch inputs, int start, int count)
        {
            int seq = inputs.SequenceLength;
            return new Rows(
                inputs.InputIds.Span.Slice(start * seq, count * seq).ToArray(),
                inputs.AttentionMask.Span.Slice(start * seq, count * seq).ToArray(),
                inputs.TokenTypeIds.Span.Slice(start * seq, count * seq).ToArray(),
                Enumerable.Range(start, count).ToArray(),
                inputs.Lengths.Skip(start).Take(count).ToArray());
        }

        /// <summary>The request for these rows.</summary>
        public PassRequest Request(int seq) => new()
        {
            Rows = InputRows.Length,
            SequenceLength = seq,
            InputIds = Ids,
            AttentionMask = Mask,
            TokenTypeIds = Types,
        };
    }
}
