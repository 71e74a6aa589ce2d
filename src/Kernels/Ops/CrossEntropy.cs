namespace Headlight.Kernels;

/// <summary>
/// Cross-entropy of next-token targets fused with the LM head, a block of rows at a time, so no <c>[rows, vocab]</c>
/// tensor is kept: <c>logits = hidden · headᵀ</c> (head <c>[vocab, d]</c>, the tied embeddings or an untied head). Each
/// block is one GEMM into the caller's scratch, one row kernel (maximum, log-sum-exp, loss, and the logits replaced by
/// the scaled softmax gradient) and, for the backward pass, one or two GEMMs out of the scratch.
/// </summary>
public static partial class CrossEntropy
{
    /// <summary>
    /// <c>loss[r] = logsumexp(logits[r]) − logits[r, targets[r]]</c> (0 for a row not counted, <c>targets[r] = −1</c>).
    /// When <paramref name="dHidden"/> is given it is written with <c>scale·(softmax(logits) − onehot(target))·head</c>
    /// (0 rows for uncounted rows); when <paramref name="dHead"/> is given, <c>scale·(softmax − onehot)ᵀ·hidden</c> is
    /// ADDED to it (gradient accumulation over micro-batches).
    /// </summary>
    /// <param name="hidden">The final hidden states <c>[rows, d]</c>.</param>
    /// <param name="head">The LM head <c>[vocab, d]</c>.</param>
    /// <param name="targets">The next-token ids <c>[rows]</c>, −1 for a row not counted. On the CPU a target outside
    /// <c>[−1, vocab)</c> is an error; on accelerators (which cannot report it without a round trip) such a row is
    /// treated as not counted, and nothing is read out of bounds.</param>
    /// <param name="loss">Receives the per-row loss <c>[rows]</c>.</param>
    /// <param name="dHidden">Receives the gradient of <paramref name="hidden"/> <c>[rows, d]</c>, or null.</param>
    /// <param name="dHead">Accumulates the gradient of <paramref name="head"/> <c>[vocab, d]</c>, or null.</param>
    /// <param name="scale">Multiplies both gradients (e.g. 1 / the number of counted rows of the whole batch).</param>
    /// <param name="scratch">Caller-owned <c>[blockRows, vocab]</c>, any <c>blockRows ≥ 1</c>: one block's logits at a time; its contents afterwards are unspecified.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, misshaped or overlapping an
    /// output, the scale is not finite, or (CPU) a target is out of range.</exception>
    public static void Run(Tensor<float> hidden, Tensor<float> head, Tensor<int> targets, Tensor<float> loss,
        Tensor<float>? dHidden, Tensor<float>? dHead, float scale, Tensor<float> scratch)
    {
        var args = new OpArgs("CrossEntropy.Run").Add("hidden", hidden).Add("head", head).Add("targets", targets).Add("loss", loss)
            .AddOptional("dHidden", dHidden).AddOptional("dHead", dHead).Add("scratch", scratch)
            .RequireRank("hidden", hidden, 2)
            .RequireRank("head", head, 2)
            .RequireRank("scratch", scratch, 2);
        int rows = hidden.Shape[0];
        int d = hidden.Shape[1];
        int vocab = head.Shape[0];
        int blockRows = scratch.Shape[0];
        args.Require(d >= 1, "hidden must have at least one column")
            .Require(vocab >= 1, "head must have at least one row (the vocabulary)")
            .Require(head.Shape[1] == d, $"head must be [vocab, d] with d = {d} (hidden's columns)")
            .RequireShape("targets", targets, rows)
            .RequireShape("loss", loss, rows)
            .RequireShape("dHidden", dHidden, rows, d)
            .RequireShape("dHead", dHead, vocab, d)
            .Require(blockRows >= 1 && scratch.Shape[1] == vocab, $"scratch must be [blockRows, vocab] with blockRows ≥ 1 and vocab = {vocab}")
            .Require(float.IsFinite(scale), $"scale must be finite (got {scale})");
        Region[] written = [new("loss", loss), new("dHidden", dHidden), new("dHead", dHead), new("scratch", scratch)];
        Region[] read = [new("hidden", hidden), new("head", head)];
        for (int i = 0; i < written.Length; i++)
        {
            for (int j = i + 1; j < written.Length + read.Length; j++)
            {
                var other = j < written.Length ? written[j] : read[j - written.Length];
                if (written[i].Tensor is { Length: > 0 } a && other.Tensor is { Length: > 0 } b && args.Backend.AttentionSharesMemory(a, b))
                {
                    args.Fail($"'{written[i].Name}' overlaps '{other.Name}' in memory; outputs must not alias other operands");
                }
            }
        }

        if (args.Backend.CrossEntropyBadTarget(targets, vocab) is { } bad)
        {
            throw new ArgumentException(
                $"CrossEntropy.Run: targets[{bad.Row}] = {bad.Value} is outside [-1, {vocab}) (vocab = {vocab}; −1 marks a row not counted).",
                nameof(targets));
        }

        bool gradient = dHidden is not null || dHead is not null;
        for (int start = 0; start < rows; start += blockRows)
        {
            int n = Math.Min(blockRows, rows - start);
            var h = hidden.Slice((long)start * d, n, d);       // [n, d]
            var logits = scratch.Slice(0, n, vocab);           // [n, vocab]
            Gemm.Forward(h, head, logits, transposeB: true);
            args.Backend.CrossEntropyRows(logits, targets.Slice(start, n), loss.Slice(start, n), n, vocab, scale, gradient);

            // logits now hold G = scale·(softmax − onehot) [n, vocab]
            if (dHidden is not null)
            {
                Gemm.Forward(logits, head, dHidden.Slice((long)start * d, n, d));
            }

            if (dHead is not null)
            {
                Gemm.Forward(logits, h, dHead, transposeA: true, beta: 1f);
            }
        }
    }

    private readonly record struct Region(string Name, Tensor<float>? Tensor);
}

/// <summary>The cross-entropy's entry points on each backend (CrossEntropy.Cpu.cs, CrossEntropy.Ilgpu.cs).</summary>
internal abstract partial class Backend
{
    /// <summary>The first target outside <c>[−1, vocab)</c>, where the backend can tell without a round trip; null otherwise.</summary>
    internal abstract (int Row, int Value)? CrossEntropyBadTarget(Tensor<int> targets, int vocab);

    /// <summary>
    /// Per row of logits [rows, vocab] (both positive): <c>loss = logsumexp − logits[target]</c> (0 when not counted) and,
    /// with <paramref name="gradient"/>, the logits replaced by <c>scale·(softmax − onehot)</c> (0 when not counted).
    /// </summary>
    internal abstract void CrossEntropyRows(Tensor<float> logits, Tensor<int> targets, Tensor<float> loss, int rows, int vocab, float scale, bool gradient);
}
