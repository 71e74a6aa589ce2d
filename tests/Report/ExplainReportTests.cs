using System.Text.Json;
using System.Text.RegularExpressions;
using Headlight.Cli;
using Headlight.Explain;
using Headlight.Explain.Report;
using Headlight.Tests.Explain;
using Headlight.Tests.Loading;

namespace Headlight.Tests.Report;

/// <summary><c>headlight explain</c> with several methods: terminal lines, the JSON schema read back, the HTML report, usage errors.</summary>
public sealed partial class ExplainReportTests : IDisposable
{
    private static readonly HashSet<string> Flags = new(StringComparer.Ordinal) { "json", "help", "truncate", "keep-special", "exact", "census" };
    private readonly TinyModel encoder = TinyModel.Bert(9500, TinyHead.MeanPooling);
    private readonly TempFolder temp = new();

    public void Dispose()
    {
        encoder.Dispose();
        temp.Dispose();
    }

    [Fact]
    public void Query_and_doc_print_one_coloured_line_per_method_and_progress_on_stderr()
    {
        using var error = new StringWriter();
        string text = Run(error, "explain", "--model", encoder.Folder, "--device", "cpu", "--query", "w5 w6", "--doc", "w7 w12 w9", "--method", "ig,gradxinput,saliency", "--steps", "8");
        Assert.Contains("cosine similarity to \"w5 w6\"", text, StringComparison.Ordinal);
        var lines = text.Split('\n');
        foreach (string method in new[] { "integrated-gradients", "gradient-x-input", "saliency" })
        {
            // The words line: plain output (a StringWriter is no terminal) puts each word's scaled score in brackets.
            Assert.Contains(lines, l => l.TrimStart().StartsWith(method, StringComparison.Ordinal) && l.Contains("w7[", StringComparison.Ordinal) && l.Contains("w9[", StringComparison.Ordinal));
        }

        Assert.DoesNotContain("\u001b[", text, StringComparison.Ordinal);
        Assert.Contains("completeness delta", text, StringComparison.Ordinal);
        Assert.Contains("3/3 done", error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Colour_modes_write_escape_codes_or_plain_scores()
    {
        var words = new[] { ("up", 2.0), ("down", -1.0), ("flat", 0.0) };
        string trueColor = TerminalColors.Words(words, ColorMode.TrueColor);
        Assert.Contains("\u001b[48;2;255;38;38m", trueColor, StringComparison.Ordinal); // full red for the largest positive
        Assert.Contains("\u001b[48;2;147;147;255m", trueColor, StringComparison.Ordinal); // half blue for −1 of 2
        Assert.Matches(@"\u001b\[48;5;\d+m", TerminalColors.Words(words, ColorMode.Xterm256));
        Assert.Equal("up[+1.00] down[-0.50] flat[0]", TerminalColors.Words(words, ColorMode.Plain));
        Assert.Equal(196, ScoreColors.Xterm256((255, 0, 0)));
        Assert.Equal(21, ScoreColors.Xterm256((0, 0, 255)));
    }

    [Fact]
    public void Json_follows_the_schema_and_reads_back_into_the_api_results()
    {
        string json = Run(TextWriter.Null, "explain", "--model", encoder.Folder, "--device", "cpu", "--target", "similarity:w5 w6", "--method", "gradxinput,ig", "--steps", "4", "--json", "w7 w12 w9", "w8 w8");
        var read = JsonSerializer.Deserialize<ExplainJson>(json, JsonOutput.Options)!;
        Assert.Equal(ExplainJson.SchemaName, read.Schema);
        Assert.Equal(["gradient-x-input", "integrated-gradients"], read.Methods.Select(m => m.Method));

        // Every documented property is present under its snake_case name.
        using var doc = JsonDocument.Parse(json);
        var method = doc.RootElement.GetProperty("methods")[1];
        foreach (string name in new[] { "method", "options", "elapsed_ms", "passes", "rows" })
        {
            Assert.True(method.TryGetProperty(name, out _), name);
        }

        foreach (string name in new[] { "text", "tokens", "special", "token_scores", "words", "target_value", "baseline_value", "check" })
        {
            Assert.True(method.GetProperty("rows")[0].TryGetProperty(name, out _), name);
        }

        using var model = Headlight.Models.Model.Load(encoder.Folder, Backends.Require("cpu"));
        var batch = model.Tokenize(["w7 w12 w9", "w8 w8"]);
        var api = new AttributionResult[]
        {
            Explainer.Explain(model, batch, new EmbeddingSimilarityTarget("w5 w6"), new GradientXInputOptions()),
            Explainer.Explain(model, batch, new EmbeddingSimilarityTarget("w5 w6"), new IntegratedGradientsOptions { Steps = 4 }),
        };
        for (int m = 0; m < api.Length; m++)
        {
            Assert.Equal(api[m].Passes, read.Methods[m].Passes);
            Assert.Equal(api[m].Options, read.Methods[m].Options);
            for (int r = 0; r < 2; r++)
            {
                var (want, got) = (api[m].Rows[r], read.Methods[m].Rows[r]);
                Assert.Equal(want.Input.Text, got.Text);
                Assert.Equal(want.Tokens, got.Tokens);
                Assert.Equal(want.IsSpecial, got.Special);
                Assert.Equal(want.TokenScores, got.TokenScores);
                Assert.Equal(want.Words.Select(w => (w.Text, w.Score, w.FirstToken, w.TokenCount)), got.Words.Select(w => (w.Text, w.Score, w.FirstToken, w.TokenCount)));
                Assert.Equal(want.TargetValue, got.TargetValue);
                Assert.Equal(want.BaselineValue, got.BaselineValue);
                Assert.Equal(want.Check?.Name, got.Check?.Name);
                Assert.Equal(want.Check?.Value, got.Check?.Value);
            }
        }
    }

    [Fact]
    public void Default_methods_run_side_by_side_and_lrp_brings_its_relevance_into_the_json()
    {
        string json = Run(TextWriter.Null, "explain", "--model", encoder.Folder, "--device", "cpu", "--query", "w5 w6", "--doc", "w7 w12 w9", "--steps", "4", "--budget", "6", "--json");
        var read = JsonSerializer.Deserialize<ExplainJson>(json, JsonOutput.Options)!;
        Assert.Equal(["integrated-gradients", "lrp", "kernel-shap", "rollout"], read.Methods.Select(m => m.Method));
        var lrp = read.Methods[1];
        Assert.Equal("conservation gap", lrp.Rows[0].Check?.Name);
        var relevance = Assert.Single(lrp.Relevance!);
        Assert.Equal(3, relevance.LayerTotals.Count); // embeddings and after each of 2 blocks
        Assert.Equal(TinyModel.Heads, relevance.HeadRelevance[0].Count);
        Assert.All(read.Methods.Where(m => m.Method != "lrp"), m => Assert.Null(m.Relevance));
        Assert.Equal(3, read.Methods[2].Rows[0].Features!.Count);
        Assert.Equal("efficiency gap", read.Methods[2].Rows[0].Check?.Name);
    }

    [Fact]
    public void Html_report_is_self_contained_with_heat_maps_checks_and_every_head()
    {
        string path = temp.File("report.html");
        string pngs = temp.File("png");
        Run(TextWriter.Null, "explain", "--model", encoder.Folder, "--device", "cpu", "--target", "similarity:w5 w6", "--method", "ig,gradxinput", "--steps", "4", "--html", path, "--census", "--png", pngs, "w7 w12 w9", "w8");
        string html = File.ReadAllText(path);
        Assert.Contains("<section class=\"census\">", html, StringComparison.Ordinal);
        foreach (string name in new[] { "input-1.png", "input-2.png" })
        {
            var bytes = File.ReadAllBytes(Path.Combine(pngs, name));
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
        }

        Assert.StartsWith("<!DOCTYPE html>", html, StringComparison.Ordinal);
        Assert.Equal(4, Regex.Matches(html, "<tr data-method=").Count);
        Assert.Equal(4, Regex.Matches(html, "<tr class=\"check\"").Count);
        Assert.Equal(TinyModel.Heads * 2, Regex.Matches(html, "<canvas class=\"head\"").Count);
        Assert.Contains("completeness delta", html, StringComparison.Ordinal);

        // Nothing is fetched: no src or href attributes but inline data, no url(), no links but the SVG namespace.
        Assert.DoesNotMatch(@"\s(src|href)\s*=\s*""(?!data:)", html);
        Assert.DoesNotContain("url(", html, StringComparison.Ordinal);
        Assert.All(UrlPattern().Matches(html).Select(m => m.Value), u => Assert.Equal("http://www.w3.org/2000/svg", u));
    }

    [Fact]
    public void Attention_patterns_are_the_models_probabilities()
    {
        using var model = Headlight.Models.Model.Load(encoder.Folder, Backends.Require("cpu"));
        var batch = model.Tokenize(["w7 w12 w9", "w8"]);
        var patterns = AttentionPatterns.Capture(model, batch, 1);
        int t = batch.Texts[1].Count;
        Assert.Equal(batch.Texts[1].Tokens, patterns.Tokens);
        Assert.Equal(2 * TinyModel.Heads * t * t, patterns.Probabilities.Length);
        for (int q = 0; q < 2 * TinyModel.Heads * t; q++)
        {
            Assert.Equal(1.0, patterns.Probabilities.AsSpan(q * t, t).ToArray().Sum(), 4);
        }
    }

    [Fact]
    public void Bad_command_lines_say_what_is_wrong()
    {
        string[] common = ["explain", "--model", encoder.Folder, "--device", "cpu"];
        Assert.Contains("--query", Assert.Throws<UsageException>(() => Run(TextWriter.Null, [.. common, "--doc", "w7"])).Message, StringComparison.Ordinal);
        Assert.Contains("not both", Assert.Throws<UsageException>(() => Run(TextWriter.Null, [.. common, "--query", "w7", "--target", "unit:0,1", "w8"])).Message, StringComparison.Ordinal);
        Assert.Contains("twice", Assert.Throws<UsageException>(() => Run(TextWriter.Null, [.. common, "--target", "unit:0,1", "--method", "ig,integrated-gradients", "w8"])).Message, StringComparison.Ordinal);
        Assert.Contains("'lime'", Assert.Throws<UsageException>(() => Run(TextWriter.Null, [.. common, "--target", "unit:0,1", "--method", "ig,lime", "w8"])).Message, StringComparison.Ordinal);
        Assert.Contains("--samples belongs to --method smoothgrad", Assert.Throws<UsageException>(() => Run(TextWriter.Null, [.. common, "--target", "unit:0,1", "--method", "ig", "--samples", "3", "w8"])).Message, StringComparison.Ordinal);
        Assert.Contains("--color", Assert.Throws<UsageException>(() => Run(TextWriter.Null, [.. common, "--target", "unit:0,1", "--color", "sometimes", "w8"])).Message, StringComparison.Ordinal);
    }

    private static string Run(TextWriter error, params string[] args)
    {
        using var output = new StringWriter();
        Assert.Equal(0, ExplainReportCommand.Run(CliArgs.Parse(args, Flags), output, error));
        return output.ToString();
    }

    [GeneratedRegex(@"https?://[^\s""'<>)]+")]
    private static partial Regex UrlPattern();
}
