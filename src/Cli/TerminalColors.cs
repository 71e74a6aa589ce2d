using System.Globalization;
using System.Text;
using Headlight.Explain.Report;

namespace Headlight.Cli;

/// <summary>How words are coloured on the terminal.</summary>
internal enum ColorMode
{
    /// <summary>No escape codes: each word is followed by its scaled score in brackets.</summary>
    Plain,

    /// <summary>xterm 256-colour backgrounds.</summary>
    Xterm256,

    /// <summary>24-bit backgrounds.</summary>
    TrueColor,
}

/// <summary>Text with each word on a background coloured by its score (red positive, blue negative), or plain.</summary>
internal static class TerminalColors
{
    /// <summary>
    /// <c>--color always|never|auto</c> (default auto): colour only when writing to the real console, stdout is not
    /// redirected, <c>NO_COLOR</c> is unset and <c>TERM</c> is not <c>dumb</c>; 24-bit when <c>COLORTERM</c> says so.
    /// </summary>
    public static ColorMode Decide(CliArgs cli, TextWriter output)
    {
        string mode = cli.Option("color", "auto");
        bool trueColor = Environment.GetEnvironmentVariable("COLORTERM") is "truecolor" or "24bit";
        var rich = trueColor ? ColorMode.TrueColor : ColorMode.Xterm256;
        return mode switch
        {
            "never" => ColorMode.Plain,
            "always" => rich,
            "auto" => ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected
                && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR"))
                && Environment.GetEnvironmentVariable("TERM") != "dumb" ? rich : ColorMode.Plain,
            _ => throw new UsageException($"--color must be auto, always or never, not '{mode}'."),
        };
    }

    /// <summary>The words, each coloured by its score scaled to the largest |score|.</summary>
    public static string Words(IReadOnlyList<(string Text, double Score)> words, ColorMode mode)
    {
        double scale = ScoreColors.Scale(words.Select(w => w.Score).ToArray());
        var s = new StringBuilder();
        foreach (var (text, score) in words)
        {
            if (s.Length > 0)
            {
                s.Append(' ');
            }

            double n = ScoreColors.Normalize(score, scale);
            if (mode == ColorMode.Plain)
            {
                s.Append(text).Append('[').Append(n.ToString("+0.00;-0.00;0", CultureInfo.InvariantCulture)).Append(']');
                continue;
            }

            var bg = ScoreColors.Background(n);
            var fg = ScoreColors.Foreground(n);
            s.Append(mode == ColorMode.TrueColor
                ? $"\u001b[48;2;{bg.R};{bg.G};{bg.B}m\u001b[38;2;{fg.R};{fg.G};{fg.B}m"
                : $"\u001b[48;5;{ScoreColors.Xterm256(bg)}m\u001b[38;5;{ScoreColors.Xterm256(fg)}m");
            s.Append(text).Append("\u001b[0m");
        }

        return s.ToString();
    }
}
