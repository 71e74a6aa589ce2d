using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace Headlight.Models.Loading;

/// <summary>
/// The tensors of a checkpoint's weight files, whatever their format: one safetensors file, a sharded
/// set behind an index, or a PyTorch <c>.bin</c> archive. Tensors are read one at a time as float32.
/// </summary>
internal interface ICheckpointTensors : IDisposable
{
    /// <summary>The file errors name: the weights file, or the index of a sharded set.</summary>
    string SourcePath { get; }

    /// <summary>Tensor names, grouped by file and in the order their bytes appear.</summary>
    IReadOnlyList<string> Names { get; }

    /// <summary>A tensor's dtype and shape.</summary>
    SafeTensorInfo Info(string name);

    /// <summary>Reads a floating-point tensor as float32.</summary>
    /// <exception cref="ModelFormatException">The tensor is not floating point, or too large for one array.</exception>
    float[] ReadFloat32(string name);
}

/// <summary>Finds and opens a Hugging Face folder's weight files.</summary>
internal static class CheckpointTensors
{
    /// <summary>The files looked for, in order of preference.</summary>
    public static readonly string[] Candidates = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"];

    /// <summary>The largest index file read (real ones are tens of kilobytes).</summary>
    private const long MaxIndexLength = 64 << 20;

    /// <summary>Opens the first of <see cref="Candidates"/> that the folder holds.</summary>
    /// <exception cref="FileNotFoundException">The folder holds none of them; the message lists what was looked for.</exception>
    /// <exception cref="ModelFormatException">A weight file or index is malformed.</exception>
    public static ICheckpointTensors Open(string folder)
    {
        ArgumentNullException.ThrowIfNull(folder);
        foreach (string candidate in Candidates)
        {
            string path = Path.Combine(folder, candidate);
            if (!File.Exists(path))
            {
                continue;
            }

            return candidate switch
            {
                "model.safetensors" => SafeTensorsTensors.Open(path),
                "pytorch_model.bin" => TorchArchive.Open(path),
                _ => ShardedTensors.Open(path, candidate.StartsWith("model.", StringComparison.Ordinal) ? SafeTensorsTensors.Open : TorchArchive.Open),
            };
        }

        throw new FileNotFoundException(
            $"No weights in {folder}: looked for {string.Join(", ", Candidates)}.", Path.Combine(folder, Candidates[0]));
    }

    /// <summary>Reads a sharded set's <c>weight_map</c>: tensor name to shard file name, each a plain file name.</summary>
    internal static Dictionary<string, string> ReadWeightMap(string indexPath)
    {
        long length = new FileInfo(indexPath).Length;
        if (length > MaxIndexLength)
        {
            throw new ModelFormatException(indexPath, "(file)", $"an index of at most {MaxIndexLength} bytes", $"{length} bytes");
        }

        using var document = Json.Parse(indexPath);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(indexPath, "(root)", "a JSON object", root.ValueKind.ToString());
        }

        if (!root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(indexPath, "weight_map", "an object mapping tensor names to shard files", map.ValueKind == JsonValueKind.Undefined ? "nothing" : map.ValueKind.ToString());
        }

        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in map.EnumerateObject())
        {
            string field = $"weight_map.{entry.Name}";
            if (entry.Value.ValueKind != JsonValueKind.String)
            {
                throw new ModelFormatException(indexPath, field, "a shard file name", entry.Value.GetRawText());
            }

            string shard = entry.Value.GetString()!;
            if (!IsPlainFileName(shard))
            {
                throw new ModelFormatException(indexPath, field, "a plain file name inside the folder (no directories, no '..', not rooted)", $"\"{shard}\"");
            }

            if (!result.TryAdd(entry.Name, shard))
            {
                throw new ModelFormatException(indexPath, field, "each tensor listed once", "the name twice");
            }
        }

        if (result.Count == 0)
        {
            throw new ModelFormatException(indexPath, "weight_map", "at least one tensor", "an empty map");
        }

        return result;
    }

    private static bool IsPlainFileName(string name) =>
        name.Length > 0 && name != "." && name != ".." && name.IndexOfAny(['/', '\\', ':', '\0']) < 0 && !Path.IsPathRooted(name);
}

