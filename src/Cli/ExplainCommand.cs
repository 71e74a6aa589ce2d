using System.Globalization;
using Headlight.Explain;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Cli;

/// <summary>
/// The parts of <c>headlight explain</c> (run by <see cref="ExplainReportCommand"/>) that read targets and print one
/// method's result in full: the target syntax, and the per-token listing with scores and bars.
/// </summary>
internal static class ExplainCommand
{
    public const string TargetHelp = """
        Targets (--target):
          similarity:TEXT            cosine similarity of the input's sentence embedding to TEXT's (sentence encoders)
          class:N|LABEL|top          logit of a class of a sequence classifier (LABEL: id2label, any case; top = the predicted class)
          prob:N|LABEL|top           softmax probability of that class
          next:TOKEN[@POS]           decoder logit of the next token after POS (default: the last token;
                                     decoders without --target explain next:top);
                                     TOKEN is an id, a text that is one token (" Paris"), or top
          diff:A,B[@POS]             logit of token A minus logit of token B (decoders)
          unit:POS,IDX               unit IDX of the last hidden state at position POS
          unit:pooled,IDX            unit IDX of the sentence embedding
        Explain options:
          --method ig|saliency|gradxinput|smoothgrad|shap|lrp|cp-lrp|rollout|gradattn[,...]   (default: several, see below)
          --steps 64 --baseline zero|pad|mask --rule gauss|riemann|left|right|trapezoid --keep-special   (ig)
          --samples 16 --noise 0.1 --seed 0                                                  (smoothgrad)
          --budget 2M+2048 --seed 0 --exact --features words|tokens --masking mask|drop --mask-token ID   (shap)
          --epsilon 1e-6                                                                     (lrp, cp-lrp)
        Gradients are taken with respect to the word embeddings, positions and token types held fixed.
        Kernel SHAP masks words (or tokens), never special tokens, and needs no gradient; a masked word becomes
        [MASK]/<mask>, or for decoders without one (GPT-2, GPT-NeoX, Llama, Qwen2) the pad token (<|endoftext|>); --exact enumerates
        all 2^M coalitions (M <= 12) for exact Shapley values. LRP (AttnLRP rules; cp-lrp: attention
        probabilities held constant) attributes to each token's summed input embedding and reports relevance
        per layer and head with the conservation gap. rollout and gradattn combine every layer's attention
        (gradattn weighted by its gradient) for the positions the target reads.
        """;

    /// <summary>One row in full: every token with its score and a bar, the words, the target value and the check figure.</summary>
    internal static void Print(Attribution row, TextWriter output)
    {
        double max = row.TokenScores.Select(Math.Abs).DefaultIfEmpty(0).Max();
        for (int t = 0; t < row.Tokens.Count; t++)
        {
            double score = row.TokenScores[t];
            int length = max == 0 ? 0 : (int)Math.Round(20 * Math.Abs(score) / max);
            string bar = new(score < 0 ? '-' : '+', length);
            string token = LogitsCommand.Quote(row.Tokens[t]) + (row.IsSpecial[t] ? " (special)" : string.Empty);
            output.WriteLine($"{t,4} {token,-28} {F(score),12}  {bar}");
        }

        output.WriteLine("words: " + string.Join("  ", row.Words.Select(w => $"{w.Text} {F(w.Score)}")));
        if (row.Features is { } features)
        {
            output.WriteLine("features (± standard error): " + string.Join("  ", features.Select(f => $"{f.Text} {F(f.Score)} ±{F(f.StandardError)}")));
        }

        string value = $"target {F(row.TargetValue)}";
        if (row.BaselineValue is { } baseline)
        {
            value += $", {(row.Features is null ? "at the baseline" : "with every feature masked")} {F(baseline)}";
        }

        if (row.Check is { } check)
        {
            double change = row.TargetValue - (row.BaselineValue ?? 0);
            string of = row.BaselineValue is null ? "the target" : "the change";
            string share = change == 0 ? string.Empty : $" ({(100 * Math.Abs(check.Value / change)).ToString("F3", CultureInfo.InvariantCulture)}% of {of})";
            value += $"; {check.Name} {check.Value.ToString("E2", CultureInfo.InvariantCulture)}{share}";
        }

        output.WriteLine(value);
    }

    // Σ relevance at each residual boundary and at the model's output, and the heads carrying the most relevance.
    internal static void PrintRelevance(RowRelevance row, TextWriter output)
    {
        var totals = row.LayerTotals.Select((v, l) => $"{(l == 0 ? "embed" : $"block{l - 1}")} {F(v)}");
        output.WriteLine($"relevance at the residual stream (Σ over tokens): {string.Join("  ", totals)}  output {F(row.OutputTotal)}");
        var top = row.HeadRelevance.SelectMany((heads, l) => heads.Select((v, h) => (l, h, v))).OrderByDescending(x => Math.Abs(x.v)).Take(5);
        output.WriteLine("heads with most relevance: " + string.Join("  ", top.Select(x => $"L{x.l}.H{x.h} {F(x.v)}")));
    }

