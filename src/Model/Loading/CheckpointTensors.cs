using System.Text.Json;

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
                "model.safetensors" => new SafeTensorsTensors(SafeTensorsFile.Open(path)),
                "pytorch_model.bin" => TorchArchive.Open(path),
                _ => ShardedTensors.Open(path, candidate.StartsWith("model.", StringComparison.Ordinal) ? p => new SafeTensorsTensors(SafeTensorsFile.Open(p)) : TorchArchive.Open),
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

/// <summary>One safetensors file as <see cref="ICheckpointTensors"/>.</summary>
internal sealed class SafeTensorsTensors(SafeTensorsFile file) : ICheckpointTensors
{
    public string SourcePath => file.FilePath;

    public IReadOnlyList<string> Names => file.Names;

    public SafeTensorInfo Info(string name) => file.Get(name);

    public float[] ReadFloat32(string name) => file.ReadFloat32(name);

    public void Dispose() => file.Dispose();
}

/// <summary>
/// A sharded set: an index's <c>weight_map</c> names, for every tensor, the one shard that holds it. Every
/// shard the index names must exist and hold exactly the tensors the index gives it: a tensor the index
/// lists that its shard lacks, a tensor in a shard that the index does not give to that shard (so also a
/// tensor in two shards) and a shard name that is not a plain file name are errors naming the index and
/// the tensor. Files in the folder the index does not name are not opened. <c>metadata.total_size</c> is
/// not checked (writers compute it inconsistently). Every shard is validated when the set is opened;
/// afterwards one shard at a time is memory-mapped (the one last read from), so reading the tensors in
/// <see cref="Names"/> order keeps at most one shard's pages mapped beside the arrays already read.
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
