using System.Text.Json;
using Headlight.Cli;
using Headlight.Explain;

namespace Headlight.Tests.Explain;

/// <summary><c>headlight explain</c> on tiny models: target syntax, methods, human and JSON output, usage errors.</summary>
public sealed class ExplainCommandTests : IDisposable
{
    private static readonly HashSet<string> Flags = new(StringComparer.Ordinal) { "json", "help", "truncate", "keep-special" };
    private readonly TinyModel classifier = TinyModel.Bert(9300, TinyHead.Classifier);
    private readonly TinyModel decoder = TinyModel.Gpt2(9400);

    public void Dispose()
    {
        classifier.Dispose();
        decoder.Dispose();
    }

    [Fact]
    public void Human_output_lists_tokens_words_target_and_delta()
    {
        string text = Run("explain", "--model", classifier.Folder, "--device", "cpu", "--target", "prob:positive", "--method", "ig", "--steps", "32", "w7 w12 w9");
        Assert.Contains("integrated-gradients", text, StringComparison.Ordinal);
        Assert.Contains("probability of positive (class 2)", text, StringComparison.Ordinal);
        Assert.Contains("\"[CLS]\" (special)", text, StringComparison.Ordinal);
        Assert.Contains("words: w7 ", text, StringComparison.Ordinal);
        Assert.Contains("completeness delta", text, StringComparison.Ordinal);
        Assert.Contains("34 rows through the model", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Json_output_carries_per_token_and_per_word_scores_and_matches_the_api()
    {
        string json = Run("explain", "--model", decoder.Folder, "--device", "cpu", "--ids", "5,17,33,2", "--target", "diff:4,9@2", "--method", "gradxinput", "--json");
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        var method = root.GetProperty("methods")[0];
        Assert.Equal("gradient-x-input", method.GetProperty("method").GetString());
        var row = method.GetProperty("rows")[0];
        var scores = row.GetProperty("token_scores").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.Equal(4, scores.Length);
        Assert.Equal(4, row.GetProperty("words").GetArrayLength());

        using var model = Headlight.Models.Model.Load(decoder.Folder, Backends.Require("cpu"));
        var api = Explainer.Explain(model, model.FromIds([[5, 17, 33, 2]]), new LogitDifferenceTarget(4, 9, 2), new GradientXInputOptions()).Rows[0];
        Assert.Equal(api.TokenScores, scores);
        Assert.Equal(api.TargetValue, row.GetProperty("target_value").GetDouble());
    }

    [Fact]
    public void Every_target_kind_parses()
    {
        using var bert = Headlight.Models.Model.Load(classifier.Folder, Backends.Require("cpu"));
        using var gpt = Headlight.Models.Model.Load(decoder.Folder, Backends.Require("cpu"));
        var bertBatch = bert.FromIds([[2, 7, 12, 3]]);
        var gptBatch = gpt.FromIds([[5, 17, 33]]);
        var labels = bert.Config.Labels;
        Assert.Equal(new ClassLogitTarget(1) { Label = labels[1] }, ExplainCommand.ParseTarget("class:1", bert, bertBatch));
        Assert.Equal(new ClassProbabilityTarget(0) { Label = labels[0] }, ExplainCommand.ParseTarget("prob:negative", bert, bertBatch));
        Assert.Equal(new ClassProbabilityTarget(0) { Label = labels[0] }, ExplainCommand.ParseTarget("prob:NEGATIVE", bert, bertBatch));
        var top = bert.Forward(bertBatch).ClassLogits!;
        int best = Array.IndexOf(top, top.Max());
        Assert.Equal(new ClassLogitTarget(best) { Label = labels[best] }, ExplainCommand.ParseTarget("class:top", bert, bertBatch));
        Assert.Equal(new OutputUnitTarget(1, 4), ExplainCommand.ParseTarget("unit:1,4", bert, bertBatch));
        Assert.Equal(OutputUnitTarget.Pooled(2), ExplainCommand.ParseTarget("unit:pooled,2", bert, bertBatch));
        Assert.Equal(new NextTokenLogitTarget(7, null), ExplainCommand.ParseTarget("next:7", gpt, gptBatch));
        Assert.Equal(new NextTokenLogitTarget(7, 1), ExplainCommand.ParseTarget("next:7@1", gpt, gptBatch));
        var result = gpt.Forward(gptBatch);
        Assert.Equal(new NextTokenLogitTarget(gpt.TopK(result, 0, 2, 1)[0].Id, null), ExplainCommand.ParseTarget("next:top", gpt, gptBatch));
        Assert.Equal(new LogitDifferenceTarget(3, 8, null), ExplainCommand.ParseTarget("diff:3,8", gpt, gptBatch));
        Assert.IsType<EmbeddingSimilarityTarget>(ExplainCommand.ParseTarget("similarity:a query", bert, bertBatch));
    }

    [Fact]
    public void Usage_errors_name_the_problem()
    {
        // An encoder needs a target; a decoder without one explains its most likely next token.
        Assert.Contains("--target", Assert.Throws<UsageException>(() => Run("explain", "--model", classifier.Folder, "--device", "cpu", "--ids", "2,7,3")).Message, StringComparison.Ordinal);
        Assert.NotEmpty(Run("explain", "--model", decoder.Folder, "--device", "cpu", "--ids", "1,2", "--method", "saliency"));
        Assert.Contains("--method", Assert.Throws<UsageException>(() => Run("explain", "--model", decoder.Folder, "--ids", "1,2", "--target", "next:1", "--method", "lime")).Message, StringComparison.Ordinal);
        Assert.Contains("--method ig", Assert.Throws<UsageException>(() => Run("explain", "--model", decoder.Folder, "--ids", "1,2", "--target", "next:1", "--method", "saliency", "--steps", "8")).Message, StringComparison.Ordinal);
        Assert.Contains("--baseline", Assert.Throws<UsageException>(() => Run("explain", "--model", decoder.Folder, "--ids", "1,2", "--target", "next:1", "--baseline", "noise")).Message, StringComparison.Ordinal);
        Assert.Contains("unknown", Assert.Throws<UsageException>(() => Run("explain", "--model", decoder.Folder, "--device", "cpu", "--ids", "1,2", "--target", "logit:1")).Message, StringComparison.Ordinal);
        Assert.Throws<UsageException>(() => Run("explain", "--model", decoder.Folder, "--device", "cpu", "--ids", "1,2", "--target", "diff:1"));
        Assert.Throws<TargetException>(() => Run("explain", "--model", decoder.Folder, "--device", "cpu", "--ids", "1,2", "--target", "class:0"));
        Assert.Throws<ArgumentOutOfRangeException>(() => Run("explain", "--model", decoder.Folder, "--device", "cpu", "--ids", "1,2", "--target", "next:1", "--rule", "trapezoid", "--steps", "1"));
    }

    private static string Run(params string[] args)
    {
        using var output = new StringWriter();
        Assert.Equal(0, ExplainReportCommand.Run(CliArgs.Parse(args, Flags), output, TextWriter.Null));
        return output.ToString();
    }
}
