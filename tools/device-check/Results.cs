using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Headlight.DeviceCheck;

/// <summary>One result: a passed or failed check, or a timing.</summary>
internal sealed record Row
{
    public required string Name { get; init; }

    public required string Status { get; init; }

    public double Ms { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Message { get; init; }

    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public Dictionary<string, double>? Values { get; init; }
}

/// <summary>
/// Collects rows and rewrites <c>NAME.json</c> and <c>NAME.md</c> in the output folder after each one,
/// so a run that is killed still leaves every row it finished.
/// </summary>
internal sealed class Results(string? outDir, string name, string title, string device)
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    private readonly List<Row> rows = [];
    private readonly DateTime started = DateTime.UtcNow;
    private readonly System.Diagnostics.Stopwatch sinceFlush = System.Diagnostics.Stopwatch.StartNew();

    public string Device { get; set; } = device;

    public string? DeviceDescription { get; set; }

    public IReadOnlyList<Row> Rows => rows;

    public int Count(string status) => rows.Count(r => r.Status == status);

    public void Add(Row row)
    {
        rows.Add(row);

        // Rewriting thousands of op rows after each one would cost more than the cases: at most once a second, and after every failure.
        if (row.Status != "pass" || sinceFlush.Elapsed.TotalSeconds >= 1)
        {
            Flush(finished: false);
        }
    }

    public void Finish() => Flush(finished: true);

    public string Summary() =>
        $"{Count("pass")} passed, {Count("fail")} failed, {Count("skip")} skipped, {Count("not run")} not run";

    private void Flush(bool finished)
    {
        if (outDir is null)
        {
            return;
        }

        sinceFlush.Restart();
        Directory.CreateDirectory(outDir);
        var doc = new
        {
            Title = title,
            Device,
            DeviceDescription,
            Started = started.ToString("O", CultureInfo.InvariantCulture),
            Finished = finished,
            Summary = Summary(),
            Rows = rows,
        };
        File.WriteAllText(Path.Combine(outDir, name + ".json"), JsonSerializer.Serialize(doc, Json));

        var md = new StringBuilder();
        md.AppendLine(CultureInfo.InvariantCulture, $"## {title} on {Device}{(DeviceDescription is null ? "" : $" ({DeviceDescription})")}");
        md.AppendLine();
        md.AppendLine(CultureInfo.InvariantCulture, $"{Summary()}{(finished ? "" : " (so far: the run had not finished)")}");
        md.AppendLine();
        if (rows.Count > 60)
        {
            // Many rows (the op matrix): one line per op, then only the rows that did not pass.
            md.AppendLine("| op | cases | passed | failed | skipped | not run | total ms |");
            md.AppendLine("|---|---:|---:|---:|---:|---:|---:|");
            foreach (var g in rows.GroupBy(r => r.Name.Split(' ')[0], StringComparer.Ordinal))
            {
                md.AppendLine(CultureInfo.InvariantCulture,
                    $"| {g.Key} | {g.Count()} | {g.Count(r => r.Status == "pass")} | {g.Count(r => r.Status == "fail")} | {g.Count(r => r.Status == "skip")} | {g.Count(r => r.Status == "not run")} | {Format(g.Sum(r => r.Ms))} |");
            }

            md.AppendLine();
        }

        var keys = rows.Where(r => r.Values is not null).SelectMany(r => r.Values!.Keys).Distinct().ToList();
        md.AppendLine("| name | status | ms | " + string.Join(" | ", keys) + (keys.Count > 0 ? " | " : "") + "message |");
        md.AppendLine("|---|---|---:|" + string.Concat(keys.Select(_ => "---:|")) + "---|");
        foreach (var r in rows)
        {
            // Passing op cases are many and say nothing: list them only by count unless they carry values.
            if (r.Status == "pass" && r.Values is null && rows.Count > 60)
            {
                continue;
            }

            string values = string.Concat(keys.Select(k => (r.Values is not null && r.Values.TryGetValue(k, out double v) ? Format(v) : "") + " | "));
            string message = (r.Message ?? "").ReplaceLineEndings(" ").Replace("|", "\\|", StringComparison.Ordinal);
            if (message.Length > 300)
            {
                message = message[..300] + "…";
            }

            md.AppendLine(CultureInfo.InvariantCulture, $"| {r.Name} | {r.Status} | {Format(r.Ms)} | {values}{message} |");
        }

        File.WriteAllText(Path.Combine(outDir, name + ".md"), md.ToString());
    }

    private static string Format(double v) =>
        double.IsNaN(v) ? "" : v.ToString(Math.Abs(v) >= 100 || v == Math.Floor(v) ? "F0" : Math.Abs(v) >= 1 ? "F2" : "G3", CultureInfo.InvariantCulture);
}
