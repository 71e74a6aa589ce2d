using Headlight.Explain;

namespace Headlight.Cli;

/// <summary>
/// The JSON of <c>headlight explain --json</c> (schema <c>headlight.explain/1</c>, documented in the README): one
/// object with the model, the target and one entry per method. Written and read with <see cref="JsonOutput.Options"/>
/// (snake_case names).
/// </summary>
/// <param name="Schema">Always <see cref="SchemaName"/>.</param>
/// <param name="Model">The model's name.</param>
/// <param name="Device">The device it ran on.</param>
/// <param name="Target">The explained target, in words.</param>
/// <param name="Methods">One entry per method, in the order run.</param>
/// <param name="Label">The class label of a class or probability target (config.json's id2label); null for other targets.</param>
internal sealed record ExplainJson(string Schema, string Model, string Device, string Target, IReadOnlyList<MethodJson> Methods, string? Label = null)
{
    public const string SchemaName = "headlight.explain/1";

    public static ExplainJson From(IReadOnlyList<AttributionResult> results, IReadOnlyDictionary<AttributionResult, RelevanceResult>? relevances = null, string? label = null) => new(
        SchemaName,
        results[0].Model,
        results[0].Device,
        results[0].Target,
        results.Select(r => MethodJson.From(r, relevances?.GetValueOrDefault(r))).ToArray(),
        label);

    /// <summary>The label a class target carries, or null.</summary>
    public static string? LabelOf(ITarget target) => target switch
    {
        ClassLogitTarget c => c.Label,
        ClassProbabilityTarget p => p.Label,
        _ => null,
    };
}

/// <param name="Method">The method's name (e.g. <c>integrated-gradients</c>).</param>
/// <param name="Options">Its options, as name and value.</param>
/// <param name="ElapsedMs">Wall-clock time in milliseconds.</param>
/// <param name="Passes">Rows run through the model.</param>
/// <param name="Rows">One explanation per input row.</param>
/// <param name="Relevance">LRP only: per row, relevance per layer boundary and head; null for other methods.</param>
internal sealed record MethodJson(string Method, IReadOnlyDictionary<string, string> Options, double ElapsedMs, int Passes, IReadOnlyList<RowJson> Rows, IReadOnlyList<RelevanceJson>? Relevance)
{
    public static MethodJson From(AttributionResult r, RelevanceResult? relevance) => new(
        r.Method,
        r.Options,
        r.Elapsed.TotalMilliseconds,
        r.Passes,
        r.Rows.Select(RowJson.From).ToArray(),
        relevance?.Rows.Select(x => new RelevanceJson(x.OutputTotal, x.LayerTotals, x.LayerRelevance, x.HeadRelevance, x.WordEmbeddingRelevance)).ToArray());
}

/// <param name="OutputTotal">Σ relevance put in at the output (the target value).</param>
/// <param name="LayerTotals">Σ relevance over tokens at each residual boundary: the embeddings, then after each block.</param>
/// <param name="LayerRelevance">Per boundary, per token.</param>
/// <param name="HeadRelevance">Per layer, per head.</param>
/// <param name="WordEmbeddingRelevance">Per token, the share of the word embedding (positions and types left out).</param>
internal sealed record RelevanceJson(double OutputTotal, IReadOnlyList<double> LayerTotals, IReadOnlyList<IReadOnlyList<double>> LayerRelevance, IReadOnlyList<IReadOnlyList<double>> HeadRelevance, IReadOnlyList<double> WordEmbeddingRelevance);

/// <param name="Text">The input text.</param>
/// <param name="Tokens">Its tokens, special tokens included.</param>
/// <param name="Special">Per token, whether it is a special token.</param>
/// <param name="TokenScores">Per token, its score.</param>
/// <param name="Words">Per word, the sum of its tokens' scores.</param>
/// <param name="TargetValue">F(x).</param>
/// <param name="BaselineValue">F at the baseline (or with every feature removed), where the method has one.</param>
/// <param name="Check">The check figure, where the method has one.</param>
/// <param name="Features">Kernel SHAP's features with their standard errors; null for other methods.</param>
internal sealed record RowJson(string Text, IReadOnlyList<string> Tokens, IReadOnlyList<bool> Special, IReadOnlyList<double> TokenScores, IReadOnlyList<WordJson> Words, double TargetValue, double? BaselineValue, CheckJson? Check, IReadOnlyList<FeatureJson>? Features)
{
    public static RowJson From(Attribution a) => new(
        a.Input.Text,
        a.Tokens,
        a.IsSpecial,
        a.TokenScores,
        a.Words.Select(w => new WordJson(w.Text, w.Score, w.FirstToken, w.TokenCount)).ToArray(),
        a.TargetValue,
        a.BaselineValue,
        a.Check is { } c ? new CheckJson(c.Name, c.Value, c.Meaning) : null,
        a.Features?.Select(f => new FeatureJson(f.Text, f.Score, f.StandardError, f.FirstToken, f.TokenCount)).ToArray());
}

/// <param name="Text">The word as written.</param>
/// <param name="Score">The sum of its tokens' scores.</param>
/// <param name="FirstToken">Index of its first token.</param>
/// <param name="TokenCount">Number of its tokens.</param>
internal sealed record WordJson(string Text, double Score, int FirstToken, int TokenCount);

/// <param name="Name">e.g. <c>completeness delta</c>.</param>
/// <param name="Value">The figure; 0 is exact.</param>
/// <param name="Meaning">What it measures.</param>
internal sealed record CheckJson(string Name, double Value, string Meaning);

/// <param name="Text">The feature (word or token) as written.</param>
/// <param name="Score">Its Shapley value estimate.</param>
/// <param name="StandardError">The estimate's standard error (0 when exact).</param>
/// <param name="FirstToken">Index of its first token.</param>
/// <param name="TokenCount">Number of its tokens.</param>
internal sealed record FeatureJson(string Text, double Score, double StandardError, int FirstToken, int TokenCount);
