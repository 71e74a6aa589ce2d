using System.Buffers.Binary;
using System.Text;

namespace Headlight.Models.Loading;

/// <summary>A storage a pickled tensor points to: <c>archive/data/&lt;Key&gt;</c>, <paramref name="Numel"/> elements of <paramref name="DType"/>.</summary>
internal sealed record TorchStorage(string Key, SafeTensorsDType DType, long Numel);

/// <summary>A tensor view of a storage: element offset, sizes and strides as pickled.</summary>
internal sealed record TorchTensor(TorchStorage Storage, long Offset, long[] Shape, long[] Stride);

/// <summary>
/// A restricted reader for the <c>data.pkl</c> of a <c>torch.save</c> archive: it interprets only the
/// opcodes a state dict needs (protocol 2, plus the framing and memo opcodes of protocols 4 and 5) and
/// resolves only the globals torch's tensor rebuild names. Nothing is imported or called: REDUCE builds
/// a tensor or an empty OrderedDict and nothing else. Any other opcode or global is a
/// <see cref="ModelFormatException"/> naming the file, the byte offset and the opcode or global.
/// </summary>
internal sealed class TorchPickle
{
    private const int MaxDepth = 10_000;

    // The globals torch writes into a state dict, mapped to what they mean here.
    private static readonly Dictionary<string, SafeTensorsDType> StorageTypes = new(StringComparer.Ordinal)
    {
        ["torch.FloatStorage"] = SafeTensorsDType.F32,
        ["torch.HalfStorage"] = SafeTensorsDType.F16,
        ["torch.BFloat16Storage"] = SafeTensorsDType.BF16,
        ["torch.DoubleStorage"] = SafeTensorsDType.F64,
        ["torch.LongStorage"] = SafeTensorsDType.I64,
        ["torch.IntStorage"] = SafeTensorsDType.I32,
        ["torch.ShortStorage"] = SafeTensorsDType.I16,
        ["torch.CharStorage"] = SafeTensorsDType.I8,
        ["torch.ByteStorage"] = SafeTensorsDType.U8,
        ["torch.BoolStorage"] = SafeTensorsDType.Bool,
    };

    private const string OrderedDict = "collections.OrderedDict", RebuildTensor = "torch._utils._rebuild_tensor_v2", RebuildParameter = "torch._utils._rebuild_parameter";

    private readonly string path;
    private readonly byte[] bytes;
    private readonly Func<string, SafeTensorsDType, long, TorchStorage> storage;
    private readonly List<object?> stack = [];
    private readonly Stack<int> marks = new();
    private readonly Dictionary<long, object?> memo = [];
    private int at;
    private int opAt;

    private TorchPickle(string path, byte[] bytes, Func<string, SafeTensorsDType, long, TorchStorage> storage)
    {
        this.path = path;
        this.bytes = bytes;
        this.storage = storage;
    }

    /// <summary>Reads a pickled state dict: tensor names to tensors, in the pickle's order.</summary>
    /// <param name="path">The archive named in errors (with the pickle's entry name).</param>
    /// <param name="bytes">The pickle.</param>
    /// <param name="storage">Resolves a persistent id's storage key, dtype and element count (and checks the archive holds it).</param>
    /// <exception cref="ModelFormatException">The pickle uses an opcode or global outside the state-dict subset, is truncated, or is not a dict of tensors.</exception>
    public static List<KeyValuePair<string, TorchTensor>> ReadStateDict(string path, byte[] bytes, Func<string, SafeTensorsDType, long, TorchStorage> storage)
    {
        var reader = new TorchPickle(path, bytes, storage);
        object? result = reader.Run();
        if (result is not PickledDict dict)
        {
            throw new ModelFormatException(path, "(pickle result)", "a state dict (a dict of tensors)", Describe(result));
        }

        var tensors = new List<KeyValuePair<string, TorchTensor>>();
        foreach (var (key, value) in dict.Items)
        {
            if (key is not string name || value is not TorchTensor tensor)
            {
                throw new ModelFormatException(path, $"(state dict entry {Describe(key)})", "a tensor under a string name", Describe(value));
            }

            tensors.Add(new(name, tensor));
        }

        return tensors;
    }

