using System.Text.Json;
using Headlight.Cli;
using Headlight.Explain.Census;
using Headlight.Tests.Explain;
using Headlight.Tests.Loading;

namespace Headlight.Tests.Census;

/// <summary><c>headlight heads</c>: the grid and shares, JSON, files written by <c>--out</c>, <c>--compare</c> and usage errors.</summary>
public sealed class HeadsCommandTests : IDisposable
{
    private static readonly HashSet<string> Flags = new(StringComparer.Ordinal) { "json", "help", "truncate", "keep-special", "compare", "no-importance" };
    private readonly TinyModel decoder = TinyModel.Gpt2(9701);
    private readonly TinyModel encoder = TinyModel.Bert(9702, TinyHead.ClsPooling);
    private readonly TempFolder temp = new();

    public void Dispose()
    {
        decoder.Dispose();
        encoder.Dispose();
        temp.Dispose();
    }

    private static string Run(params string[] args)
    {
        using var output = new StringWriter();
        using var errors = new StringWriter();
        Assert.Equal(0, HeadsCommand.Run(CliArgs.Parse(args, Flags), output, errors, colour: false));
        return output.ToString();
    }

    [Fact]
    public void Human_output_has_thresholds_grid_shares_and_controls()
    {
        string text = Run("heads", "--model", decoder.Folder, "--device", "cpu", "--controls", "2", "--ablation-texts", "4", "--repeats", "4", "--repeat-length", "5");
        Assert.Contains("2 layers x 2 heads", text, StringComparison.Ordinal);
        Assert.Contains("P previous", text, StringComparison.Ordinal);
        Assert.Contains(">= 0.5", text, StringComparison.Ordinal);
        Assert.Contains("  L0 ", text, StringComparison.Ordinal);
        Assert.Contains("  L1 ", text, StringComparison.Ordinal);
        Assert.Contains("interpretable heads:", text, StringComparison.Ordinal);
        Assert.Contains("over 2 seeds", text, StringComparison.Ordinal);
        Assert.Contains("most important heads:", text, StringComparison.Ordinal);
        Assert.DoesNotContain("\u001b[", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Json_output_parses_and_matches_the_api()
    {
        string json = Run("heads", "--model", decoder.Folder, "--device", "cpu", "--controls", "1", "--no-importance", "--repeats", "4", "--repeat-length", "5", "--json");
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        Assert.Equal(JsonValueKind.Null, root.GetProperty("target").ValueKind);
        Assert.Equal(JsonValueKind.Null, root.GetProperty("heads")[0].GetProperty("importance").ValueKind);
        using var model = Headlight.Models.Model.Load(decoder.Folder, Backends.Require("cpu"));
        var api = HeadCensus.Run(model, new CensusOptions { Corpus = CensusCorpus.BuiltIn().WithRepeats(4, 5, 0), ControlSeeds = [1], Importance = false });
        Assert.Equal(api.Heads[1].Entropy, root.GetProperty("heads")[1].GetProperty("entropy").GetDouble());
        Assert.Equal(api.Controls[0].Heads[2].Confidence, root.GetProperty("controls")[0].GetProperty("heads")[2].GetProperty("confidence").GetDouble());
    }

    [Fact]
    public void Compare_writes_rows_verdict_json_png_and_html()
    {
        string corpus = temp.File("corpus.txt");
        File.WriteAllText(corpus, "# a tiny corpus\nw5 w6 w7 w8\n\nw9 w10 w11\nw12 w13 w5 w6 w7\n");
        string out1 = Path.Combine(temp.Path, "out");
        string text = Run("heads", "--compare", decoder.Folder, encoder.Folder, "--device", "cpu", "--controls", "1", "--corpus", corpus,
            "--ablation-texts", "3", "--repeats", "3", "--repeat-length", "4", "--out", out1);
        Assert.Contains("comparison", text, StringComparison.Ordinal);
        Assert.Contains("verdict: 2 models", text, StringComparison.Ordinal);
        Assert.Contains("random-weight controls", text, StringComparison.Ordinal);

        var compare = JsonDocument.Parse(File.ReadAllText(Path.Combine(out1, "compare.json"))).RootElement;
        Assert.Equal(CensusJson.CompareSchema, compare.GetProperty("schema").GetString());
        Assert.Equal(2, compare.GetProperty("rows").GetArrayLength());
        Assert.Equal(2, compare.GetProperty("models").GetArrayLength());
        Assert.Equal(corpus, compare.GetProperty("models")[1].GetProperty("corpus").GetProperty("name").GetString());
        Assert.Equal(3, compare.GetProperty("models")[1].GetProperty("corpus").GetProperty("texts").GetInt32());

        foreach (string png in new[] { "share-vs-parameters.png", HeadsCommand.Slug(encoder.Folder) + "-roles.png", HeadsCommand.Slug(decoder.Folder) + "-induction.png", HeadsCommand.Slug(decoder.Folder) + "-ablation-drop.png" })
        {
            var bytes = File.ReadAllBytes(Path.Combine(out1, png));
            Assert.True(bytes.AsSpan(0, 8).SequenceEqual(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }), png + " is not a PNG");
        }

        string html = File.ReadAllText(Path.Combine(out1, "census.html"));
        Assert.Contains("<section class=\"census\">", html, StringComparison.Ordinal);
        Assert.Contains("<section class=\"census-compare\">", html, StringComparison.Ordinal);
        Assert.Contains("data:image/png;base64,", html, StringComparison.Ordinal);
    }

    [Fact]
    public void Usage_errors_name_the_problem()
    {
        Assert.Contains("--compare", Assert.Throws<UsageException>(() => Run("heads", "--model", decoder.Folder, "some text")).Message, StringComparison.Ordinal);
        Assert.Contains("--compare", Assert.Throws<UsageException>(() => Run("heads", "--compare")).Message, StringComparison.Ordinal);
        Assert.Contains("--controls", Assert.Throws<UsageException>(() => Run("heads", "--model", decoder.Folder, "--controls", "-1")).Message, StringComparison.Ordinal);
        Assert.Contains("--bogus", Assert.Throws<UsageException>(() => Run("heads", "--model", decoder.Folder, "--bogus", "1")).Message, StringComparison.Ordinal);
        Assert.Throws<FileNotFoundException>(() => Run("heads", "--model", decoder.Folder, "--corpus", temp.File("missing.txt")));
    }

    [Fact]
    public void Slugs_are_file_names()
    {
        Assert.Equal("minilm", HeadsCommand.Slug("minilm"));
        Assert.Equal("gpt2-tiny", HeadsCommand.Slug("/work/shared/fixtures/gpt2-tiny/"));
        Assert.Equal("my-model.onnx", HeadsCommand.Slug("dir/My Model.onnx"));
    }
}
