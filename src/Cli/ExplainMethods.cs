using System.Globalization;
using Headlight.Explain;

namespace Headlight.Cli;

/// <summary>
/// The explanation methods the command line knows: a short name, aliases, the options that belong to it, and how
/// its <see cref="AttributionOptions"/> are made from the command line. <c>--method a,b,c</c> picks several;
/// without it, <see cref="DefaultSet"/> runs.
/// </summary>
internal static class ExplainMethods
{
    /// <summary>One method.</summary>
    /// <param name="Name">The short name used on the command line.</param>
    /// <param name="Aliases">Other accepted names.</param>
    /// <param name="Options">The options (without <c>--</c>) that belong to it.</param>
    /// <param name="Create">Makes its options from the command line's settings.</param>
    internal sealed record Method(string Name, string[] Aliases, string[] Options, Func<Settings, AttributionOptions> Create);

    /// <summary>Every method, in the order help lists them.</summary>
    public static IReadOnlyList<Method> All { get; } =
    [
        new("ig", ["integrated-gradients"], ["steps", "baseline", "rule", "keep-special"], s => new IntegratedGradientsOptions
        {
            Steps = s.Int("steps", 64, 1, 100_000),
            Baseline = s.Text("baseline") switch
            {
                null or "zero" => BaselineKind.Zero,
                "pad" => BaselineKind.Pad,
                "mask" => BaselineKind.Mask,
                var b => throw new UsageException($"--baseline must be zero, pad or mask, not '{b}'."),
            },
            Rule = s.Text("rule") switch
            {
                null or "gauss" or "gauss-legendre" => QuadratureRule.GaussLegendre,
                "riemann" or "middle" => QuadratureRule.RiemannMiddle,
                "left" => QuadratureRule.RiemannLeft,
                "right" => QuadratureRule.RiemannRight,
                "trapezoid" => QuadratureRule.RiemannTrapezoid,
                var r => throw new UsageException($"--rule must be gauss, riemann, left, right or trapezoid, not '{r}'."),
            },
            KeepSpecialTokens = s.Flag("keep-special"),
        }),
        new("saliency", [], [], _ => new SaliencyOptions()),
        new("gradxinput", ["gradient-x-input"], [], _ => new GradientXInputOptions()),
        new("smoothgrad", [], ["samples", "noise", "seed"], s => new SmoothGradOptions
        {
            Samples = s.Int("samples", 16, 1, 100_000),
            NoiseLevel = s.Double("noise", 0.1),
            Seed = s.Int("seed", 0),
        }),
        new("shap", ["kernel-shap"], ["budget", "seed", "exact", "features", "masking", "mask-token"], s =>
        {
            if (s.Flag("exact") && (s.Text("budget") is not null || s.Text("seed") is not null))
            {
                throw new UsageException("--exact enumerates every coalition: it takes no --budget or --seed.");
            }

            return new KernelShapOptions
            {
                Budget = s.Text("budget") is null ? null : s.Int("budget", 0, 1),
                Seed = s.Int("seed", 0),
                Exact = s.Flag("exact"),
                Features = s.Text("features") switch
                {
                    null or "words" => ShapFeatures.Words,
                    "tokens" => ShapFeatures.Tokens,
                    var f => throw new UsageException($"--features must be words or tokens, not '{f}'."),
                },
                Masking = s.Text("masking") switch
                {
                    null or "mask" => ShapMasking.Replace,
                    "drop" => s.Text("mask-token") is null ? ShapMasking.Drop : throw new UsageException("--mask-token replaces masked words; it does not go with --masking drop."),
                    var m => throw new UsageException($"--masking must be mask or drop, not '{m}'."),
                },
                ReplacementTokenId = s.Text("mask-token") is null ? null : s.Int("mask-token", 0, 0),
            };
        }),
        new("lrp", ["attnlrp"], ["epsilon"], s => new LrpOptions { Rules = LrpRules.AttnLrp, Epsilon = s.Double("epsilon", 1e-6) }),
        new("cp-lrp", [], ["epsilon"], s => new LrpOptions { Rules = LrpRules.CpLrp, Epsilon = s.Double("epsilon", 1e-6) }),
        new("rollout", [], [], _ => new AttentionRolloutOptions()),
        new("gradattn", [], [], _ => new GradientAttentionOptions()),
    ];

