using System.Reflection;
using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// One cell row of the op test matrix: an op at one shape, runnable on any device. <see cref="Run"/>
/// builds seeded inputs, poisons the outputs with NaN, runs the op on the device and compares every
/// output with a float64 reference computed independently in the test.
/// </summary>
/// <param name="Op">The op and direction, e.g. <c>LayerNorm.Forward</c>.</param>
/// <param name="Shape">The shape and options, e.g. <c>rows=17 d=65</c>.</param>
/// <param name="Tiny">True when the case is small enough for ILGPU's CPU simulator.</param>
/// <param name="Run">Runs the case on a device; fails through xunit assertions.</param>
public sealed record OpCase(string Op, string Shape, bool Tiny, Action<Device> Run)
{
    /// <summary>The name the matrix lists the case under.</summary>
    public string Id => $"{Op} {Shape}";
}

/// <summary>Provides the cases of one op (or one family of ops); discovered by reflection.</summary>
public interface IOpCaseSource
{
    /// <summary>Every case this op contributes to the matrix.</summary>
    IEnumerable<OpCase> Cases();
}

/// <summary>All cases of all ops, by id.</summary>
public static class OpCases
{
    private static readonly Lazy<IReadOnlyDictionary<string, OpCase>> ById = new(Discover);

    /// <summary>Every case, by <see cref="OpCase.Id"/>.</summary>
    public static IReadOnlyDictionary<string, OpCase> All => ById.Value;

    private static IReadOnlyDictionary<string, OpCase> Discover()
    {
        var cases = new SortedDictionary<string, OpCase>(StringComparer.Ordinal);
        var sources = typeof(OpCases).Assembly.GetTypes()
            .Where(t => typeof(IOpCaseSource).IsAssignableFrom(t) && t is { IsInterface: false, IsAbstract: false });
        foreach (var type in sources)
        {
            var source = (IOpCaseSource)Activator.CreateInstance(type)!;
            foreach (var c in source.Cases())
            {
                if (!cases.TryAdd(c.Id, c))
                {
                    throw new InvalidOperationException($"Two op cases share the id '{c.Id}' ({type.Name}).");
                }
            }
        }

        return cases;
    }
}
