using System.Globalization;
using System.Text.Json;
using Headlight.Explain;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Cli;

/// <summary>
/// <c>headlight explain --method saliency|gradxinput|smoothgrad|ig|shap --target SPEC (TEXT... | --ids ...)</c>: which
/// tokens and words a model's output depends on. Human output lists every token with its score and a bar,
/// the words, the target value and the check figure; <c>--json</c> gives the same as one object.
/// </summary>
internal static class ExplainCommand
{
    public const string TargetHelp = """
        Targets (--target):
          similarity:TEXT            cosine similarity of the input's sentence embedding to TEXT's (sentence encoders)
          class:N|LABEL|top          logit of a class of a sequence classifier (top = the predicted class)
          prob:N|LABEL|top           softmax probability of that class
          next:TOKEN[@POS]           decoder logit of the next token after POS (default: the last token);
                                     TOKEN is an id, a text that is one token (" Paris"), or top
          diff:A,B[@POS]             logit of token A minus logit of token B (decoders)
          unit:POS,IDX               unit IDX of the last hidden state at position POS
          unit:pooled,IDX            unit IDX of the sentence embedding
        Explain options:
          --method ig|saliency|gradxinput|smoothgrad|shap   (default ig)
          --steps 64 --baseline zero|pad|mask --rule gauss|riemann|left|right|trapezoid --keep-special   (ig)
          --samples 16 --noise 0.1 --seed 0                                                  (smoothgrad)
          --budget 2M+2048 --seed 0 --exact --features words|tokens --masking mask|drop --mask-token ID   (shap)
        Gradients are taken with respect to the word embeddings, positions and token types held fixed.
        Kernel SHAP masks words (or tokens), never special tokens, and needs no gradient; --exact enumerates
        all 2^M coalitions (M <= 12) for exact Shapley values.
        """;