    /// <summary>The methods run when <c>--method</c> is not given: integrated gradients, AttnLRP, Kernel SHAP, attention rollout.</summary>
    public static IReadOnlyList<string> DefaultSet { get; } = ["ig", "lrp", "shap", "rollout"];

    /// <summary>Every option some method owns.</summary>
    public static IReadOnlyList<string> OptionNames => All.SelectMany(m => m.Options).Distinct(StringComparer.Ordinal).ToArray();

    /// <summary>Names for help and error messages.</summary>
    public static string NameList => string.Join(", ", All.Select(m => m.Name));

    /// <summary>Reads <c>--method</c> (a comma-separated list; default <see cref="DefaultSet"/>) and every method option.</summary>
    /// <param name="cli">The command line.</param>
    /// <param name="optionName">The option naming the methods.</param>
    /// <param name="sharedOptions">Method options the calling command also reads for itself (generate's --seed): never refused as foreign.</param>
    /// <exception cref="UsageException">An unknown method, or an option that belongs to none of the chosen methods.</exception>
    public static IReadOnlyList<AttributionOptions> Read(CliArgs cli, string optionName = "method", IReadOnlyCollection<string>? sharedOptions = null)
    {
        var settings = new Settings(cli);
        string? list = cli.Option(optionName);
        var names = list is null ? DefaultSet : list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (names.Count == 0)
        {
            throw new UsageException($"--{optionName} names no method; choose from {NameList}.");
        }

        var chosen = new List<Method>();
        foreach (string name in names)
        {
            var method = Find(name) ?? throw new UsageException($"--{optionName} must be one or more (comma-separated) of {NameList}, not '{name}'.");
            if (chosen.Contains(method))
            {
                throw new UsageException($"--{optionName} names '{method.Name}' twice.");
            }

            chosen.Add(method);
        }

        foreach (string option in settings.Given)
        {
            if (!chosen.Any(m => m.Options.Contains(option)) && sharedOptions?.Contains(option) != true)
            {
                var owners = All.Where(m => m.Options.Contains(option)).Select(m => m.Name);
                throw new UsageException($"--{option} belongs to --{optionName} {string.Join(" or ", owners)}, which is not among the chosen methods.");
            }
        }

        return chosen.Select(m => m.Create(settings)).ToArray();
    }

    /// <summary>The method named <paramref name="name"/> (or one of its aliases), or null.</summary>
    public static Method? Find(string name) => All.FirstOrDefault(m => m.Name == name || m.Aliases.Contains(name));

    /// <summary>The method options given on the command line, read once, typed on use.</summary>
    internal sealed class Settings
    {
        private readonly Dictionary<string, string?> values = new(StringComparer.Ordinal);
        private readonly HashSet<string> flags = new(StringComparer.Ordinal);
        private readonly CliArgs cli;

        public Settings(CliArgs cli)
        {
            this.cli = cli;
            foreach (string name in OptionNames)
            {
                if (Program.IsFlag(name))
                {
                    if (cli.Flag(name))
                    {
                        flags.Add(name);
                    }
                }
                else
                {
                    values[name] = cli.Option(name);
                }
            }
        }

        /// <summary>The options and flags that were given.</summary>
        public IEnumerable<string> Given => values.Where(v => v.Value is not null).Select(v => v.Key).Concat(flags);

        public string? Text(string name) => values[name];

        public bool Flag(string name) => flags.Contains(name);

        public int Int(string name, int fallback, int min = int.MinValue, int max = int.MaxValue) => cli.IntOption(name, fallback, min, max);

        public double Double(string name, double fallback)
        {
            string? text = values[name];
            return text is null
                ? fallback
                : double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v) ? v : throw new UsageException($"--{name} must be a finite number, not '{text}'.");
        }
    }
}