    private object? Run()
    {
        while (true)
        {
            opAt = at;
            byte op = Byte();
            switch (op)
            {
                case 0x80: // PROTO
                    int protocol = Byte();
                    if (protocol is < 2 or > 5)
                    {
                        throw Error("PROTO", "protocol 2 to 5", $"{protocol}");
                    }

                    break;
                case 0x95: // FRAME: an 8-byte length the reader does not need
                    Take(8);
                    break;
                case (byte)'.': // STOP
                    if (stack.Count != 1 || marks.Count != 0)
                    {
                        throw Error("STOP", "one value and no open mark", $"{stack.Count} values, {marks.Count} marks");
                    }

                    return stack[0];
                case (byte)'c': // GLOBAL module\nname\n
                    Push(Global(Line(), Line()));
                    break;
                case (byte)'(': // MARK
                    marks.Push(stack.Count);
                    break;
                case (byte)'N':
                    Push(null);
                    break;
                case 0x88:
                    Push(true);
                    break;
                case 0x89:
                    Push(false);
                    break;
                case (byte)'J': // BININT
                    Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4)));
                    break;
                case (byte)'K': // BININT1
                    Push((long)Byte());
                    break;
                case (byte)'M': // BININT2
                    Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2)));
                    break;
                case 0x8a: // LONG1: n little-endian two's-complement bytes
                    Push(Long1(Byte()));
                    break;
                case (byte)'G': // BINFLOAT, big-endian
                    Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8)));
                    break;
                case (byte)'X': // BINUNICODE
                    Push(Text(Take(Length(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))))));
                    break;
                case 0x8c: // SHORT_BINUNICODE
                    Push(Text(Take(Byte())));
                    break;
                case (byte)')':
                    Push(new PickledTuple([]));
                    break;
                case 0x85:
                    Push(new PickledTuple([Pop()]));
                    break;
                case 0x86:
                {
                    var b = Pop();
                    var a = Pop();
                    Push(new PickledTuple([a, b]));
                    break;
                }

                case 0x87:
                {
                    var c = Pop();
                    var b = Pop();
                    var a = Pop();
                    Push(new PickledTuple([a, b, c]));
                    break;
                }

                case (byte)'t': // TUPLE
                    Push(new PickledTuple(PopMark()));
                    break;
                case (byte)'}':
                    Push(new PickledDict());
                    break;
                case (byte)']':
                    Push(new PickledList());
                    break;
                case (byte)'a': // APPEND
                {
                    var value = Pop();
                    As<PickledList>(Peek(), "APPEND").Items.Add(value);
                    break;
                }

                case (byte)'e': // APPENDS
                {
                    var values = PopMark();
                    As<PickledList>(Peek(), "APPENDS").Items.AddRange(values);
                    break;
                }

                case (byte)'s': // SETITEM
                {
                    var value = Pop();
                    var key = Pop();
                    As<PickledDict>(Peek(), "SETITEM").Items.Add(new(key, value));
                    break;
                }

                case (byte)'u': // SETITEMS
                {
                    var values = PopMark();
                    if (values.Length % 2 != 0)
                    {
                        throw Error("SETITEMS", "key, value pairs", $"{values.Length} values");
                    }

                    var dict = As<PickledDict>(Peek(), "SETITEMS");
                    for (int i = 0; i < values.Length; i += 2)
                    {
                        dict.Items.Add(new(values[i], values[i + 1]));
                    }

                    break;
                }

                case (byte)'q': // BINPUT
                    memo[Byte()] = Peek();
                    break;
                case (byte)'r': // LONG_BINPUT
                    memo[BinaryPrimitives.ReadUInt32LittleEndian(Take(4))] = Peek();
                    break;
                case 0x94: // MEMOIZE
                    memo[memo.Count] = Peek();
                    break;
                case (byte)'h': // BINGET
                    Push(Get(Byte()));
                    break;
                case (byte)'j': // LONG_BINGET
                    Push(Get(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))));
                    break;
                case (byte)'Q': // BINPERSID
                    Push(PersistentStorage(Pop()));
                    break;
                case (byte)'R': // REDUCE
                {
                    var args = As<PickledTuple>(Pop(), "REDUCE arguments");
                    var callable = Pop();
                    Push(Reduce(callable, args.Items));
                    break;
                }

                case (byte)'b': // BUILD: a state dict's _metadata attribute (versions only), not needed
                    Pop();
                    As<PickledDict>(Peek(), "BUILD");
                    break;
                default:
                    throw Error($"opcode 0x{op:x2}" + (op is >= 0x20 and < 0x7f ? $" '{(char)op}'" : string.Empty), "an opcode of a pickled state dict", "an opcode outside that set");
            }
        }
    }

    private object Global(string module, string name)
    {
        string full = $"{module}.{name}";
        if (full is OrderedDict or RebuildTensor or RebuildParameter || StorageTypes.ContainsKey(full))
        {
            return new PickledGlobal(full);
        }

        throw Error($"GLOBAL {full}", $"one of {OrderedDict}, {RebuildTensor}, {RebuildParameter} or a torch.*Storage type", "a global outside that set");
    }

    private TorchStorage PersistentStorage(object? pid)
    {
        // ('storage', storage_type, key, location, numel)
        if (pid is PickledTuple { Items: ["storage", PickledGlobal type, string key, string, long numel] } && StorageTypes.TryGetValue(type.Name, out var dtype) && numel >= 0)
        {
            return storage(key, dtype, numel);
        }

        throw Error("BINPERSID", "('storage', torch.*Storage, key, location, numel)", Describe(pid));
    }

    private object Reduce(object? callable, object?[] args)
    {
        string name = callable is PickledGlobal g ? g.Name : Describe(callable);
        switch (name)
        {
            case OrderedDict when args.Length == 0:
                return new PickledDict();
            case RebuildTensor when args is [TorchStorage s, long offset, PickledTuple size, PickledTuple stride, bool, _, ..] && args.Length <= 7:
                return Tensor(s, offset, Ints(size, "size"), Ints(stride, "stride"));
            case RebuildParameter when args is [TorchTensor t, bool, _]:
                return t;
            default:
                throw Error($"REDUCE {name}", $"{OrderedDict}(), {RebuildTensor}(storage, offset, size, stride, …) or {RebuildParameter}(tensor, …)", $"{args.Length} arguments ({string.Join(", ", args.Select(Describe))})");
        }
    }

    private TorchTensor Tensor(TorchStorage s, long offset, long[] shape, long[] stride)
    {
        if (shape.Length != stride.Length || shape.Any(d => d < 0) || offset < 0)
        {
            throw Error($"REDUCE {RebuildTensor}", "non-negative sizes and offset, one stride per dimension", $"size [{string.Join(", ", shape)}], stride [{string.Join(", ", stride)}], offset {offset}");
        }

        long count = 1, expected = 1;
        bool contiguous = true;
        try
        {
            for (int i = shape.Length - 1; i >= 0; i--)
            {
                contiguous &= shape[i] == 1 || stride[i] == expected;
                expected = checked(expected * shape[i]);
            }

            count = expected;
            _ = checked(offset + count);
        }
        catch (OverflowException)
        {
            throw Error($"REDUCE {RebuildTensor}", "sizes whose product fits 64 bits", $"[{string.Join(", ", shape)}]");
        }

        if (!contiguous)
        {
            throw Error($"REDUCE {RebuildTensor}", "a contiguous row-major tensor", $"stride [{string.Join(", ", stride)}] for size [{string.Join(", ", shape)}]");
        }

        if (offset + count > s.Numel)
        {
            throw Error($"REDUCE {RebuildTensor}", $"elements [{offset}, {offset + count}) inside storage '{s.Key}' of {s.Numel}", "a view past its end");
        }

        return new TorchTensor(s, offset, shape, stride);
    }

    private long[] Ints(PickledTuple tuple, string what) => tuple.Items.Select(v => v is long n ? n : throw Error($"REDUCE {RebuildTensor}", $"integer {what}", Describe(v))).ToArray();

    private long Long1(int n)
    {
        if (n > 8)
        {
            throw Error("LONG1", "at most 8 bytes", $"{n}");
        }

        var b = Take(n);
        long value = 0;
        for (int i = n - 1; i >= 0; i--)
        {
            value = (value << 8) | b[i];
        }

        // Sign-extend from the top byte written.
        return n is > 0 and < 8 && (b[n - 1] & 0x80) != 0 ? value - (1L << (8 * n)) : value;
    }

    private object? Get(long key) => memo.TryGetValue(key, out var v) ? v : throw Error("BINGET", "a memo key put earlier", $"{key}");

    private void Push(object? value)
    {
        if (stack.Count >= MaxDepth)
        {
            throw Error("(stack)", $"at most {MaxDepth} values", "more");
        }

        stack.Add(value);
    }

    private object? Pop()
    {
        if (stack.Count == 0 || (marks.Count > 0 && stack.Count == marks.Peek()))
        {
            throw Error("(stack)", "a value to pop", "an empty stack");
        }

        var value = stack[^1];
        stack.RemoveAt(stack.Count - 1);
        return value;
    }

    private object? Peek() => stack.Count > 0 ? stack[^1] : throw Error("(stack)", "a value", "an empty stack");

    private object?[] PopMark()
    {
        if (marks.Count == 0)
        {
            throw Error("(mark)", "an open MARK", "none");
        }

        int start = marks.Pop();
        var items = stack.GetRange(start, stack.Count - start).ToArray();
        stack.RemoveRange(start, stack.Count - start);
        return items;
    }

    private T As<T>(object? value, string op) where T : class => value as T ?? throw Error(op, typeof(T).Name, Describe(value));

    private byte Byte() => Take(1)[0];

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count > bytes.Length - at)
        {
            throw new ModelFormatException(path, $"byte {opAt}", $"{count} more bytes", $"the pickle ending after {bytes.Length - at} (truncated)");
        }

        var span = bytes.AsSpan(at, count);
        at += count;
        return span;
    }

    private int Length(uint length) => length <= bytes.Length - at ? (int)length : throw new ModelFormatException(path, $"byte {opAt}", $"a string inside the pickle's {bytes.Length} bytes", $"{length} bytes (truncated)");

    private string Line()
    {
        int end = Array.IndexOf(bytes, (byte)'\n', at);
        if (end < 0 || end - at > 256)
        {
            throw new ModelFormatException(path, $"byte {opAt}", "a short newline-terminated name", "none (truncated)");
        }

        string text = Encoding.ASCII.GetString(bytes, at, end - at);
        at = end + 1;
        return text;
    }

    private string Text(ReadOnlySpan<byte> utf8)
    {
        try
        {
            return new UTF8Encoding(false, true).GetString(utf8);
        }
        catch (DecoderFallbackException e)
        {
            throw new ModelFormatException(path, $"byte {opAt}", "UTF-8 text", "invalid bytes", e);
        }
    }

    private ModelFormatException Error(string what, string expected, string found) => new(path, $"byte {opAt}: {what}", expected, found);

    private static string Describe(object? value) => value switch
    {
        null => "None",
        string s => $"'{s}'",
        long or bool or double => Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)!,
        PickledGlobal g => g.Name,
        PickledTuple t => $"a tuple of {t.Items.Length}",
        PickledDict => "a dict",
        PickledList => "a list",
        TorchTensor => "a tensor",
        TorchStorage => "a storage",
        _ => value.GetType().Name,
    };

    private sealed record PickledGlobal(string Name);

    private sealed record PickledTuple(object?[] Items);

    private sealed class PickledDict
    {
        public List<KeyValuePair<object?, object?>> Items { get; } = [];
    }

    private sealed class PickledList
    {
        public List<object?> Items { get; } = [];
    }
}
