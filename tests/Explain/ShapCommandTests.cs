using System.Text.Json;
using Headlight.Cli;
using Headlight.Explain;

namespace Headlight.Tests.Explain;

/// <summary><c>headlight explain --method shap</c>: human and JSON output, the exact option, and usage errors.</summary>
public sealed class ShapCommandTests : IDisposable
{
    private static readonly HashSet<string> Flags = new(StringComparer.Ordinal) { "json", "help", "truncate", "keep-special", "exact" };
    private readonly TinyModel classifier = TinyModel.Bert(9500, TinyHead.Classifier);

    public void Dispose() => classifier.Dispose();

    [Fact]
    public void Human_output_lists_features_with_standard_errors_the_empty_coalition_and_the_efficiency_gap()
    {
        string text = Run("explain", "--model", classifier.Folder, "--device", "cpu", "--method", "shap", "--target", "class:1", "--budget", "30", "--seed", "4", "w7 w12 w9 w20 w21 w8");
        Assert.Contains("kernel-shap", text, StringComparison.Ordinal);
        Assert.Contains("features (± standard error): w7 ", text, StringComparison.Ordinal);
        Assert.Contains("with every feature masked", text, StringComparison.Ordinal);
        Assert.Contains("efficiency gap", text, StringComparison.Ordinal);
        Assert.Contains("32 rows through the model", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Json_output_matches_the_api_and_exact_enumerates_every_coalition()
    {
        string json = Run("explain", "--model", classifier.Folder, "--device", "cpu", "--ids", "2,7,12,9,20,3", "--target", "class:2", "--method", "shap", "--exact", "--masking", "drop", "--json");
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement.GetProperty("methods")[0];
        Assert.Equal("kernel-shap", root.GetProperty("method").GetString());
        Assert.Equal(16, root.GetProperty("passes").GetInt32());
        var features = root.GetProperty("rows")[0].GetProperty("features").EnumerateArray().ToArray();
        Assert.Equal(4, features.Length);

        using var model = Headlight.Models.Model.Load(classifier.Folder, Backends.Require("cpu"));
        var api = Explainer.Explain(model, model.FromIds([[2, 7, 12, 9, 20, 3]]), new ClassLogitTarget(2), new KernelShapOptions { Exact = true, Masking = ShapMasking.Drop }).Rows[0];
        Assert.Equal(api.Features!.Select(f => f.Score), features.Select(f => f.GetProperty("score").GetDouble()));
        Assert.All(features, f => Assert.Equal(0, f.GetProperty("standard_error").GetDouble()));
    }

    [Fact]
    public void Usage_errors_name_the_options_that_do_not_belong()
    {
        string[] common = ["explain", "--model", classifier.Folder, "--device", "cpu", "--ids", "2,7,12,9,3", "--target", "class:0"];
        Assert.Contains("--method shap", Assert.Throws<UsageException>(() => Run([.. common, "--method", "ig", "--budget", "40"])).Message, StringComparison.Ordinal);
        Assert.Contains("--method shap", Assert.Throws<UsageException>(() => Run([.. common, "--method", "saliency", "--exact"])).Message, StringComparison.Ordinal);
        Assert.Contains("--seed", Assert.Throws<UsageException>(() => Run([.. common, "--method", "ig", "--seed", "1"])).Message, StringComparison.Ordinal);
        Assert.Contains("--exact", Assert.Throws<UsageException>(() => Run([.. common, "--method", "shap", "--exact", "--budget", "10"])).Message, StringComparison.Ordinal);
        Assert.Contains("--masking", Assert.Throws<UsageException>(() => Run([.. common, "--method", "shap", "--masking", "blank"])).Message, StringComparison.Ordinal);
        Assert.Contains("--features", Assert.Throws<UsageException>(() => Run([.. common, "--method", "shap", "--features", "letters"])).Message, StringComparison.Ordinal);
        Assert.Contains("--mask-token", Assert.Throws<UsageException>(() => Run([.. common, "--method", "shap", "--masking", "drop", "--mask-token", "4"])).Message, StringComparison.Ordinal);
        Assert.Contains("at least 4", Assert.Throws<ArgumentOutOfRangeException>(() => Run([.. common, "--method", "shap", "--budget", "2"])).Message, StringComparison.Ordinal);
    }

    private static string Run(params string[] args)
    {
        using var output = new StringWriter();
        Assert.Equal(0, ExplainReportCommand.Run(CliArgs.Parse(args, Flags), output, TextWriter.Null));
        return output.ToString();
    }
}
