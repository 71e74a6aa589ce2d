using System.Buffers.Binary;

namespace Headlight.Models.Loading;

/// <summary>One entry of a zip archive that is stored (not compressed): where its bytes lie in the file.</summary>
internal sealed record StoredZipEntry(string Name, long DataOffset, long Length);

/// <summary>
/// Reads the directory of a zip archive whose entries are stored uncompressed, as <c>torch.save</c> writes
/// them. Nothing is inflated: a compressed or encrypted entry is an error, and every entry's range is
/// checked against the file before anything is read from it. Layout: local headers with the data, then
/// the central directory, then the end record (zip64 records when offsets or counts need 64 bits).
/// </summary>
internal static class StoredZip
{
    private const uint EndSignature = 0x06054b50, Zip64EndSignature = 0x06064b50, Zip64LocatorSignature = 0x07064b50;
    private const uint CentralSignature = 0x02014b50, LocalSignature = 0x04034b50;
    private const int EndLength = 22, CentralLength = 46, LocalLength = 30;

    /// <summary>Every entry, by name.</summary>
    /// <exception cref="ModelFormatException">The file is not a zip archive, or an entry is compressed, encrypted or out of bounds.</exception>
    public static Dictionary<string, StoredZipEntry> ReadDirectory(string path, FileStream stream)
    {
        long fileLength = stream.Length;
        if (fileLength < EndLength)
        {
            throw new ModelFormatException(path, "(file)", "a zip archive", $"a file of {fileLength} bytes");
        }

        // The end record is the last 22 bytes plus a comment of at most 65,535 bytes.
        int tailLength = (int)Math.Min(fileLength, EndLength + 65535);
        byte[] tail = Read(stream, fileLength - tailLength, tailLength);
        int end = -1;
        for (int i = tailLength - EndLength; i >= 0; i--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(i)) == EndSignature && i + EndLength + BinaryPrimitives.ReadUInt16LittleEndian(tail.AsSpan(i + 20)) == tailLength)
            {
                end = i;
                break;
            }
        }

        if (end < 0)
        {
            throw new ModelFormatException(path, "(end of central directory)", "a zip archive (PyTorch >= 1.6 format)", "no end record");
        }

        long count = BinaryPrimitives.ReadUInt16LittleEndian(tail.AsSpan(end + 10));
        long directoryLength = BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(end + 12));
        long directoryOffset = BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(end + 16));
        long endOffset = fileLength - tailLength + end;
        if (count == 0xFFFF || directoryLength == 0xFFFFFFFF || directoryOffset == 0xFFFFFFFF)
        {
            (count, directoryLength, directoryOffset, endOffset) = Zip64End(path, stream, endOffset);
        }

        if (directoryOffset < 0 || directoryLength < 0 || directoryOffset > endOffset || directoryLength > endOffset - directoryOffset)
        {
            throw new ModelFormatException(path, "(central directory)", $"a directory inside the {fileLength}-byte file", $"offset {directoryOffset}, length {directoryLength}");
        }

        if (count > directoryLength / CentralLength)
        {
            throw new ModelFormatException(path, "(central directory)", $"at most {directoryLength / CentralLength} entries in {directoryLength} bytes", $"{count}");
        }

        if (directoryLength > int.MaxValue)
        {
            throw new ModelFormatException(path, "(central directory)", "a directory below 2 GiB", $"{directoryLength} bytes");
        }

        byte[] directory = Read(stream, directoryOffset, (int)directoryLength);
        var entries = new Dictionary<string, StoredZipEntry>(StringComparer.Ordinal);
        int at = 0;
        for (long e = 0; e < count; e++)
        {
            if (at + CentralLength > directory.Length || BinaryPrimitives.ReadUInt32LittleEndian(directory.AsSpan(at)) != CentralSignature)
            {
                throw new ModelFormatException(path, $"(central directory entry {e})", "a central directory header", "other bytes");
            }

            var h = directory.AsSpan(at);
            int flags = BinaryPrimitives.ReadUInt16LittleEndian(h[8..]);
            int method = BinaryPrimitives.ReadUInt16LittleEndian(h[10..]);
            long compressed = BinaryPrimitives.ReadUInt32LittleEndian(h[20..]);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(h[24..]);
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(h[28..]);
            int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(h[30..]);
            int commentLength = BinaryPrimitives.ReadUInt16LittleEndian(h[32..]);
            long local = BinaryPrimitives.ReadUInt32LittleEndian(h[42..]);
            if (at + CentralLength + nameLength + extraLength + commentLength > directory.Length)
            {
                throw new ModelFormatException(path, $"(central directory entry {e})", "a header inside the directory", "one running past its end");
            }

            string name = System.Text.Encoding.UTF8.GetString(h.Slice(CentralLength, nameLength));
            var extra = h.Slice(CentralLength + nameLength, extraLength);
            (size, compressed, local) = Zip64Sizes(path, name, extra, size, compressed, local);
            at += CentralLength + nameLength + extraLength + commentLength;

            if ((flags & 1) != 0)
            {
                throw new ModelFormatException(path, name, "an unencrypted entry", "an encrypted one");
            }

            if (method != 0 || compressed != size)
            {
                throw new ModelFormatException(path, name, "a stored (uncompressed) entry, as torch.save writes", $"compression method {method}, {compressed} bytes for {size}");
            }

            long data = LocalData(path, stream, name, local, directoryOffset);
            if (size > directoryOffset - data)
            {
                throw new ModelFormatException(path, name, $"data ending before the central directory at {directoryOffset}", $"{size} bytes from {data}");
            }

            if (!entries.TryAdd(name, new StoredZipEntry(name, data, size)))
            {
                throw new ModelFormatException(path, name, "unique entry names", "the name twice");
            }
        }

        return entries;
    }

    /// <summary>Reads <paramref name="length"/> bytes at <paramref name="offset"/>, all of which the caller checked lie in the file.</summary>
    public static byte[] Read(FileStream stream, long offset, int length)
    {
        var bytes = new byte[length];
        RandomAccess.Read(stream.SafeFileHandle, bytes, offset);
        return bytes;
    }

    private static (long Count, long Length, long Offset, long EndOffset) Zip64End(string path, FileStream stream, long endOffset)
    {
        if (endOffset < 20 + 56)
        {
            throw new ModelFormatException(path, "(zip64 end locator)", "a zip64 locator before the end record", "too short a file");
        }

        byte[] locator = Read(stream, endOffset - 20, 20);
        if (BinaryPrimitives.ReadUInt32LittleEndian(locator) != Zip64LocatorSignature)
        {
            throw new ModelFormatException(path, "(zip64 end locator)", "a zip64 locator", "other bytes");
        }

        long recordOffset = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(locator.AsSpan(8)), long.MaxValue);
        if (recordOffset > endOffset - 20 - 56)
        {
            throw new ModelFormatException(path, "(zip64 end record)", "a record before the locator", $"offset {recordOffset}");
        }

        byte[] record = Read(stream, recordOffset, 56);
        if (BinaryPrimitives.ReadUInt32LittleEndian(record) != Zip64EndSignature)
        {
            throw new ModelFormatException(path, "(zip64 end record)", "a zip64 end record", "other bytes");
        }

        return (Clamp(record, 32), Clamp(record, 40), Clamp(record, 48), recordOffset);
    }

    private static long Clamp(ReadOnlySpan<byte> bytes, int at) => (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(bytes[at..]), long.MaxValue);

    private static (long Size, long Compressed, long Local) Zip64Sizes(string path, string name, ReadOnlySpan<byte> extra, long size, long compressed, long local)
    {
        while (extra.Length >= 4)
        {
            int id = BinaryPrimitives.ReadUInt16LittleEndian(extra);
            int length = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
            if (length > extra.Length - 4)
            {
                throw new ModelFormatException(path, name, "extra fields inside the header", "one running past it");
            }

            if (id == 1)
            {
                // Only the fields whose 32-bit value is 0xFFFFFFFF follow, in this order.
                var field = extra.Slice(4, length);
                int at = 0;
                if (size == 0xFFFFFFFF)
                {
                    size = Zip64Field(path, name, field, ref at);
                }

                if (compressed == 0xFFFFFFFF)
                {
                    compressed = Zip64Field(path, name, field, ref at);
                }

                if (local == 0xFFFFFFFF)
                {
                    local = Zip64Field(path, name, field, ref at);
                }
            }

            extra = extra[(4 + length)..];
        }

        return (size, compressed, local);
    }

    private static long Zip64Field(string path, string name, ReadOnlySpan<byte> field, ref int at)
    {
        if (at + 8 > field.Length)
        {
            throw new ModelFormatException(path, name, "a complete zip64 extra field", $"{field.Length} bytes");
        }

        long value = Clamp(field, at);
        at += 8;
        return value;
    }

    private static long LocalData(string path, FileStream stream, string name, long local, long directoryOffset)
    {
        if (local > directoryOffset - LocalLength)
        {
            throw new ModelFormatException(path, name, $"a local header before the central directory at {directoryOffset}", $"offset {local}");
        }

        byte[] header = Read(stream, local, LocalLength);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != LocalSignature)
        {
            throw new ModelFormatException(path, name, $"a local file header at {local}", "other bytes");
        }

        int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(26));
        int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(28));
        long data = local + LocalLength + nameLength + extraLength;
        if (data > directoryOffset)
        {
            throw new ModelFormatException(path, name, "a local header before the central directory", $"one ending at {data}");
        }

        return data;
    }
}
