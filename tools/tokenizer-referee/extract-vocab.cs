// Writes the vocab.txt embedded in a SentenceTransformers.* package assembly to a file, reading the
// manifest resource through the PE metadata without loading the assembly.
// usage: dotnet run extract-vocab.cs -- <path to SentenceTransformers.X.dll> <output vocab.txt>
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

if (args.Length != 2)
{
    Console.Error.WriteLine("usage: dotnet run extract-vocab.cs -- <assembly.dll> <vocab.txt>");
    return 2;
}

using var stream = File.OpenRead(args[0]);
using var pe = new PEReader(stream);
MetadataReader metadata = pe.GetMetadataReader();
foreach (ManifestResourceHandle handle in metadata.ManifestResources)
{
    ManifestResource resource = metadata.GetManifestResource(handle);
    string name = metadata.GetString(resource.Name);
    if (!resource.Implementation.IsNil || !name.EndsWith("vocab.txt", StringComparison.Ordinal))
    {
        continue;
    }

    // Embedded resources live in the CLI resources directory: a 4-byte length, then the bytes.
    PEMemoryBlock block = pe.GetSectionData(pe.PEHeaders.CorHeader!.ResourcesDirectory.RelativeVirtualAddress);
    BlobReader reader = block.GetReader((int)resource.Offset, block.Length - (int)resource.Offset);
    int length = reader.ReadInt32();
    File.WriteAllBytes(args[1], reader.ReadBytes(length));
    Console.WriteLine($"{name}: {length} bytes -> {args[1]}");
    return 0;
}

Console.Error.WriteLine($"{args[0]}: no manifest resource ending in vocab.txt");
return 1;
