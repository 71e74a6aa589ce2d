using System.Globalization;
using System.Text;
using Headlight.Explain.Census;
using Headlight.Kernels;
using Headlight.Models;

namespace Headlight.Cli;

/// <summary>
/// <c>headlight heads [--model M]</c>: the head census of one model — a layers × heads grid of role letters
/// coloured by score, the shares of heads per role next to random-weight controls, the chance levels, the
/// most important heads. <c>--compare A B ...</c>: one row per model and a verdict. <c>--json</c> prints
/// every number; <c>--out DIR</c> writes the JSON, PNG heat maps and an HTML page.
/// </summary>
internal static class HeadsCommand
{
    public const string Help = """
        Head census (heads):
          headlight heads [--model M]            roles of every attention head, with random-weight controls
          headlight heads --compare A B C ...    one row per model, share vs parameters, and a verdict
          --corpus FILE          your texts, one per line (default: the built-in corpus)
          --controls N           random-weight control models (seeds 1..N, default 3; 0 = none)
          --tagged DIR           also score syntactic roles (det_noun, adj_noun, prep_object, verb_subject) on
                                 part-of-speech-tagged .tsv files (token<TAB>tag, blank line between sentences):
                                 the last 10 files in name order (held out), first 500 sentences with a pair
          --tagged-files N       how many of the last files to use (default 10)
          --no-importance        skip head importance (gate gradients) and ablation
          --ablation-texts N     texts each head is ablated on (default 32)
          --repeats N --repeat-length L --seed S   repeated random sequences (default 32 x 20, seed 0)
          --out DIR              write census JSON, PNG heat maps (and share-vs-parameters.png) and census.html
        """;

