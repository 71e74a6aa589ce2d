using System.Text.Json;

namespace Headlight.Tests.Tokenization;

/// <summary>One case of tests/fixtures/bert-tokenizer/expected.json, as the referee tokenised it.</summary>
public sealed record BertFixtureCase(
    string Config, string Name, string Text, string? Pair, int[] Ids, string[] Tokens, int[] TypeIds, int[] WordIds,
    int[][] Offsets, int? MaxLength, string? Strategy)
{
    /// <summary>The case's key in test names: "config/name".</summary>
    public string Key => $"{Config}/{Name}";
}

/// <summary>
/// Reads the committed referee fixture (written by tools/tokenizer-referee/generate.mjs with
/// Hugging Face's tokenizers). Fails with a clear message when it is missing.
/// </summary>
public static class BertFixture
{
    private static readonly Lazy<(JsonDocument Document, Dictionary<string, BertFixtureCase> Cases, Dictionary<string, BertFixtureCase> Truncation)> Loaded =
        new(Load);

    /// <summary>The path of expected.json, found by walking up from the test binaries to the repository.</summary>
    public static string Path { get; } = Find();

    /// <summary>The fixture's header (referee versions, vocab digest, configs).</summary>
    public static JsonElement Header => Loaded.Value.Document.RootElement.GetProperty("header");

    /// <summary>Encoding cases by key.</summary>
    public static IReadOnlyDictionary<string, BertFixtureCase> Cases => Loaded.Value.Cases;

    /// <summary>Truncation cases by key.</summary>
    public static IReadOnlyDictionary<string, BertFixtureCase> Truncation => Loaded.Value.Truncation;

    private static string Find()
    {
        const string relative = "tests/fixtures/bert-tokenizer/expected.json";
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = System.IO.Path.Combine(dir.FullName, relative);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException($"{relative} not found above {AppContext.BaseDirectory}; it is committed with the repository (regenerate with tools/tokenizer-referee).", relative);
    }

    private static (JsonDocument, Dictionary<string, BertFixtureCase>, Dictionary<string, BertFixtureCase>) Load()
    {
        var document = JsonDocument.Parse(File.ReadAllBytes(Path));
        return (document, Read(document.RootElement.GetProperty("cases")), Read(document.RootElement.GetProperty("truncation")));
    }

    private static Dictionary<string, BertFixtureCase> Read(JsonElement array)
    {
        var cases = new Dictionary<string, BertFixtureCase>(StringComparer.Ordinal);
        foreach (JsonElement c in array.EnumerateArray())
        {
            var fixtureCase = new BertFixtureCase(
                c.GetProperty("config").GetString()!,
                c.GetProperty("name").GetString()!,
                c.GetProperty("text").GetString()!,
                c.TryGetProperty("pair", out var pair) ? pair.GetString() : null,
                Ints(c.GetProperty("ids")),
                c.GetProperty("tokens").EnumerateArray().Select(t => t.GetString()!).ToArray(),
                Ints(c.GetProperty("type_ids")),
                Ints(c.GetProperty("word_ids")),
                c.GetProperty("offsets").EnumerateArray().Select(Ints).ToArray(),
                c.TryGetProperty("max_length", out var max) ? max.GetInt32() : null,
                c.TryGetProperty("strategy", out var strategy) ? strategy.GetString() : null);
            Assert.True(cases.TryAdd(fixtureCase.Key, fixtureCase), $"Duplicate fixture case {fixtureCase.Key}.");
        }

        return cases;
    }

    private static int[] Ints(JsonElement array) => array.EnumerateArray().Select(e => e.GetInt32()).ToArray();
}