    private static string F(double v) => v.ToString("0.00000", CultureInfo.InvariantCulture);

    internal static string Describe(IReadOnlyDictionary<string, string> options)
        => string.Join(", ", options.Where(o => o.Key != "memory_budget_bytes").Select(o => $"{o.Key} {o.Value}"));

    /// <summary>Parses a target spec (see <see cref="TargetHelp"/>) against the model and the inputs.</summary>
    internal static ITarget ParseTarget(string spec, Model model, TokenBatch batch)
    {
        int colon = spec.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0)
        {
            throw new UsageException($"--target '{spec}' has no kind: use similarity:TEXT, class:N, prob:N, next:TOKEN, diff:A,B or unit:POS,IDX.");
        }

        string kind = spec[..colon];
        string value = spec[(colon + 1)..];
        switch (kind)
        {
            case "similarity":
                if (string.IsNullOrWhiteSpace(value))
                {
                    throw new UsageException("--target similarity: needs a reference text.");
                }

                return new EmbeddingSimilarityTarget(value);
            case "class":
            case "prob":
                int label = ClassIndex(value, model, batch);
                string? name = (uint)label < (uint)model.Config.Labels.Count ? model.Config.Labels[label] : null;
                return kind == "class" ? new ClassLogitTarget(label) { Label = name } : new ClassProbabilityTarget(label) { Label = name };
            case "next":
            {
                var (text, position) = SplitPosition(value);
                return new NextTokenLogitTarget(Token(text, model, batch, position), position);
            }

            case "diff":
            {
                var (text, position) = SplitPosition(value);
                int comma = text.LastIndexOf(',');
                if (comma <= 0)
                {
                    throw new UsageException($"--target diff:{value}: give two tokens, diff:A,B.");
                }

                return new LogitDifferenceTarget(Token(text[..comma], model, batch, position), Token(text[(comma + 1)..], model, batch, position), position);
            }

            case "unit":
            {
                var parts = value.Split(',', StringSplitOptions.TrimEntries);
                if (parts.Length != 2 || !int.TryParse(parts[1], NumberStyles.Integer, CultureInfo.InvariantCulture, out int unit))
                {
                    throw new UsageException($"--target unit:{value}: use unit:POS,IDX or unit:pooled,IDX.");
                }

                if (parts[0] == "pooled")
                {
                    return OutputUnitTarget.Pooled(unit);
                }

                return int.TryParse(parts[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int position)
                    ? new OutputUnitTarget(position, unit)
                    : throw new UsageException($"--target unit:{value}: the position must be an integer or 'pooled'.");
            }

            default:
                throw new UsageException($"--target kind '{kind}' is unknown: use similarity, class, prob, next, diff or unit.");
        }
    }

    // "top" = the predicted class of the first row; a label name; or an index.
    private static int ClassIndex(string value, Model model, TokenBatch batch)
    {
        if (value == "top")
        {
            var logits = model.Forward(batch).ClassLogits
                ?? throw new TargetException($"Model '{model.Name}' has no classification head: 'top' has no classes to choose from.");
            int labels = model.Config.NumLabels;
            return Enumerable.Range(0, labels).MaxBy(i => logits[i]);
        }

        int named = ClassHead.FindLabel(model.Config.Labels, value);
        if (named >= 0)
        {
            return named;
        }

        return int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int index)
            ? index
            : throw new UsageException($"Class '{value}' is neither an index nor one of the labels [{string.Join(", ", model.Config.Labels)}].");
    }

    private static (string Text, int? Position) SplitPosition(string value)
    {
        int at = value.LastIndexOf('@');
        if (at > 0 && int.TryParse(value[(at + 1)..], NumberStyles.Integer, CultureInfo.InvariantCulture, out int position))
        {
            return (value[..at], position);
        }

        return (value, null);
    }

    // An id, "top" (the first row's most likely next token), or a text that encodes to exactly one token.
    private static int Token(string text, Model model, TokenBatch batch, int? position)
    {
        if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int id))
        {
            return id;
        }

        if (!model.Config.IsDecoder)
        {
            throw new TargetException($"Token targets need a decoder (GPT-2); model '{model.Name}' is an encoder.");
        }

        if (text == "top")
        {
            var result = model.Forward(batch);
            return model.TopK(result, 0, position ?? (batch.Lengths[0] - 1), 1)[0].Id;
        }

        var tokenizer = model.Tokenizer ?? throw new UsageException($"Model '{model.Name}' has no tokenizer: give the token as an id.");
        var ids = tokenizer.Encode(text).Ids.Where(i => !tokenizer.IsControlToken(i)).ToArray();
        return ids.Length == 1
            ? ids[0]
            : throw new UsageException($"'{text}' is {ids.Length} tokens, not one; give a single token (often with its leading space, \" Paris\") or an id.");
    }
}
