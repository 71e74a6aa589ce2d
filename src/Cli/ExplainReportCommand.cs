using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Headlight.Explain;
using Headlight.Explain.Census;
using Headlight.Explain.Report;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Cli;

/// <summary>
/// <c>headlight explain</c>: runs one or more methods (<c>--method ig,gradxinput,…</c>, default
/// <see cref="ExplainMethods.DefaultSet"/>) on the same inputs and target, prints each input once per method with
/// every word coloured by its score, and the check figures and timings; <c>--json</c> writes schema
/// <c>headlight.explain/1</c>, <c>--html FILE</c> the self-contained report. <c>--query Q --doc D</c> explains why
/// document D matches query Q (target: similarity to Q). Progress goes to stderr.
/// </summary>
internal static class ExplainReportCommand
{
    public const string Help = """
        Several methods and reports:
          --method a,b,c             run several methods side by side (default: {0})
          --query Q --doc D          why does document D match query Q (target similarity:Q; sentence encoders)
          --html FILE                write a self-contained HTML report (heat maps, check figures, attention heads)
          --census                   add the head census of the model to the report (a minute on MiniLM)
          --png DIR                  write the token heat maps as PNG images (one per input)
          --color auto|always|never  colour words on the terminal (auto: only on a terminal, and NO_COLOR unset)
        """;

