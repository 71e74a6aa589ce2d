using Headlight.Cli;

namespace Headlight.Tests.Cli;

/// <summary>
/// Every command given hostile arguments (a directory where a file goes, a file where a folder
/// goes, huge, negative and non-numbers, missing values, unknown options, empty strings): each
/// ends with exit code 1 or 2 and a one-line message, never a stack trace.
/// </summary>
public sealed class HostileArgumentsTests
{
    private static readonly string Directory = Path.GetTempPath();

    // A file that exists, where a folder is expected.
    private static readonly string SomeFile = typeof(HostileArgumentsTests).Assembly.Location;

    public static TheoryData<string[]> CommandLines { get; } = new(
        // Output paths: checked before any work.
        ["explain", "--device", "cpu", "--target", "unit:pooled,0", "--html", Directory, "hi"],
        ["explain", "--device", "cpu", "--target", "unit:pooled,0", "--html", "", "hi"],
        ["explain", "--device", "cpu", "--target", "unit:pooled,0", "--html", "/nonexistent-folder/report.html", "hi"],
        ["explain", "--device", "cpu", "--target", "unit:pooled,0", "--html", "/proc/headlight/report.html", "hi"],
        ["explain", "--device", "cpu", "--target", "unit:pooled,0", "--png", SomeFile, "hi"],
        ["explain", "--device", "cpu", "--target", "unit:pooled,0", "--png", "/proc/headlight-png", "hi"],
        ["explain", "--device", "cpu", "--target", "unit:pooled,0", "--png", "", "hi"],
        ["faithfulness", "--device", "cpu", "--svg", Directory],
        ["faithfulness", "--device", "cpu", "--svg", "/nonexistent-folder/plot.svg"],
        ["heads", "--device", "cpu", "--out", SomeFile],
        ["heads", "--device", "cpu", "--out", ""],
        ["faithfulness", "--device", "cpu", "--corpus", Directory],
        ["heads", "--device", "cpu", "--corpus", Directory],
        ["heads", "--device", "cpu", "--corpus", "/nonexistent-folder/corpus.txt"],

        // Sizes.
        ["bench", "gemm", "--device", "cpu", "--shape", "65536x65536x65536"],
        ["bench", "gemm", "--device", "cpu", "--shape", "65536x65536x1"],
        ["bench", "gemm", "--device", "cpu", "--shape", "0x1x1"],
        ["bench", "gemm", "--device", "cpu", "--shape", "-1x2x3"],
        ["bench", "gemm", "--device", "cpu", "--shape", "NaNxNaNxNaN"],
        ["bench", "gemm", "--device", "cpu", "--shape", ""],
        ["bench", "gemm", "--device", "cpu", "--batch", "4096", "--seq", "65536"],
        ["bench", "forward", "--device", "cpu", "--batch", "4096"],
        ["bench", "forward", "--device", "cpu", "--batch", "99999999999999999999"],
        ["bench", "forward", "--device", "cpu", "--warmup", "NaN"],
        ["bench", "forward", "--device", "cpu", "--warmup", "-1"],
        ["bench", "forward", "--device", "cpu", "--runs", "-5"],
        ["bench", "forward", "--device", "cpu", "--seq", "100000"],
        ["bench"],
        ["bench", "frobnicate"],
        ["attend", "--device", "cpu", "--top", "-1", "hi"],
        ["attend", "--device", "cpu", "--top", "NaN", "hi"],
        ["attend", "--device", "cpu", "--top", "", "hi"],
        ["logits", "--device", "cpu", "--top", "99999999999", "hi"],
        ["generate", "--device", "cpu", "-n", "-1", "hi"],
        ["generate", "--device", "cpu", "-n", "NaN", "hi"],
        ["embed", "--device", "cpu", "--ids", ""],
        ["embed", "--device", "cpu", "--ids", "1,,2"],
        ["embed", "--device", "cpu", "--ids", "-5"],
        ["embed", "--device", "cpu", "--ids", "99999999999"],
        ["embed", "--device", "cpu"],
        ["explain", "--device", "cpu", "--target", "unit:pooled,0", "--method", "smoothgrad", "--noise", "NaN", "hi"],
        ["explain", "--device", "cpu", "--target", "unit:pooled,0", "--method", "lrp", "--epsilon", "Infinity", "hi"],
        ["explain", "--device", "cpu", "--target", "unit:pooled,0", "--method", "ig", "--steps", "-3", "hi"],
        ["explain", "--device", "cpu", "--target", "unit:pooled,99999999", "hi"],
        ["explain", "--device", "cpu", "--target", "unit:NaN,0", "hi"],
        ["explain", "--device", "cpu", "--target", "", "hi"],
        ["explain", "--device", "cpu", "--method", "nonsense", "--target", "unit:pooled,0", "hi"],
        ["faithfulness", "--device", "cpu", "--pairs", "0"],
        ["faithfulness", "--device", "cpu", "--random", "-1"],
        ["faithfulness", "--device", "cpu", "--curve-steps", "NaN"],
        ["heads", "--device", "cpu", "--batch-tokens", "0"],
        ["heads", "--device", "cpu", "--seed", "NaN"],

        // Missing values, unknown options, empty strings.
        ["attend", "--model"],
        ["explain", "--target"],
        ["heads", "--out"],
        ["attend", "--frobnicate", "hi"],
        ["devices", "--bogus"],
        ["attend", "--device", "", "hi"],
        ["attend", "--model", "", "hi"],
        ["attend", "--model", Directory, "hi"],
        ["attend", "--model", SomeFile, "hi"],
        ["embed", "--device", "cpu", "--ids", "1", "--ids", "2"],
        [""],
        ["--frobnicate"]);

    [Theory]
    [MemberData(nameof(CommandLines))]
    public void Hostile_arguments_end_in_a_one_line_error_with_exit_code_1_or_2(string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = Program.Run(args, output, error);
        string all = output + "\n" + error;
        Assert.True(code is 1 or 2, $"exit code {code}: {all}");
        Assert.DoesNotContain("   at ", all, StringComparison.Ordinal);
        // Progress lines may come first; the failure is the last line, and the only one.
        var lines = error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("headlight: ", lines[^1], StringComparison.Ordinal);
        Assert.Single(lines, l => l.Contains("headlight: ", StringComparison.Ordinal));
    }
}
