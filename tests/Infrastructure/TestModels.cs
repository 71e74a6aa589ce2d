using System.Collections.Concurrent;
using Headlight.Models.Loading;

namespace Headlight.Tests;

/// <summary>The packaged real models, extracted once per test run into the default cache (or <c>HEADLIGHT_CACHE</c>).</summary>
internal static class TestModels
{
    private static readonly ConcurrentDictionary<string, Lazy<ExtractedModel>> Extracted = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The extracted files of a catalogue model (<c>minilm</c>, <c>arcticxs</c>).</summary>
    public static ExtractedModel Files(string name) =>
        Extracted.GetOrAdd(name, n => new Lazy<ExtractedModel>(() => ModelCatalog.Extract(n))).Value;
}