    public static int Run(CliArgs cli, TextWriter output)
    {
        var modelOptions = ModelOptions.Read(cli);
        bool json = cli.Flag("json");
        string spec = cli.Option("target") ?? throw new UsageException("'explain' needs --target (see 'headlight help').");
        var options = ReadMethod(cli);
        cli.RejectUnknown();
        using var model = modelOptions.Load();
        var batch = modelOptions.Batch(model, cli.Positional);
        var target = ParseTarget(spec, model, batch);
        var result = Explainer.Explain(model, batch, target, options);
        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(new
            {
                result.Model,
                result.Device,
                result.Method,
                result.Target,
                result.Options,
                ElapsedMs = result.Elapsed.TotalMilliseconds,
                result.Passes,
                Rows = result.Rows.Select(r => new
                {
                    Text = r.Input.Text,
                    r.Tokens,
                    Special = r.IsSpecial,
                    TokenScores = r.TokenScores,
                    Words = r.Words.Select(w => new { w.Text, w.Score, w.FirstToken, w.TokenCount }),
                    r.TargetValue,
                    r.BaselineValue,
                    Check = r.Check is null ? null : new { r.Check.Name, r.Check.Value },
                    Features = r.Features?.Select(f => new { f.Text, f.Score, f.StandardError, f.FirstToken, f.TokenCount }),
                }),
            }, JsonOutput.Options));
            return 0;
        }

        output.WriteLine($"{result.Model} on {result.Device}: {result.Method} ({Describe(result.Options)}) of {result.Target}");
        foreach (var row in result.Rows)
        {
            output.WriteLine();
            Print(row, output);
        }

        output.WriteLine();
        output.WriteLine($"time {result.Elapsed.TotalMilliseconds.ToString("F0", CultureInfo.InvariantCulture)} ms ({result.Passes} rows through the model)");
        return 0;
    }

    private static void Print(Attribution row, TextWriter output)
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
            string share = change == 0 ? string.Empty : $" ({(100 * Math.Abs(check.Value / change)).ToString("F3", CultureInfo.InvariantCulture)}% of the change)";
            value += $"; {check.Name} {check.Value.ToString("E2", CultureInfo.InvariantCulture)}{share}";
        }

        output.WriteLine(value);
    }

    private static string F(double v) => v.ToString("0.00000", CultureInfo.InvariantCulture);

    private static string Describe(IReadOnlyDictionary<string, string> options)
        => string.Join(", ", options.Where(o => o.Key != "memory_budget_bytes").Select(o => $"{o.Key} {o.Value}"));

    private static AttributionOptions ReadMethod(CliArgs cli)
    {
        string method = cli.Option("method", "ig");
        int? steps = cli.Option("steps") is null ? null : cli.IntOption("steps", 64, 1, 100_000);
        string? baseline = cli.Option("baseline");
        string? rule = cli.Option("rule");
        bool keep = cli.Flag("keep-special");
        int? samples = cli.Option("samples") is null ? null : cli.IntOption("samples", 16, 1, 100_000);
        string? noise = cli.Option("noise");
        int? seed = cli.Option("seed") is null ? null : cli.IntOption("seed", 0);
        string? budget = cli.Option("budget");
        bool exact = cli.Flag("exact");
        string? features = cli.Option("features");
        string? masking = cli.Option("masking");
        string? maskToken = cli.Option("mask-token");
        bool ig = method is "ig" or "integrated-gradients";
        bool smooth = method == "smoothgrad";
        bool shap = method is "shap" or "kernel-shap";
        if (!ig && (steps is not null || baseline is not null || rule is not null || keep))
        {
            throw new UsageException("--steps, --baseline, --rule and --keep-special belong to --method ig.");
        }

        if (!smooth && (samples is not null || noise is not null))
        {
            throw new UsageException("--samples and --noise belong to --method smoothgrad.");
        }

        if (!smooth && !shap && seed is not null)
        {
            throw new UsageException("--seed belongs to --method smoothgrad or shap.");
        }

        if (!shap && (budget is not null || exact || features is not null || masking is not null || maskToken is not null))
        {
            throw new UsageException("--budget, --exact, --features, --masking and --mask-token belong to --method shap.");
        }

        if (exact && (budget is not null || seed is not null))
        {
            throw new UsageException("--exact enumerates every coalition: it takes no --budget or --seed.");
        }

        return method switch
        {
            "saliency" => new SaliencyOptions(),
            "gradxinput" or "gradient-x-input" => new GradientXInputOptions(),
            "smoothgrad" => new SmoothGradOptions
            {
                Samples = samples ?? 16,
                NoiseLevel = noise is null ? 0.1 : ParseDouble(noise, "--noise"),
                Seed = seed ?? 0,
            },
            "ig" or "integrated-gradients" => new IntegratedGradientsOptions
            {
                Steps = steps ?? 64,
                Baseline = baseline switch
                {
                    null or "zero" => BaselineKind.Zero,
                    "pad" => BaselineKind.Pad,
                    "mask" => BaselineKind.Mask,
                    _ => throw new UsageException($"--baseline must be zero, pad or mask, not '{baseline}'."),
                },
                Rule = rule switch
                {
                    null or "gauss" or "gauss-legendre" => QuadratureRule.GaussLegendre,
                    "riemann" or "middle" => QuadratureRule.RiemannMiddle,
                    "left" => QuadratureRule.RiemannLeft,
                    "right" => QuadratureRule.RiemannRight,
                    "trapezoid" => QuadratureRule.RiemannTrapezoid,
                    _ => throw new UsageException($"--rule must be gauss, riemann, left, right or trapezoid, not '{rule}'."),
                },
                KeepSpecialTokens = keep,
            },
            "shap" or "kernel-shap" => new KernelShapOptions
            {
                Budget = budget is null ? null : cli.IntOption("budget", 0, 1),
                Seed = seed ?? 0,
                Exact = exact,
                Features = features switch
                {
                    null or "words" => ShapFeatures.Words,
                    "tokens" => ShapFeatures.Tokens,
                    _ => throw new UsageException($"--features must be words or tokens, not '{features}'."),
                },
                Masking = masking switch
                {
                    null or "mask" => ShapMasking.Replace,
                    "drop" => maskToken is null ? ShapMasking.Drop : throw new UsageException("--mask-token replaces masked words; it does not go with --masking drop."),
                    _ => throw new UsageException($"--masking must be mask or drop, not '{masking}'."),
                },
                ReplacementTokenId = maskToken is null ? null : cli.IntOption("mask-token", 0, 0),
            },
            _ => throw new UsageException($"--method must be saliency, gradxinput, smoothgrad, ig or shap, not '{method}'."),
        };
    }

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
                return kind == "class" ? new ClassLogitTarget(label) : new ClassProbabilityTarget(label);
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

        int named = model.Config.Labels.ToList().IndexOf(value);
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

        if (model.Config.Family != ModelFamily.Gpt2Decoder)
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

    private static double ParseDouble(string text, string name)
        => double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v)
            ? v
            : throw new UsageException($"{name} must be a number, not '{text}'.");
}
