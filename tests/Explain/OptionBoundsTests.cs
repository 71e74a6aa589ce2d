using System.Diagnostics;
using System.Reflection;
using Headlight.Explain;
using Headlight.Explain.Census;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Explain;

/// <summary>
/// Every numeric option of the explanation library, set to hostile values (the extremes of its type, negatives, NaN
/// and the infinities), is refused at the entry point with an <see cref="ArgumentOutOfRangeException"/> that names the
/// option and its range, quickly and before any pass runs. Token ids are checked against the model's vocabulary.
/// </summary>
public sealed class OptionBoundsTests : IDisposable
{
    private static readonly object[] HostileInts = [int.MaxValue, int.MinValue, -1];
    private static readonly object[] HostileLongs = [long.MaxValue, long.MinValue, -1L, 0L];
    private static readonly object[] HostileDoubles = [double.NaN, double.PositiveInfinity, double.NegativeInfinity, double.MaxValue, -1.0];

    private readonly TinyModel decoder = TinyModel.Gpt2(9300);

    public void Dispose() => decoder.Dispose();

    [Fact]
    public void Every_numeric_option_is_refused_at_hostile_values_naming_the_option_and_its_range()
    {
        using var gpt = HeadlightModel.Load(decoder.Folder, Backends.Require("cpu"));
        var ids = gpt.FromIds([[5, 17, 33]]);
        var target = new NextTokenLogitTarget(1);
        var cases = new[] { new FaithfulnessCase("five seven", target) };
        AttributionOptions[] methods =
        [
            new SaliencyOptions(), new GradientXInputOptions(), new SmoothGradOptions(), new IntegratedGradientsOptions(),
            new LrpOptions(), new AttentionRolloutOptions(), new GradientAttentionOptions(), new KernelShapOptions(),
        ];

        int checkedValues = 0;
        foreach (var method in methods)
        {
            checkedValues += Hostile(method, o => Explainer.Explain(gpt, ids, target, (AttributionOptions)o));
        }

        checkedValues += Hostile(new FaithfulnessOptions(), o => FaithfulnessBenchmark.Run(gpt, cases, [new SaliencyOptions()], (FaithfulnessOptions)o));
        checkedValues += Hostile(new CensusOptions(), o => HeadCensus.Run(gpt, (CensusOptions)o));
        Assert.True(checkedValues > 60, $"only {checkedValues} hostile values were tried");
    }

    [Fact]
    public void Method_options_given_to_the_faithfulness_benchmark_are_checked_before_it_runs()
    {
        using var gpt = HeadlightModel.Load(decoder.Folder, Backends.Require("cpu"));
        var cases = new[] { new FaithfulnessCase("five seven", new NextTokenLogitTarget(1)) };
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => FaithfulnessBenchmark.Run(gpt, cases, [new IntegratedGradientsOptions { Steps = int.MaxValue }]));
        Assert.Equal("Steps", e.ParamName);
        Assert.Contains("[1, 100000]", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Census_counts_outside_their_ranges_are_refused()
    {
        using var gpt = HeadlightModel.Load(decoder.Folder, Backends.Require("cpu"));
        var seeds = Enumerable.Range(0, CensusOptions.MaxControlSeeds + 1).ToArray();
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => HeadCensus.Run(gpt, new CensusOptions { ControlSeeds = seeds }));
        Assert.Equal("ControlSeeds", e.ParamName);
        var corpus = CensusCorpus.FromTexts("t", ["a b"]);
        Assert.Equal("sequences", Assert.Throws<ArgumentOutOfRangeException>(() => corpus.WithRepeats(int.MaxValue, 20, 0)).ParamName);
        Assert.Equal("length", Assert.Throws<ArgumentOutOfRangeException>(() => corpus.WithRepeats(1, int.MaxValue, 0)).ParamName);
        Assert.Equal("memoryBudgetBytes", Assert.Throws<ArgumentOutOfRangeException>(() => Explainer.HeadGateGradients(gpt, gpt.FromIds([[5, 17]]), new NextTokenLogitTarget(1), long.MaxValue)).ParamName);
    }

    // Sets each writable numeric property of a fresh copy of options to each hostile value and runs the entry point.
    // Seeds take any value and are skipped; token ids must fail against the vocabulary.
    private static int Hostile(object options, Action<object> run)
    {
        int tried = 0;
        var properties = options.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanWrite && p.Name != "Seed");
        foreach (var property in properties)
        {
            var type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            object[] values = type == typeof(int) ? HostileInts : type == typeof(long) ? HostileLongs : type == typeof(double) ? HostileDoubles : [];
            foreach (object value in values)
            {
                var copy = Copy(options);
                property.SetValue(copy, value);
                var clock = Stopwatch.StartNew();
                var e = Record.Exception(() => run(copy));
                string what = $"{options.GetType().Name}.{property.Name} = {value}";
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"{what} took {clock.Elapsed}");
                Assert.True(e is ArgumentException, $"{what}: {e?.GetType().Name ?? "no exception"} {e?.Message}");
                if (property.Name.EndsWith("TokenId", StringComparison.Ordinal) && value is int.MaxValue)
                {
                    Assert.Contains("vocabulary", e!.Message, StringComparison.Ordinal);
                }
                else
                {
                    var range = Assert.IsType<ArgumentOutOfRangeException>(e);
                    Assert.Equal(property.Name, range.ParamName);
                    Assert.Contains(property.Name, range.Message, StringComparison.Ordinal);
                    Assert.Contains("[", range.Message, StringComparison.Ordinal);
                }

                tried++;
            }
        }

        return tried;
    }

    // Records have a protected copy constructor; `with` is not available through reflection.
    private static object Copy(object record)
    {
        var clone = record.GetType().GetMethod("<Clone>$", BindingFlags.Public | BindingFlags.Instance)
            ?? throw new InvalidOperationException($"{record.GetType().Name} is not a record.");
        return clone.Invoke(record, null)!;
    }
}
