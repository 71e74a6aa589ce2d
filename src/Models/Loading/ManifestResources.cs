using System.Buffers.Binary;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace Headlight.Models.Loading;

/// <summary>
/// Lists and copies the embedded manifest resources of a .NET assembly without loading it: the
/// metadata's ManifestResource table gives each resource's offset inside the CLI header's
/// Resources directory, where the resource is a u32 length followed by its bytes.
/// </summary>
internal static class ManifestResources
{
    /// <summary>Lists the embedded resources of an assembly file, every offset and length validated against the file.</summary>
    /// <exception cref="ModelFormatException">The file is not a .NET assembly, or a resource lies outside it.</exception>
    public static IReadOnlyList<ManifestResourceEntry> List(string assemblyPath)
    {
        using var stream = new FileStream(assemblyPath, FileMode.Open, FileAccess.Read, FileShare.Read);
        long fileLength = stream.Length;
        try
        {
            using var pe = new PEReader(stream, PEStreamOptions.LeaveOpen);
            var cor = pe.PEHeaders.CorHeader;
            if (cor is null || !pe.HasMetadata)
            {
                throw new ModelFormatException(assemblyPath, "CLI header", "a .NET assembly", "a file without CLI metadata");
            }

            var directory = cor.ResourcesDirectory;
            var metadata = pe.GetMetadataReader();
            var entries = new List<ManifestResourceEntry>();
            long directoryStart = -1;
            Span<byte> prefix = stackalloc byte[4];
            foreach (var handle in metadata.ManifestResources)
            {
                var resource = metadata.GetManifestResource(handle);
                string name = metadata.GetString(resource.Name);
                if (!resource.Implementation.IsNil)
                {
                    // Linked from another file or assembly: nothing embedded here.
                    continue;
                }

                if (directoryStart < 0)
                {
                    directoryStart = DirectoryFileOffset(assemblyPath, pe.PEHeaders, directory, fileLength);
                }

                long offset = resource.Offset;
                if (offset < 0 || offset > directory.Size - 4L)
                {
                    throw new ModelFormatException(assemblyPath, $"resource '{name}'.offset", $"an offset inside the {directory.Size}-byte resources directory", $"{offset}");
                }

                stream.Position = directoryStart + offset;
                stream.ReadExactly(prefix);
                long length = BinaryPrimitives.ReadUInt32LittleEndian(prefix);
                if (length > directory.Size - offset - 4)
                {
                    throw new ModelFormatException(assemblyPath, $"resource '{name}'.length", $"at most the {directory.Size - offset - 4} bytes left in the resources directory", $"{length}");
                }

                entries.Add(new ManifestResourceEntry(name, directoryStart + offset + 4, length));
            }

            return entries;
        }
        catch (BadImageFormatException e)
        {
            throw new ModelFormatException(assemblyPath, "PE image", "a .NET assembly", $"a malformed image ({e.Message})", e);
        }
        catch (InvalidOperationException e)
        {
            throw new ModelFormatException(assemblyPath, "PE image", "a .NET assembly", $"a malformed image ({e.Message})", e);
        }
        catch (EndOfStreamException e)
        {
            throw new ModelFormatException(assemblyPath, "resources directory", "resources inside the file", "a truncated file", e);
        }
    }

    /// <summary>Copies one resource's bytes from the assembly file to a stream.</summary>
    public static void Copy(string assemblyPath, ManifestResourceEntry entry, Stream destination)
    {
        using var source = new FileStream(assemblyPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        if (entry.FileOffset + entry.Length > source.Length)
        {
            throw new ModelFormatException(assemblyPath, $"resource '{entry.Name}'", $"{entry.Length} bytes at offset {entry.FileOffset}", $"a file of {source.Length} bytes");
        }

        source.Position = entry.FileOffset;
        var buffer = new byte[1 << 20];
        long left = entry.Length;
        while (left > 0)
        {
            int n = source.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            if (n == 0)
            {
                throw new ModelFormatException(assemblyPath, $"resource '{entry.Name}'", $"{entry.Length} bytes", "a file that ended early");
            }

            destination.Write(buffer, 0, n);
            left -= n;
        }
    }

    /// <summary>Maps the resources directory's relative virtual address to a file offset through the section table.</summary>
    private static long DirectoryFileOffset(string path, PEHeaders headers, DirectoryEntry directory, long fileLength)
    {
        if (directory.Size <= 0 || directory.RelativeVirtualAddress <= 0)
        {
            throw new ModelFormatException(path, "CLI header.Resources", "a resources directory", "none");
        }

        foreach (var section in headers.SectionHeaders)
        {
            long start = section.VirtualAddress;
            long rawSize = section.SizeOfRawData;
            if (directory.RelativeVirtualAddress >= start && directory.RelativeVirtualAddress < start + Math.Max(rawSize, section.VirtualSize))
            {
                long inSection = directory.RelativeVirtualAddress - start;
                if (inSection + directory.Size > rawSize)
                {
                    throw new ModelFormatException(path, "CLI header.Resources", $"a directory inside section {section.Name}'s {rawSize} bytes of file data", $"{directory.Size} bytes at {inSection}");
                }

                long offset = section.PointerToRawData + inSection;
                if (offset + directory.Size > fileLength)
                {
                    throw new ModelFormatException(path, "CLI header.Resources", $"a directory inside the {fileLength}-byte file", $"{directory.Size} bytes at {offset}");
                }

                return offset;
            }
        }

        throw new ModelFormatException(path, "CLI header.Resources", "a directory inside a section", $"RVA 0x{directory.RelativeVirtualAddress:X}, in no section");
    }
}
