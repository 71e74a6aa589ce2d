using System.Globalization;
using System.Text.Json;
using Headlight.Explain;

namespace Headlight.Cli;

/// <summary>
/// <c>headlight faithfulness</c>: the deletion/insertion benchmark of <see cref="FaithfulnessBenchmark"/> for the
/// chosen methods on a corpus (default: the built-in query/document pairs, target = similarity to the query), as a
/// table against the random-order baseline; <c>--svg FILE</c> plots the mean curves, <c>--json</c> gives every number.
/// </summary>
internal static class FaithfulnessCommand
{
    public const string Help = """
        Faithfulness benchmark (headlight faithfulness):
          --corpus FILE              one case per line: QUERY<TAB>DOCUMENT (target: similarity to the query), or,
                                     with --target, one text per line; default: the 24 built-in query/document pairs
          --pairs N                  only the first N cases
          --method a,b,c             the methods to compare (default as for explain; method options as for explain)
          --removal mask|remove      replace a removed word's tokens by [MASK] (default) or delete them
          --curve-steps N            points per curve (default: one per word)
          --random N                 random orders averaged for the baseline (default 5); --random-seed S
          --svg FILE                 plot of the mean deletion and insertion curves
        """;

    public static int Run(CliArgs cli, TextWriter output, TextWriter error)
    {
        var modelOptions = ModelOptions.Read(cli);
        bool json = cli.Flag("json");
        string? corpus = cli.Option("corpus");
        string? spec = cli.Option("target");
        int? pairs = cli.Option("pairs") is null ? null : cli.IntOption("pairs", 0, 1);
        string? svg = cli.Option("svg");
        var options = new FaithfulnessOptions
        {
            Removal = cli.Option("removal", "mask") switch
            {
                "mask" => WordRemoval.Mask,
                "remove" => WordRemoval.Remove,
                var r => throw new UsageException($"--removal must be mask or remove, not '{r}'."),
            },
            MaxSteps = cli.Option("curve-steps") is null ? null : cli.IntOption("curve-steps", 0, 1, 10_000),
            RandomOrders = cli.IntOption("random", 5, 1, 1000),
            Seed = cli.IntOption("random-seed", 0),
        };
        var methods = ExplainMethods.Read(cli);
        cli.RejectUnknown();
        OutputPaths.CheckFile("svg", svg);
        if (cli.Positional.Count > 0)
        {
            throw new UsageException("'faithfulness' takes no text arguments: give --corpus FILE, or use the built-in pairs.");
        }

        if (modelOptions.Ids is not null)
        {
            throw new UsageException("'faithfulness' works on text: --ids is not supported.");
        }

        using var model = modelOptions.Load();
        var cases = Cases(corpus, spec, model).Take(pairs ?? int.MaxValue).ToArray();
        bool live = ReferenceEquals(error, Console.Error) && !Console.IsErrorRedirected;
        var progress = new Progress(error, live);
        var result = FaithfulnessBenchmark.Run(model, cases, methods, options, progress);
        if (live)
        {
            error.WriteLine();
        }

        if (svg is not null)
        {
            File.WriteAllText(svg, FaithfulnessPlot.Svg(result));
            error.WriteLine($"faithfulness: plot written to {svg}");
        }

        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(new
            {
                result.Model,
                result.Device,
                Cases = result.CaseCount,
                result.Options,
                ElapsedMs = result.Elapsed.TotalMilliseconds,
                result.Passes,
                result.Grid,
                Methods = result.Methods.Select(m => Json(m, result.BeatsRandom(m))),
                Random = Json(result.Random, null),
            }, JsonOutput.Options));
            return 0;
        }

        output.WriteLine($"{result.Model} on {result.Device}: {result.CaseCount} cases, {Describe(result.Options)}");
        output.WriteLine("AOPC: mean change of the target from the start over the curve's points (higher is better for both);");
        output.WriteLine("area: under the curve over the share of words (deletion lower is better, insertion higher).");
        output.WriteLine();
        int width = Math.Max(8, result.Methods.Max(m => m.Method.Length));
        output.WriteLine($"{"method".PadRight(width)}  {"del AOPC",9} {"ins AOPC",9} {"del area",9} {"ins area",9}  {"beats random",12}  {"wins del",8}  time (s)");
        foreach (var m in result.Methods.Append(result.Random))
        {
            bool isRandom = ReferenceEquals(m, result.Random);
            string beats = isRandom ? string.Empty : result.BeatsRandom(m) ? "yes" : "no";
            int wins = isRandom ? 0 : m.Cases.Select((c, i) => c.DeletionAopc > result.Random.Cases[i].DeletionAopc).Count(w => w);
            string winText = isRandom ? string.Empty : $"{wins}/{result.CaseCount}";
            output.WriteLine($"{m.Method.PadRight(width)}  {F(m.DeletionAopc),9} {F(m.InsertionAopc),9} {F(m.DeletionArea),9} {F(m.InsertionArea),9}  {beats,12}  {winText,8}  {m.AttributionTime.TotalSeconds.ToString("F1", CultureInfo.InvariantCulture)}");
        }

        output.WriteLine();
        output.WriteLine($"time {result.Elapsed.TotalSeconds.ToString("F1", CultureInfo.InvariantCulture)} s ({result.Passes} perturbed rows through the model)");
        return 0;
    }

    private static object Json(MethodFaithfulness m, bool? beatsRandom) => new
    {
        m.Method,
        m.DeletionAopc,
        m.InsertionAopc,
        m.DeletionArea,
        m.InsertionArea,
        BeatsRandom = beatsRandom,
        AttributionMs = m.AttributionTime.TotalMilliseconds,
        m.MeanDeletion,
        m.MeanInsertion,
        CaseDeletionAopc = m.Cases.Select(c => c.DeletionAopc),
        CaseInsertionAopc = m.Cases.Select(c => c.InsertionAopc),
    };

    private static IEnumerable<FaithfulnessCase> Cases(string? corpus, string? spec, Models.Model model)
    {
        if (corpus is null)
        {
            if (spec is not null)
            {
                throw new UsageException("--target goes with --corpus (one text per line); the built-in pairs have their own target.");
            }

            return QueryDocumentPairs.Cases();
        }

        var lines = File.ReadAllLines(corpus).Where(l => !string.IsNullOrWhiteSpace(l) && !l.StartsWith('#')).ToArray();
        if (lines.Length == 0)
        {
            throw new UsageException($"--corpus {corpus} has no cases.");
        }

        if (spec is null)
        {
            return lines.Select((line, i) =>
            {
                var parts = line.Split('\t');
                return parts.Length == 2 && parts.All(p => p.Trim().Length > 0)
                    ? new FaithfulnessCase(parts[1].Trim(), new EmbeddingSimilarityTarget(parts[0].Trim()))
                    : throw new UsageException($"--corpus {corpus}, line {i + 1}: expected QUERY<TAB>DOCUMENT (or give --target and one text per line).");
            }).ToArray();
        }

        return lines.Select(line => new FaithfulnessCase(line.Trim(), ExplainCommand.ParseTarget(spec, model, model.Tokenize([line.Trim()])))).ToArray();
    }

    private static string Describe(IReadOnlyDictionary<string, string> options) => string.Join(", ", options.Select(o => $"{o.Key.Replace('_', ' ')} {o.Value}"));

    private static string F(double v) => v.ToString("0.0000", CultureInfo.InvariantCulture);

    // Reports synchronously (Progress<T> would post to the thread pool and print out of order).
    private sealed class Progress(TextWriter error, bool live) : IProgress<FaithfulnessProgress>
    {
        public void Report(FaithfulnessProgress value)
        {
            const int Width = 20;
            int filled = value.Total == 0 ? Width : value.Done * Width / value.Total;
            string line = $"faithfulness [{new string('#', filled)}{new string('.', Width - filled)}] {value.Stage,-40}";
            if (live)
            {
                error.Write("\r" + line);
            }
            else
            {
                error.WriteLine(line);
            }
        }
    }
}