    public static int Run(CliArgs cli, TextWriter output, TextWriter error)
    {
        var modelOptions = ModelOptions.Read(cli);
        bool json = cli.Flag("json");
        string? spec = cli.Option("target");
        string? query = cli.Option("query");
        string? doc = cli.Option("doc");
        string? html = cli.Option("html");
        string? png = cli.Option("png");
        bool census = cli.Flag("census");
        var methods = ExplainMethods.Read(cli);
        var color = TerminalColors.Decide(cli, output);
        cli.RejectUnknown();
        OutputPaths.CheckFile("html", html);
        OutputPaths.CheckDirectory("png", png);

        if (census && html is null)
        {
            throw new UsageException("--census adds a section to the HTML report: give --html FILE too.");
        }

        var texts = cli.Positional.ToList();
        if (query is not null)
        {
            if (spec is not null)
            {
                throw new UsageException("--query sets the target (similarity to the query): give --query or --target, not both.");
            }

            if (doc is not null)
            {
                texts.Insert(0, doc);
            }

            spec = "similarity:" + query;
        }
        else if (doc is not null)
        {
            throw new UsageException("--doc needs --query (the text the document should match).");
        }

        using var model = modelOptions.Load();

        // A decoder's natural question: why its most likely next token after the last one.
        spec ??= model.Config.IsDecoder ? "next:top" : throw new UsageException("'explain' needs --target, or --query with --doc (see 'headlight help').");
        var batch = modelOptions.Batch(model, texts);
        var target = ExplainCommand.ParseTarget(spec, model, batch);
        var results = new List<AttributionResult>();
        var relevances = new Dictionary<AttributionResult, RelevanceResult>();
        var clock = Stopwatch.StartNew();

        // On a terminal the bar redraws in place; redirected, each step is a line.
        bool live = ReferenceEquals(error, Console.Error) && !Console.IsErrorRedirected;
        for (int m = 0; m < methods.Count; m++)
        {
            int index = m;
            Progress(error, live, m, methods.Count, methods[m].Method, clock.Elapsed);
            var passes = new Reporter(p =>
            {
                if (live)
                {
                    Progress(error, live, index, methods.Count, $"{methods[index].Method} {p.Completed}/{p.Total} {p.Unit}", clock.Elapsed);
                }
            });
            if (methods[m] is LrpOptions lrp)
            {
                // LRP's per-layer and per-head relevance goes into the JSON and the single-method listing.
                var relevance = Explainer.Relevance(model, batch, target, lrp, passes);
                relevances[relevance.Attributions] = relevance;
                results.Add(relevance.Attributions);
            }
            else
            {
                results.Add(Explainer.Explain(model, batch, target, methods[m], passes));
            }
        }

        Progress(error, live, methods.Count, methods.Count, "done", clock.Elapsed);
        if (live)
        {
            error.WriteLine();
        }

        if (html is not null || png is not null)
        {
            var sections = new List<string>();
            if (census)
            {
                var result = HeadCensus.Run(model, new CensusOptions(), new CensusReporter(error, live));
                if (live)
                {
                    error.WriteLine();
                }

                sections.Add(CensusHtml.Section(result));
            }

            int tokens = batch.Texts[0].Count;
            if (tokens > AttentionPatterns.MaxTokens)
            {
                error.WriteLine($"explain: the head grid is left out of the report: the first input has {tokens} tokens, more than {AttentionPatterns.MaxTokens}.");
            }

            var attention = tokens <= AttentionPatterns.MaxTokens ? AttentionPatterns.Capture(model, batch) : null;
            var report = new ExplanationReport(model.Name, model.Device.Name, target.Description, results, attention, sections);
            if (html is not null)
            {
                File.WriteAllText(html, ReportHtml.Page(report));
                error.WriteLine($"explain: report written to {html}");
            }

            if (png is not null)
            {
                Directory.CreateDirectory(png);
                foreach (var (name, bytes) in ReportPng.HeatMaps(report))
                {
                    File.WriteAllBytes(Path.Combine(png, name), bytes);
                }

                error.WriteLine($"explain: heat maps written to {png}");
            }
        }

        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(ExplainJson.From(results, relevances, ExplainJson.LabelOf(target)), JsonOutput.Options));
            return 0;
        }

        Print(results, relevances, output, color);
        return 0;
    }

    private static void Progress(TextWriter error, bool live, int done, int total, string stage, TimeSpan elapsed)
    {
        const int Width = 20;
        int filled = total == 0 ? Width : done * Width / total;
        string line = $"explain [{new string('#', filled)}{new string('.', Width - filled)}] {done}/{total} {stage,-36} {elapsed.TotalSeconds.ToString("F1", CultureInfo.InvariantCulture)} s";
        if (live)
        {
            error.Write("\r" + line);
        }
        else
        {
            error.WriteLine(line);
        }
    }

    private static void Print(IReadOnlyList<AttributionResult> results, Dictionary<AttributionResult, RelevanceResult> relevances, TextWriter output, ColorMode color)
    {
        var first = results[0];
        output.WriteLine($"{first.Model} on {first.Device}: {first.Target}");
        if (results.Count == 1)
        {
            // One method: the full per-token listing as well.
            output.WriteLine($"{first.Method} ({ExplainCommand.Describe(first.Options)})");
            for (int r = 0; r < first.Rows.Count; r++)
            {
                output.WriteLine();
                ExplainCommand.Print(first.Rows[r], output);
                if (relevances.TryGetValue(first, out var relevance))
                {
                    ExplainCommand.PrintRelevance(relevance.Rows[r], output);
                }
            }
        }

        int width = Math.Max(8, results.Max(r => r.Method.Length));
        for (int r = 0; r < first.Rows.Count; r++)
        {
            output.WriteLine();
            output.WriteLine($"input {r + 1}: target {F(first.Rows[r].TargetValue)}");
            foreach (var result in results)
            {
                var words = result.Rows[r].Words.Select(w => (w.Text, w.Score)).ToArray();
                output.WriteLine($"  {result.Method.PadRight(width)}  {TerminalColors.Words(words, color)}");
            }
        }

        output.WriteLine();
        output.WriteLine("method".PadRight(width + 2) + "  time (ms)  rows run  check");
        foreach (var result in results)
        {
            string checks = string.Join("; ", result.Rows.Select(a => a.Check is { } c ? Check(a, c) : "-").Distinct());
            output.WriteLine($"  {result.Method.PadRight(width)}  {result.Elapsed.TotalMilliseconds.ToString("F0", CultureInfo.InvariantCulture),9}  {result.Passes,8}  {checks}");
        }

        output.WriteLine();
        output.WriteLine($"time {results.Sum(r => r.Elapsed.TotalMilliseconds).ToString("F0", CultureInfo.InvariantCulture)} ms ({results.Sum(r => r.Passes)} rows through the model)");
    }

    // Reports on the calling thread (Progress<T> would post to the thread pool and draw out of order).
    private sealed class Reporter(Action<OperationProgress> report) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value) => report(value);
    }

    private sealed class CensusReporter(TextWriter error, bool live) : IProgress<CensusProgress>
    {
        public void Report(CensusProgress value)
        {
            if (live)
            {
                error.Write($"\rexplain: head census {value.Stage,-16} {value.Done}/{value.Total}   ");
            }
            else if (value.Done == value.Total)
            {
                error.WriteLine($"explain: head census {value.Stage} done");
            }
        }
    }

    private static string Check(Attribution a, CheckFigure c)
    {
        double change = a.TargetValue - (a.BaselineValue ?? 0);
        string of = a.BaselineValue is null ? "the target" : "the change";
        string share = change == 0 ? string.Empty : $" ({(100 * Math.Abs(c.Value / change)).ToString("G3", CultureInfo.InvariantCulture)}% of {of})";
        return $"{c.Name} {c.Value.ToString("E2", CultureInfo.InvariantCulture)}{share}";
    }

    private static string F(double v) => v.ToString("0.00000", CultureInfo.InvariantCulture);
}
