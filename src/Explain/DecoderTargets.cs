using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain;

/// <summary>
/// A decoder's logit for one next token after one position: <c>logit = final[position]·wte[token]</c>
/// (GPT-2's LM head is tied to the token embeddings).
/// </summary>
/// <param name="TokenId">The next token whose logit is explained.</param>
/// <param name="Position">The position whose prediction is read; null = the last real token of each row.</param>
public sealed record NextTokenLogitTarget(int TokenId, int? Position = null) : IRelevanceTarget
{
    /// <inheritdoc />
    public string Description => $"logit of next token {TokenId} after {DecoderHead.Where(Position)}";

    /// <inheritdoc />
    public void Prepare(Model model, TokenBatch inputs) => DecoderHead.Check(model, inputs, Position, $"next:{TokenId}", TokenId);

    /// <inheritdoc />
    public void Evaluate(TargetContext context) => DecoderHead.Evaluate(context, Position, TokenId, null);

    /// <inheritdoc />
    public void EvaluateRelevance(TargetContext context, double epsilon) => LrpHeads.LmHead(context, Position, TokenId, null, epsilon);
}

/// <summary>
/// The difference of two next-token logits after one position, <c>logit[A] − logit[B]</c>: why the model
/// prefers one continuation to another (the softmax normaliser cancels).
/// </summary>
/// <param name="TokenA">The token whose logit counts positively.</param>
/// <param name="TokenB">The token whose logit is subtracted.</param>
/// <param name="Position">The position whose prediction is read; null = the last real token of each row.</param>
public sealed record LogitDifferenceTarget(int TokenA, int TokenB, int? Position = null) : IRelevanceTarget
{
    /// <inheritdoc />
    public string Description => $"logit of token {TokenA} minus logit of token {TokenB} after {DecoderHead.Where(Position)}";

    /// <inheritdoc />
    public void Prepare(Model model, TokenBatch inputs) => DecoderHead.Check(model, inputs, Position, $"diff:{TokenA},{TokenB}", TokenA, TokenB);

    /// <inheritdoc />
    public void Evaluate(TargetContext context) => DecoderHead.Evaluate(context, Position, TokenA, TokenB);

    /// <inheritdoc />
    public void EvaluateRelevance(TargetContext context, double epsilon) => LrpHeads.LmHead(context, Position, TokenA, TokenB, epsilon);
}

/// <summary>The LM head for single logits: the gradient of <c>final·head[a] (− final·head[b])</c> is that row (difference); head is wte when tied.</summary>
internal static class DecoderHead
{
    public static string Where(int? position) => position is { } p ? $"position {p}" : "the last token";

    public static void Check(Model model, TokenBatch inputs, int? position, string name, params int[] tokens)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        if (!model.Config.IsDecoder)
        {
            throw new TargetException($"Target '{name}' needs a decoder (GPT-2); model '{model.Name}' is an encoder without next-token logits.");
        }

        foreach (int token in tokens)
        {
            if ((uint)token >= (uint)model.Config.VocabSize)
            {
                throw new TargetException($"Target '{name}': token id {token} is outside the vocabulary [0, {model.Config.VocabSize}) of model '{model.Name}'.");
            }
        }

        if (position is { } p)
        {
            for (int r = 0; r < inputs.BatchSize; r++)
            {
                if (p < 0 || p >= inputs.Lengths[r])
                {
                    throw new TargetException($"Target '{name}': position {p} is outside row {r}, which has {inputs.Lengths[r]} tokens.");
                }
            }
        }
    }

    public static void Evaluate(TargetContext context, int? position, int tokenA, int? tokenB)
    {
        var table = context.Model.OutputEmbeddings;
        float[] a = HostWeights.Row(table, tokenA);
        float[]? b = tokenB is { } id ? HostWeights.Row(table, id) : null;
        for (int r = 0; r < context.Rows; r++)
        {
            int p = position ?? (context.Length(r) - 1);
            var h = context.HiddenAt(r, p);
            var seed = context.Seed(r, p);
            double value = 0;
            for (int i = 0; i < h.Length; i++)
            {
                float g = b is null ? a[i] : a[i] - b[i];
                value += (double)h[i] * (b is null ? a[i] : (double)a[i] - b[i]);
                seed[i] = g;
            }

            context.Values[r] = value;
        }
    }
}
