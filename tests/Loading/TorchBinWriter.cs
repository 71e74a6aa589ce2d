using System.Buffers.Binary;
using System.Text;

namespace Headlight.Tests.Loading;

/// <summary>
/// Writes <c>pytorch_model.bin</c> files byte by byte, as <c>torch.save</c> (PyTorch ≥ 1.6) lays them out:
/// a zip archive of stored (uncompressed) entries under one folder, <c>&lt;folder&gt;/data.pkl</c> (the state
/// dict pickled with protocol 2), <c>&lt;folder&gt;/data/&lt;key&gt;</c> (each storage's little-endian bytes),
/// <c>&lt;folder&gt;/version</c> ("3") and <c>&lt;folder&gt;/byteorder</c> ("little"). Entry data is aligned to
/// 64 bytes with padding in the local header's extra field, as torch's writer does.
/// </summary>
/// <remarks>
/// The pickle: <c>PROTO 2</c>; <c>GLOBAL collections OrderedDict</c>, <c>EMPTY_TUPLE</c>, <c>REDUCE</c> (the
/// state dict); <c>MARK</c>, then per tensor its name (<c>BINUNICODE</c>) and
/// <c>GLOBAL torch._utils _rebuild_tensor_v2</c> (memoised: <c>BINGET</c> after the first) applied by
/// <c>REDUCE</c> to the tuple (persistent id, storage offset, size, stride, requires_grad, backward hooks);
/// the persistent id is the tuple <c>('storage', GLOBAL torch FloatStorage, key, 'cpu', numel)</c> followed
/// by <c>BINPERSID</c>; <c>SETITEMS</c>; then <c>BUILD</c> with <c>{'_metadata': OrderedDict()}</c>; <c>STOP</c>.
/// </remarks>
internal static class TorchBinWriter
{
    /// <summary>One tensor of the state dict: a view of <paramref name="Storage"/> at an element offset.</summary>
    public sealed record Tensor(string Name, string Storage, long Offset, long[] Shape, bool Parameter = false, long[]? Stride = null);

    /// <summary>One storage: its torch type (<c>FloatStorage</c>, <c>HalfStorage</c>, …), element count and bytes.</summary>
    public sealed record Storage(string Key, string Type, long Numel, byte[] Bytes);

    /// <summary>The pickled state dict of <paramref name="tensors"/>.</summary>
    public static byte[] Pickle(IEnumerable<Tensor> tensors, IReadOnlyDictionary<string, Storage> storages)
    {
        var p = new PickleBuilder();
        p.Op(0x80).Op(2);
        p.Global("collections", "OrderedDict").Op(')').Op('R').Put();
        p.Op('(');
        foreach (var t in tensors)
        {
            var s = storages[t.Storage];
            p.Unicode(t.Name).Put();
            if (t.Parameter)
            {
                p.Global("torch._utils", "_rebuild_parameter");
            }

            p.Global("torch._utils", "_rebuild_tensor_v2");
            p.Op('(');
            p.Op('(').Unicode("storage").Global("torch", s.Type).Unicode(s.Key).Unicode("cpu").Int(s.Numel).Op('t').Op('Q');
            p.Int(t.Offset);
            p.Tuple(t.Shape);
            p.Tuple(t.Stride ?? Contiguous(t.Shape));
            p.Op(0x89);
            p.Global("collections", "OrderedDict").Op(')').Op('R');
            p.Op('t').Op('R').Put();
            if (t.Parameter)
            {
                p.Op(0x89).Global("collections", "OrderedDict").Op(')').Op('R').Op(0x87).Op('R');
            }
        }

        p.Op('u');
        p.Op('}').Unicode("_metadata").Global("collections", "OrderedDict").Op(')').Op('R').Op('s').Op('b');
        p.Op('.');
        return p.ToArray();
    }

    /// <summary>A complete archive: entries under <paramref name="folder"/>; <paramref name="method"/> is written as the compression method of every entry (0 = stored).</summary>
    public static byte[] Archive(string folder, byte[] pickle, IEnumerable<Storage> storages, ushort method = 0, bool zip64 = false)
    {
        var entries = new List<(string, byte[])> { ($"{folder}/data.pkl", pickle) };
        entries.AddRange(storages.Select(s => ($"{folder}/data/{s.Key}", s.Bytes)));
        entries.Add(($"{folder}/version", Encoding.ASCII.GetBytes("3\n")));
        entries.Add(($"{folder}/byteorder", Encoding.ASCII.GetBytes("little")));
        return Zip(entries, method, zip64);
    }