/// <summary>
/// One safetensors file as <see cref="ICheckpointTensors"/>. The header is validated through the memory-mapped
/// <see cref="SafeTensorsFile"/>, which is unmapped at once; tensors are then read with positional reads straight
/// into their float32 arrays, so no mapped page of the file adds to the memory the arrays take.
/// </summary>
internal sealed class SafeTensorsTensors : ICheckpointTensors
{
    private readonly SafeFileHandle handle;
    private readonly IReadOnlyDictionary<string, SafeTensorInfo> tensors;
    private readonly long dataStart;

    private SafeTensorsTensors(string path, SafeFileHandle handle, IReadOnlyDictionary<string, SafeTensorInfo> tensors, IReadOnlyList<string> names, long dataStart)
    {
        SourcePath = path;
        this.handle = handle;
        this.tensors = tensors;
        Names = names;
        this.dataStart = dataStart;
    }

    public string SourcePath { get; }

    public IReadOnlyList<string> Names { get; }

    /// <summary>Opens and validates a safetensors file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The header is malformed or does not describe the data exactly.</exception>
    public static SafeTensorsTensors Open(string path)
    {
        IReadOnlyDictionary<string, SafeTensorInfo> tensors;
        IReadOnlyList<string> names;
        using (var file = SafeTensorsFile.Open(path))
        {
            tensors = file.Tensors;
            names = file.Names;
        }

        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            Span<byte> length = stackalloc byte[8];
            TensorBytes.ReadExactly(handle, path, "header length", length, 0);
            return new SafeTensorsTensors(path, handle, tensors, names, 8 + (long)System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(length));
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public SafeTensorInfo Info(string name) =>
        tensors.TryGetValue(name, out var info) ? info : throw new ArgumentException($"{SourcePath}: no tensor named '{name}'.", nameof(name));

    public float[] ReadFloat32(string name) => TensorBytes.ReadFloat32(handle, SourcePath, Info(name), dataStart + Info(name).DataOffset);

    public void Dispose() => handle.Dispose();
}

/// <summary>Positional reads of tensor bytes into float32 arrays, converting F16, BF16 and F64 in chunks.</summary>
internal static class TensorBytes
{
    private const int Chunk = 1 << 20;

    /// <summary>Reads <paramref name="info"/>'s elements, stored from <paramref name="offset"/> in the file, as float32.</summary>
    /// <exception cref="ModelFormatException">The tensor is not floating point, too large for one array, or the file ends early.</exception>
    public static float[] ReadFloat32(SafeFileHandle handle, string path, SafeTensorInfo info, long offset)
    {
        int size = info.DType switch
        {
            SafeTensorsDType.F32 => 4,
            SafeTensorsDType.F16 or SafeTensorsDType.BF16 => 2,
            SafeTensorsDType.F64 => 8,
            _ => throw new ModelFormatException(path, $"{info.Name}.dtype", "F32, F16, BF16 or F64 to read as float32", info.DType.ToString()),
        };

        if (info.ElementCount > Array.MaxLength)
        {
            throw new ModelFormatException(path, info.Name, $"at most {Array.MaxLength} elements to read into one array", $"{info.ElementCount}");
        }

        var result = new float[info.ElementCount];
        byte[]? buffer = size == 4 ? null : System.Buffers.ArrayPool<byte>.Shared.Rent(Chunk * size);
        try
        {
            for (int done = 0; done < result.Length; done += Chunk)
            {
                int count = Math.Min(Chunk, result.Length - done);
                var target = result.AsSpan(done, count);
                long at = offset + ((long)done * size);
                if (buffer is null)
                {
                    // float32 on a little-endian host: the bytes are the array's.
                    ReadExactly(handle, path, info.Name, System.Runtime.InteropServices.MemoryMarshal.AsBytes(target), at);
                    continue;
                }

                var bytes = buffer.AsSpan(0, count * size);
                ReadExactly(handle, path, info.Name, bytes, at);
                switch (info.DType)
                {
                    case SafeTensorsDType.F16:
                        System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(bytes), target);
                        break;
                    case SafeTensorsDType.BF16:
                        // bfloat16 is the high half of a float32's bits.
                        var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(bytes);
                        for (int i = 0; i < halves.Length; i++)
                        {
                            target[i] = BitConverter.Int32BitsToSingle(halves[i] << 16);
                        }

                        break;
                    default:
                        var doubles = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(bytes);
                        for (int i = 0; i < doubles.Length; i++)
                        {
                            target[i] = (float)doubles[i];
                        }

                        break;
                }
            }
        }
        finally
        {
            if (buffer is not null)
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            }
        }

