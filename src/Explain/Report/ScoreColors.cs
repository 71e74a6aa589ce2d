namespace Headlight.Explain.Report;

/// <summary>
/// The one diverging colour scale of reports and the terminal: white at 0, red for positive scores, blue for
/// negative ones, full colour at the largest |score| of the method on that text (special tokens left out of the
/// scale, since some methods pile their mass on [CLS] or [SEP]).
/// </summary>
internal static class ScoreColors
{
    /// <summary>The largest |score| over the non-special tokens (over all tokens if every token is special); 0 if all are 0.</summary>
    public static double Scale(IReadOnlyList<double> scores, IReadOnlyList<bool>? special = null)
    {
        double max = 0;
        for (int i = 0; i < scores.Count; i++)
        {
            if (special is null || !special[i])
            {
                max = Math.Max(max, Math.Abs(scores[i]));
            }
        }

        return max > 0 || special is null ? max : Scale(scores);
    }

    /// <summary>score / scale clipped to [−1, 1] (0 when the scale is 0 or the score is not finite).</summary>
    public static double Normalize(double score, double scale)
        => scale > 0 && double.IsFinite(score) ? Math.Clamp(score / scale, -1, 1) : 0;

    /// <summary>The background colour of a normalised score in [−1, 1].</summary>
    public static (byte R, byte G, byte B) Background(double normalized)
    {
        double a = Math.Clamp(Math.Abs(normalized), 0, 1);
        byte fade = (byte)Math.Round(255 * (1 - (0.85 * a)));
        return normalized >= 0 ? ((byte)255, fade, fade) : (fade, fade, (byte)255);
    }

    /// <summary>The text colour that reads on <see cref="Background"/>.</summary>
    public static (byte R, byte G, byte B) Foreground(double normalized) => Math.Abs(normalized) > 0.75 ? ((byte)255, (byte)255, (byte)255) : ((byte)0, (byte)0, (byte)0);

    /// <summary>The colour as <c>#rrggbb</c>.</summary>
    public static string Hex((byte R, byte G, byte B) c) => $"#{c.R:x2}{c.G:x2}{c.B:x2}";

    /// <summary>The nearest xterm 256-colour index (the 6×6×6 cube).</summary>
    public static int Xterm256((byte R, byte G, byte B) c)
    {
        static int Level(byte v) => v < 48 ? 0 : v < 115 ? 1 : (v - 35) / 40;
        return 16 + (36 * Level(c.R)) + (6 * Level(c.G)) + Level(c.B);
    }
}