    /// <summary>
    /// A zip archive of stored entries, data aligned to 64 bytes. With <paramref name="zip64"/> the central directory
    /// gives sizes and offsets as 0xFFFFFFFF with the values in a zip64 extra field, and the end record points to a
    /// zip64 end record through its locator, as writers do past 4 GiB.
    /// </summary>
    public static byte[] Zip(IEnumerable<(string Name, byte[] Data)> entries, ushort method = 0, bool zip64 = false)
    {
        var file = new MemoryStream();
        var central = new MemoryStream();
        int count = 0;
        foreach (var (name, data) in entries)
        {
            byte[] nameBytes = Encoding.UTF8.GetBytes(name);
            long local = file.Length;
            int pad = (int)((64 - ((local + 30 + nameBytes.Length + 4) % 64)) % 64);
            byte[] extra = new byte[4 + pad];
            BinaryPrimitives.WriteUInt16LittleEndian(extra, 0x4246); // "FB", torch's padding field
            BinaryPrimitives.WriteUInt16LittleEndian(extra.AsSpan(2), (ushort)pad);
            uint crc = Crc32(data);

            var h = new byte[30];
            BinaryPrimitives.WriteUInt32LittleEndian(h, 0x04034b50);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(4), 20);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(8), method);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(14), crc);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(18), (uint)data.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(22), (uint)data.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(26), (ushort)nameBytes.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(28), (ushort)extra.Length);
            file.Write(h);
            file.Write(nameBytes);
            file.Write(extra);
            file.Write(data);

            var c = new byte[46];
            BinaryPrimitives.WriteUInt32LittleEndian(c, 0x02014b50);
            BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(4), 20);
            BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(6), 20);
            BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(10), method);
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(16), crc);
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(20), (uint)data.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(24), (uint)data.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(28), (ushort)nameBytes.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(42), (uint)local);
            byte[] extra64 = [];
            if (zip64)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(20), 0xFFFFFFFF);
                BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(24), 0xFFFFFFFF);
                BinaryPrimitives.WriteUInt32LittleEndian(c.AsSpan(42), 0xFFFFFFFF);
                extra64 = new byte[4 + 24];
                BinaryPrimitives.WriteUInt16LittleEndian(extra64, 1);
                BinaryPrimitives.WriteUInt16LittleEndian(extra64.AsSpan(2), 24);
                BinaryPrimitives.WriteInt64LittleEndian(extra64.AsSpan(4), data.Length);
                BinaryPrimitives.WriteInt64LittleEndian(extra64.AsSpan(12), data.Length);
                BinaryPrimitives.WriteInt64LittleEndian(extra64.AsSpan(20), local);
                BinaryPrimitives.WriteUInt16LittleEndian(c.AsSpan(30), (ushort)extra64.Length);
            }

            central.Write(c);
            central.Write(nameBytes);
            central.Write(extra64);
            count++;
        }

        long directory = file.Length;
        central.Position = 0;
        central.CopyTo(file);
        if (zip64)
        {
            long record = file.Length;
            var r = new byte[56];
            BinaryPrimitives.WriteUInt32LittleEndian(r, 0x06064b50);
            BinaryPrimitives.WriteInt64LittleEndian(r.AsSpan(4), 44);
            BinaryPrimitives.WriteInt64LittleEndian(r.AsSpan(24), count);
            BinaryPrimitives.WriteInt64LittleEndian(r.AsSpan(32), count);
            BinaryPrimitives.WriteInt64LittleEndian(r.AsSpan(40), central.Length);
            BinaryPrimitives.WriteInt64LittleEndian(r.AsSpan(48), directory);
            file.Write(r);
            var locator = new byte[20];
            BinaryPrimitives.WriteUInt32LittleEndian(locator, 0x07064b50);
            BinaryPrimitives.WriteInt64LittleEndian(locator.AsSpan(8), record);
            BinaryPrimitives.WriteUInt32LittleEndian(locator.AsSpan(16), 1);
            file.Write(locator);
            var end64 = new byte[22];
            BinaryPrimitives.WriteUInt32LittleEndian(end64, 0x06054b50);
            BinaryPrimitives.WriteUInt16LittleEndian(end64.AsSpan(8), 0xFFFF);
            BinaryPrimitives.WriteUInt16LittleEndian(end64.AsSpan(10), 0xFFFF);
            BinaryPrimitives.WriteUInt32LittleEndian(end64.AsSpan(12), 0xFFFFFFFF);
            BinaryPrimitives.WriteUInt32LittleEndian(end64.AsSpan(16), 0xFFFFFFFF);
            file.Write(end64);
            return file.ToArray();
        }

        var end = new byte[22];
        BinaryPrimitives.WriteUInt32LittleEndian(end, 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(8), (ushort)count);
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(10), (ushort)count);
        BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(12), (uint)central.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(16), (uint)directory);
        file.Write(end);
        return file.ToArray();
    }

    private static long[] Contiguous(long[] shape)
    {
        var stride = new long[shape.Length];
        long s = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            stride[i] = s;
            s *= shape[i];
        }

        return stride;
    }

    private static uint Crc32(byte[] data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++)
            {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
            }
        }

        return ~crc;
    }

    /// <summary>Pickle opcodes appended one by one; memo slots numbered as Python's pickler numbers them.</summary>
    public sealed class PickleBuilder
    {
        private readonly MemoryStream bytes = new();
        private readonly Dictionary<string, int> globals = [];
        private int memo;

        public PickleBuilder Op(int op)
        {
            bytes.WriteByte((byte)op);
            return this;
        }

        public PickleBuilder Raw(ReadOnlySpan<byte> raw)
        {
            bytes.Write(raw);
            return this;
        }

        // BINPUT (LONG_BINPUT past 255) of the top of the stack.
        public PickleBuilder Put()
        {
            int slot = memo++;
            if (slot < 256)
            {
                return Op('q').Op(slot);
            }

            Op('r');
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(b, slot);
            return Raw(b);
        }

        // GLOBAL the first time (then memoised), BINGET / LONG_BINGET after.
        public PickleBuilder Global(string module, string name)
        {
            string key = module + "\n" + name;
            if (globals.TryGetValue(key, out int slot))
            {
                if (slot < 256)
                {
                    return Op('h').Op(slot);
                }

                Op('j');
                Span<byte> b = stackalloc byte[4];
                BinaryPrimitives.WriteInt32LittleEndian(b, slot);
                return Raw(b);
            }

            Op('c').Raw(Encoding.ASCII.GetBytes($"{module}\n{name}\n"));
            globals[key] = memo;
            return Put();
        }

        public PickleBuilder Unicode(string text)
        {
            byte[] utf8 = Encoding.UTF8.GetBytes(text);
            Op('X');
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(b, utf8.Length);
            return Raw(b).Raw(utf8);
        }

        public PickleBuilder Int(long value)
        {
            Span<byte> b = stackalloc byte[8];
            if (value is >= 0 and < 256)
            {
                return Op('K').Op((int)value);
            }

            if (value is >= 0 and < 65536)
            {
                BinaryPrimitives.WriteUInt16LittleEndian(b, (ushort)value);
                return Op('M').Raw(b[..2]);
            }

            if (value is >= int.MinValue and <= int.MaxValue)
            {
                BinaryPrimitives.WriteInt32LittleEndian(b, (int)value);
                return Op('J').Raw(b[..4]);
            }

            BinaryPrimitives.WriteInt64LittleEndian(b, value);
            return Op(0x8a).Op(8).Raw(b);
        }

        public PickleBuilder Tuple(long[] values)
        {
            if (values.Length is 0)
            {
                return Op(')');
            }

            if (values.Length > 3)
            {
                Op('(');
            }

            foreach (long v in values)
            {
                Int(v);
            }

            return values.Length switch
            {
                1 => Op(0x85),
                2 => Op(0x86),
                3 => Op(0x87),
                _ => Op('t'),
            };
        }

        public byte[] ToArray() => bytes.ToArray();
    }
}