        return result;
    }

    /// <summary>Fills <paramref name="destination"/> from <paramref name="offset"/>.</summary>
    /// <exception cref="ModelFormatException">The file ends first (it changed after it was validated).</exception>
    public static void ReadExactly(SafeFileHandle handle, string path, string field, Span<byte> destination, long offset)
    {
        while (!destination.IsEmpty)
        {
            int read = RandomAccess.Read(handle, destination, offset);
            if (read <= 0)
            {
                throw new ModelFormatException(path, field, $"bytes up to {offset + destination.Length}", $"the file ending at {offset}");
            }

            destination = destination[read..];
            offset += read;
        }
    }
}

/// <summary>
/// A sharded set: an index's <c>weight_map</c> names, for every tensor, the one shard that holds it. Every
/// shard the index names must exist and hold exactly the tensors the index gives it: a tensor the index
/// lists that its shard lacks, a tensor in a shard that the index does not give to that shard (so also a
/// tensor in two shards) and a shard name that is not a plain file name are errors naming the index and
/// the tensor. Files in the folder the index does not name are not opened. <c>metadata.total_size</c> is
/// not checked (writers compute it inconsistently). Every shard is validated when the set is opened;
/// afterwards one shard at a time is open (the one last read from).
/// </summary>
internal sealed class ShardedTensors : ICheckpointTensors
{
    private readonly string[] shardPaths;
    private readonly Func<string, ICheckpointTensors> openShard;
    private readonly Dictionary<string, int> owner;
    private ICheckpointTensors? current;
    private int currentIndex = -1;

    private ShardedTensors(string indexPath, string[] shardPaths, Func<string, ICheckpointTensors> openShard, Dictionary<string, int> owner, List<string> names)
    {
        SourcePath = indexPath;
        this.shardPaths = shardPaths;
        this.openShard = openShard;
        this.owner = owner;
        Names = names;
    }

    public string SourcePath { get; }

    public IReadOnlyList<string> Names { get; }

    public static ShardedTensors Open(string indexPath, Func<string, ICheckpointTensors> openShard)
    {
        var map = CheckpointTensors.ReadWeightMap(indexPath);
        string folder = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;

        // Shards in order of first mention (writers list them in order).
        var files = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (tensor, shard) in map)
        {
            if (!seen.Add(shard))
            {
                continue;
            }

            if (!File.Exists(Path.Combine(folder, shard)))
            {
                throw new ModelFormatException(indexPath, $"weight_map.{tensor}", $"shard '{shard}' in {folder}", "no such file");
            }

            files.Add(shard);
        }

        var owner = new Dictionary<string, int>(StringComparer.Ordinal);
        var names = new List<string>();
        for (int i = 0; i < files.Count; i++)
        {
            using var shard = openShard(Path.Combine(folder, files[i]));
            foreach (string name in shard.Names)
            {
                if (!map.TryGetValue(name, out string? listed))
                {
                    throw new ModelFormatException(indexPath, $"weight_map.{name}", $"an entry for every tensor of the shards (shard '{files[i]}' holds it)", "no entry");
                }

                if (listed != files[i])
                {
                    throw new ModelFormatException(indexPath, $"weight_map.{name}", $"each tensor in one shard ('{listed}')", $"it also in '{files[i]}'");
                }

                owner[name] = i;
                names.Add(name);
            }
        }

        foreach (var (tensor, shard) in map)
        {
            if (!owner.ContainsKey(tensor))
            {
                throw new ModelFormatException(indexPath, $"weight_map.{tensor}", $"the tensor in shard '{shard}'", "a shard without it");
            }
        }

        return new ShardedTensors(indexPath, files.Select(f => Path.Combine(folder, f)).ToArray(), openShard, owner, names);
    }

    public SafeTensorInfo Info(string name) => Shard(name).Info(name);

    public float[] ReadFloat32(string name) => Shard(name).ReadFloat32(name);

    public void Dispose()
    {
        current?.Dispose();
        current = null;
        currentIndex = -1;
    }

    private ICheckpointTensors Shard(string name)
    {
        if (!owner.TryGetValue(name, out int index))
        {
            throw new ArgumentException($"{SourcePath}: no tensor named '{name}'.", nameof(name));
        }

        if (index != currentIndex || current is null)
        {
            current?.Dispose();
            current = null;
            currentIndex = -1;
            current = openShard(shardPaths[index]);
            currentIndex = index;
        }

        return current;
    }
}
