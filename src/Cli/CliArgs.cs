using System.Globalization;

namespace Headlight.Cli;

/// <summary>Thrown for a command line that cannot be understood; printed without a stack trace.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>
/// A parsed command line: the command, positional arguments, <c>--name value</c> options and
/// <c>--flag</c> switches. Options not read by the command are reported as errors.
/// </summary>
internal sealed class CliArgs
{
    private readonly Dictionary<string, string> options = new(StringComparer.Ordinal);
    private readonly HashSet<string> flags = new(StringComparer.Ordinal);
    private readonly HashSet<string> used = new(StringComparer.Ordinal);

    private CliArgs(string command, List<string> positional)
    {
        Command = command;
        Positional = positional;
    }

    public string Command { get; }

    public IReadOnlyList<string> Positional { get; }

    /// <summary>Parses <paramref name="args"/>; <paramref name="flagNames"/> are the switches that take no value.</summary>
    public static CliArgs Parse(string[] args, IReadOnlySet<string> flagNames)
    {
        if (args.Length == 0)
        {
            return new CliArgs("help", []);
        }

        var positional = new List<string>();
        var result = new CliArgs(args[0], positional);
        for (int i = 1; i < args.Length; i++)
        {
            string a = args[i];
            if (a == "--")
            {
                positional.AddRange(args.Skip(i + 1));
                break;
            }

            if (a.StartsWith("--", StringComparison.Ordinal) && a.Length > 2)
            {
                string name = a[2..];
                string? inlineValue = null;
                int eq = name.IndexOf('=', StringComparison.Ordinal);
                if (eq >= 0)
                {
                    inlineValue = name[(eq + 1)..];
                    name = name[..eq];
                }

                if (flagNames.Contains(name) && inlineValue is null)
                {
                    result.flags.Add(name);
                    continue;
                }

                string value = inlineValue ?? (i + 1 < args.Length ? args[++i] : throw new UsageException($"Option --{name} needs a value."));
                if (!result.options.TryAdd(name, value))
                {
                    throw new UsageException($"Option --{name} was given twice.");
                }
            }
            else if (a is "-n" && i + 1 < args.Length)
            {
                result.options["n"] = args[++i];
            }
            else
            {
                positional.Add(a);
            }
        }

        return result;
    }

    public bool Flag(string name)
    {
        used.Add(name);
        return flags.Contains(name);
    }

    /// <summary>The value of <c>--name</c>, or null when not given; an empty value is a usage error.</summary>
    public string? Option(string name)
    {
        used.Add(name);
        if (!options.TryGetValue(name, out var v))
        {
            return null;
        }

        return v.Length > 0 ? v : throw new UsageException($"Option --{name} needs a value, got an empty string.");
    }

    public string Option(string name, string fallback) => Option(name) ?? fallback;

    public int IntOption(string name, int fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        string? text = Option(name);
        if (text is null)
        {
            return fallback;
        }

        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) || value < min || value > max)
        {
            throw new UsageException($"Option --{name} must be an integer in [{min}, {max}], got '{text}'.");
        }

        return value;
    }

    /// <summary>Throws for options or flags the command did not read.</summary>
    public void RejectUnknown()
    {
        var unknown = options.Keys.Concat(flags).Where(k => !used.Contains(k)).ToList();
        if (unknown.Count > 0)
        {
            throw new UsageException($"Unknown option(s) for '{Command}': {string.Join(", ", unknown.Select(u => "--" + u))}.");
        }
    }
}
