namespace Headlight.Tests.Training;

internal static class TrainingFiles
{
    /// <summary>A folder of tests/fixtures, found by walking up from the test binaries.</summary>
    public static string Fixture(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "fixtures", name);
            if (Directory.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new DirectoryNotFoundException($"tests/fixtures/{name} not found above {AppContext.BaseDirectory}.");
    }

    /// <summary>A fresh empty folder under the temp directory.</summary>
    public static string TempFolder()
    {
        string path = Path.Combine(Path.GetTempPath(), "headlight-training-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        return path;
    }

    /// <summary>A few KB of varied English with some other scripts, for training small vocabularies.</summary>
    public static readonly string[] SmallText =
    [
        "The quick brown fox jumps over the lazy dog. The dog sleeps; the fox runs on and on.",
        "Transformers read tokens, and tokens are pieces of words: the more often a piece occurs, the sooner it is merged.",
        "It's a truth they've known: we'll see what they'd say, and I'm sure you're right.",
        "Numbers like 1234 and 3.14159 appear, as do dates such as 1961-03-14 and prices of $4.50.",
        "Grüße aus München! Café, naïve, résumé — déjà vu. Привет, мир. 世界你好。 😀 emoji too.",
        "  Indented lines,\ttabs\tand\nnew lines\n\nshould survive the round trip exactly.   ",
        string.Concat(Enumerable.Repeat("the sooner the better, the more the merrier. ", 40)),
        string.Concat(Enumerable.Repeat("Byte pairs merge into longer and longer tokens over training. ", 30)),
    ];
}