    public static int Run(CliArgs cli, TextWriter output, TextWriter? errors = null, bool? colour = null)
    {
        bool compare = cli.Flag("compare");
        bool json = cli.Flag("json");
        string? deviceName = cli.Option("device");
        string? modelName = cli.Option("model");
        string? corpusPath = cli.Option("corpus");
        string? taggedPath = cli.Option("tagged");
        int taggedFiles = cli.IntOption("tagged-files", TaggedCorpus.DefaultHeldOutFiles, 1, 100_000);
        int controls = cli.IntOption("controls", 3, 0, 100);
        bool importance = !cli.Flag("no-importance");
        int ablation = cli.IntOption("ablation-texts", 32, 0, 1_000_000);
        int repeats = cli.IntOption("repeats", CensusCorpus.DefaultRepeatSequences, 0, 10_000);
        int repeatLength = cli.IntOption("repeat-length", CensusCorpus.DefaultRepeatLength, 2, 100_000);
        int seed = cli.IntOption("seed", 0);
        int batchTokens = cli.IntOption("batch-tokens", 4096, 1, 1 << 24);
        string? outDir = cli.Option("out");
        cli.RejectUnknown();
        OutputPaths.CheckDirectory("out", outDir);

        IReadOnlyList<string> models;
        if (compare)
        {
            if (modelName is not null || cli.Positional.Count == 0)
            {
                throw new UsageException("'heads --compare' takes the models as arguments: headlight heads --compare minilm arcticxs PATH ...");
            }

            models = cli.Positional;
        }
        else
        {
            if (cli.Positional.Count > 0)
            {
                throw new UsageException($"'heads' takes no text ('{cli.Positional[0]}'): the corpus comes from --corpus or the built-in one. To census several models, use --compare.");
            }

            models = [modelName ?? ModelOptions.DefaultModel];
        }

        var corpus = (corpusPath is null ? CensusCorpus.BuiltIn() : CensusCorpus.FromFile(corpusPath)).WithRepeats(repeats, repeatLength, seed);
        var options = new CensusOptions
        {
            Corpus = corpus,
            Tagged = taggedPath is null ? null : TaggedCorpus.FromDirectory(taggedPath, taggedFiles),
            ControlSeeds = Enumerable.Range(1, controls).ToArray(),
            Importance = importance,
            AblationTexts = ablation,
            BatchTokens = batchTokens,
        };

        errors ??= Console.Error;
        bool useColour = colour ?? (!json && ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected
            && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NO_COLOR")));
        var results = new List<CensusResult>();
        using (var device = Device.Open(deviceName))
        {
            foreach (string name in models)
            {
                using var model = Model.Load(name, device);
                var bar = new ProgressBar(errors, model.Name, interactive: ReferenceEquals(errors, Console.Error) && !Console.IsErrorRedirected);
                results.Add(HeadCensus.Run(model, options, bar));
                bar.Finish();
            }
        }

        var comparison = compare ? CensusComparison.Of(results) : null;
        if (outDir is not null)
        {
            WriteFiles(outDir, results, comparison, errors);
        }

        if (json)
        {
            output.WriteLine(comparison is null ? CensusJson.Serialize(results[0]) : CensusJson.Serialize(comparison));
            return 0;
        }

        foreach (var result in results)
        {
            Print(result, output, useColour);
            output.WriteLine();
        }

        if (comparison is not null)
        {
            PrintComparison(comparison, output);
        }

        return 0;
    }

    /// <summary>The census as a terminal report: header, thresholds, role grid, shares, chance levels, top heads, time.</summary>
    internal static void Print(CensusResult r, TextWriter o, bool colour)
    {
        var c = r.Corpus;
        o.WriteLine(Inv($"{r.Model} on {r.Device}: {r.Layers} layers x {r.HeadsPerLayer} heads, {Millions(r.Parameters)} parameters ({r.Family})"));
        o.WriteLine(Inv($"corpus {c.Name} ({c.TextSource}): {c.Texts} texts, {c.TextTokens} tokens; {c.RepeatSequences} random sequences of {c.RepeatLength} tokens repeated twice (seed {c.Seed})"));
        if (r.Tagged is { } t)
        {
            o.WriteLine(Inv($"tagged {t.Name} ({string.Join(", ", t.Files)}): {t.Sentences} sentences, {t.Tokens} tokens; pairs det_noun {t.DetNoun}, adj_noun {t.AdjNoun}, prep_object {t.PrepObject}, verb_subject {t.VerbSubject}"));
        }

        o.WriteLine("roles (thresholds; a head is interpretable when at least one passes):");
        foreach (string line in CensusThresholds.Describe())
        {
            o.WriteLine("  " + line);
        }

        o.WriteLine();
        o.WriteLine("grid: strongest role's letter (lower case and '·' = below its threshold) and its score in hundredths");
        Grid(r, o, colour, h =>
        {
            var (role, strength) = CensusThresholds.Strongest(h);
            double score = CensusThresholds.Score(h, role);
            char letter = CensusThresholds.Letter(role);
            string text = strength >= 1 ? letter.ToString() : letter == '.' ? "·" : char.ToLowerInvariant(letter).ToString();
            return (text + Hundredths(score), strength >= 1 ? Math.Min(strength, 2) / 2 : -strength);
        });

        if (r.Heads[0].ImportanceShare is not null)
        {
            o.WriteLine();
            o.WriteLine(Inv($"importance: share of sum |dL/dgate| in percent (target: {r.Target}; mean {r.TargetBaseline:F4} on {c.AblationTexts} texts)"));
            double max = r.Heads.Max(h => h.ImportanceShare ?? 0);
            Grid(r, o, colour, h => ((h.ImportanceShare!.Value * 100).ToString("0.0", CultureInfo.InvariantCulture), max == 0 ? 0 : h.ImportanceShare.Value / max));
        }

        o.WriteLine();
        o.WriteLine(Inv($"interpretable heads: {Count(r.Shares.Interpretable, r.Heads.Count)}{ControlText(r, x => x.Interpretable)}"));
        o.WriteLine(Inv($"  without [CLS]/[SEP]/punctuation roles: {Count(r.Shares.InterpretableExceptSpecialTokens, r.Heads.Count)}{ControlText(r, x => x.InterpretableExceptSpecialTokens)}"));
        foreach (var role in CensusThresholds.Roles.Where(x => CensusThresholds.Measured(r.Chance, x)))
        {
            o.WriteLine(Inv($"  {CensusThresholds.Letter(role)} {CensusThresholds.Name(role),-12} {Count(r.Shares.PerRole[role], r.Heads.Count),-16}{ControlText(r, x => x.PerRole[role])}   chance score {CensusThresholds.Score(r.Chance, role):F3}"));
        }

        var ch = r.Chance;
        o.WriteLine(Inv($"chance (uniform attention): normalised entropy {ch.NormalizedEntropy:F2}, confidence {ch.Confidence:F3}, entropy {ch.Entropy:F2} nats"));
        if (r.Heads[0].Importance is not null)
        {
            var top = r.Heads.OrderByDescending(h => h.Importance).ThenBy(h => h.Layer).ThenBy(h => h.Head).Take(5);
            o.WriteLine("most important heads: " + string.Join(", ", top.Select(h => Inv($"L{h.Layer}H{h.Head} {Pct(h.ImportanceShare ?? 0)} (drop {h.AblationDrop:F4}, {Roles(h)})"))));
        }

        o.WriteLine(Inv($"time {r.Elapsed.TotalSeconds:F1} s ({r.Controls.Count} controls)"));
    }

    private static void PrintComparison(CensusComparison comparison, TextWriter o)
    {
        o.WriteLine("comparison (share of heads; control = mean over random-weight seeds [min-max]):");
        var header = new StringBuilder(Inv($"  {"model",-28} {"params",9} {"LxH",6} {"interp",7} {"no-spec",8} {"control",18}"));
        foreach (var role in CensusThresholds.Roles)
        {
            header.Append(Inv($" {CensusThresholds.Letter(role),5}"));
        }

        o.WriteLine(header.ToString());
        foreach (var row in comparison.Rows)
        {
            string control = row.ControlInterpretable is null ? "-" : Inv($"{Pct(row.ControlInterpretable.Value)} [{Pct(row.ControlInterpretableMin!.Value)}-{Pct(row.ControlInterpretableMax!.Value)}]");
            var line = new StringBuilder(Inv($"  {Shorten(row.Model, 28),-28} {Millions(row.Parameters),9} {row.Layers + "x" + row.HeadsPerLayer,6} {Pct(row.Interpretable),7} {Pct(row.InterpretableExceptSpecialTokens),8} {control,18}"));
            foreach (var role in CensusThresholds.Roles)
            {
                line.Append(Inv($" {Pct(row.PerRole[role]),5}"));
            }

            o.WriteLine(line.ToString());
        }

        o.WriteLine();
        o.WriteLine("verdict: " + comparison.Verdict);
    }

    // A layers × heads table of short cells; each cell shaded by a value in [0, 1] (negative = below threshold).
    private static void Grid(CensusResult r, TextWriter o, bool colour, Func<HeadScores, (string Text, double Shade)> cell)
    {
        var head = new StringBuilder("      ");
        for (int h = 0; h < r.HeadsPerLayer; h++)
        {
            head.Append(Inv($"{"H" + h,5}"));
        }

        o.WriteLine(head.ToString());
        for (int l = 0; l < r.Layers; l++)
        {
            var line = new StringBuilder(Inv($"  L{l,-3}"));
            for (int h = 0; h < r.HeadsPerLayer; h++)
            {
                var (text, shade) = cell(r[l, h]);
                string padded = Inv($"{text,5}");
                line.Append(colour ? Paint(padded, shade) : padded);
            }

            o.WriteLine(line.ToString());
        }
    }

    // ANSI 256 colours: passing cells from yellow to red by strength, the rest in greys by how close they came.
    private static string Paint(string text, double shade)
    {
        int code = shade >= 0
            ? new[] { 226, 220, 214, 208, 202, 196 }[Math.Clamp((int)(shade * 6), 0, 5)]
            : 236 + Math.Clamp((int)(-shade * 14), 0, 13);
        return $"\u001b[38;5;{code}m{text}\u001b[0m";
    }

    private static void WriteFiles(string dir, IReadOnlyList<CensusResult> results, CensusComparison? comparison, TextWriter errors)
    {
        Directory.CreateDirectory(dir);
        foreach (var r in results)
        {
            string slug = Slug(r.Model);
            File.WriteAllText(Path.Combine(dir, slug + ".json"), CensusJson.Serialize(r, indented: true));
            foreach (var (key, _, png) in CensusPlots.HeatMaps(r))
            {
                File.WriteAllBytes(Path.Combine(dir, $"{slug}-{key}.png"), png);
            }
        }

        if (comparison is not null)
        {
            File.WriteAllText(Path.Combine(dir, "compare.json"), CensusJson.Serialize(comparison, indented: true));
            File.WriteAllBytes(Path.Combine(dir, "share-vs-parameters.png"), CensusPlots.ShareScatter(comparison));
        }

        File.WriteAllText(Path.Combine(dir, "census.html"), CensusHtml.Page(results, comparison));
        errors.WriteLine($"heads: wrote JSON, PNG heat maps and census.html to {dir}");
    }

    /// <summary>A file-name stem for a model name or path: its last path part, lower case, [a-z0-9.-] only.</summary>
    internal static string Slug(string model)
    {
        string last = Path.GetFileName(model.TrimEnd('/', '\\'));
        var s = new StringBuilder();
        foreach (char ch in (last.Length == 0 ? model : last).ToLowerInvariant())
        {
            s.Append(char.IsAsciiLetterOrDigit(ch) || ch is '.' or '-' ? ch : '-');
        }

        return s.Length == 0 ? "model" : s.ToString();
    }

    private static string ControlText(CensusResult r, Func<RoleShares, double> share)
    {
        if (r.Controls.Count == 0)
        {
            return string.Empty;
        }

        var values = r.Controls.Select(c => share(c.Shares)).ToArray();
        return Inv($"   controls {Pct(values.Average())} [{Pct(values.Min())}-{Pct(values.Max())}] over {values.Length} seeds");
    }

    private static string Roles(HeadScores h)
        => h.Roles == HeadRole.None ? "no role" : string.Join("+", CensusThresholds.Roles.Where(x => (h.Roles & x) != 0).Select(CensusThresholds.Name));

    private static string Count(double share, int heads) => Inv($"{(int)Math.Round(share * heads)}/{heads} = {Pct(share)}");

    private static string Hundredths(double score) => Math.Clamp((int)Math.Round(score * 100), 0, 99).ToString("00", CultureInfo.InvariantCulture);

    private static string Pct(double share) => (share * 100).ToString("F1", CultureInfo.InvariantCulture) + "%";

    private static string Millions(long parameters) => parameters >= 1_000_000
        ? (parameters / 1e6).ToString("F1", CultureInfo.InvariantCulture) + "M"
        : (parameters / 1e3).ToString("F1", CultureInfo.InvariantCulture) + "k";

    private static string Shorten(string s, int width) => s.Length <= width ? s : "…" + s[^(width - 1)..];

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    /// <summary>A one-line bar on stderr while a census runs (redrawn in place on a terminal; one line per stage otherwise).</summary>
    private sealed class ProgressBar(TextWriter writer, string model, bool interactive) : IProgress<CensusProgress>
    {
        private const int Width = 30;
        private string? stage;
        private bool drawn;

        public void Report(CensusProgress value)
        {
            if (!interactive)
            {
                if (value.Done == value.Total && value.Stage != stage)
                {
                    stage = value.Stage;
                    writer.WriteLine($"heads: {model}: {value.Stage} done ({value.Total} steps)");
                }

                return;
            }

            int filled = value.Total == 0 ? Width : (int)((long)Width * value.Done / value.Total);
            writer.Write($"\r{model}: {value.Stage,-16} [{new string('#', filled)}{new string('.', Width - filled)}] {value.Done}/{value.Total}   ");
            drawn = true;
        }

        public void Finish()
        {
            if (drawn)
            {
                writer.Write("\r" + new string(' ', Width + model.Length + 40) + "\r");
            }
        }
    }
}
