namespace Headlight.Models.Loading;

/// <summary>
/// A <c>pytorch_model.bin</c> written by <c>torch.save</c> (PyTorch ≥ 1.6): a zip archive of stored
/// entries under one folder (<c>archive/</c> usually, any name in practice) holding <c>data.pkl</c>, the
/// pickled state dict, and <c>data/&lt;key&gt;</c>, each storage's raw little-endian bytes. The pickle is
/// read by <see cref="TorchPickle"/>, which executes nothing; each storage must hold exactly the elements its
/// persistent id declares, and tensors are read with positional reads straight into their float32 arrays.
/// </summary>
internal sealed class TorchArchive : ICheckpointTensors
{
    /// <summary>The largest <c>data.pkl</c> read (a BERT-large state dict pickles to tens of kilobytes).</summary>
    private const long MaxPickleLength = 64 << 20;

    private readonly FileStream stream;
    private readonly Dictionary<string, (SafeTensorInfo Info, long Begin)> tensors;

    private TorchArchive(string path, FileStream stream, Dictionary<string, (SafeTensorInfo, long)> tensors, List<string> names)
    {
        SourcePath = path;
        this.stream = stream;
        this.tensors = tensors;
        Names = names;
    }

    public string SourcePath { get; }

    public IReadOnlyList<string> Names { get; }

    /// <summary>Opens and validates an archive.</summary>
    /// <exception cref="ModelFormatException">It is not a stored zip archive with a state-dict pickle, or a tensor lies outside its storage.</exception>
    public static TorchArchive Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("PyTorch archives are read on little-endian hosts only.");
        }

        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            var entries = StoredZip.ReadDirectory(path, stream);
            var pickles = entries.Keys.Where(n => n.EndsWith("/data.pkl", StringComparison.Ordinal) && n.IndexOf('/', StringComparison.Ordinal) == n.Length - "/data.pkl".Length).ToList();
            if (pickles.Count != 1)
            {
                throw new ModelFormatException(path, "<folder>/data.pkl", "one pickled state dict in the archive", pickles.Count == 0 ? "none" : string.Join(", ", pickles));
            }

            string prefix = pickles[0][..^"data.pkl".Length];
            if (entries.TryGetValue(prefix + "byteorder", out var order))
            {
                string text = System.Text.Encoding.ASCII.GetString(StoredZip.Read(stream, order.DataOffset, (int)Math.Min(order.Length, 16)));
                if (text != "little")
                {
                    throw new ModelFormatException(path, prefix + "byteorder", "little", text);
                }
            }

            var pickle = entries[pickles[0]];
            if (pickle.Length > MaxPickleLength)
            {
                throw new ModelFormatException(path, pickle.Name, $"a pickle of at most {MaxPickleLength} bytes", $"{pickle.Length}");
            }

            string pickleName = $"{path} ({pickle.Name})";
            var storages = new Dictionary<string, TorchStorage>(StringComparer.Ordinal);
            TorchStorage Storage(string key, SafeTensorsDType dtype, long numel)
            {
                if (storages.TryGetValue(key, out var seen))
                {
                    return seen.DType == dtype && seen.Numel == numel
                        ? seen
                        : throw new ModelFormatException(pickleName, $"storage '{key}'", $"{seen.DType} x {seen.Numel} as first declared", $"{dtype} x {numel}");
                }

                string entry = prefix + "data/" + key;
                if (!entries.TryGetValue(entry, out var data))
                {
                    throw new ModelFormatException(path, entry, $"the bytes of storage '{key}'", "no such entry");
                }

                long bytes = numel > long.MaxValue / 8 ? -1 : numel * SafeTensorsFile.ElementSize(dtype);
                if (bytes != data.Length)
                {
                    throw new ModelFormatException(path, entry, $"{numel} x {dtype} = {bytes} bytes, as the pickle declares", $"{data.Length} bytes");
                }

                var s = new TorchStorage(key, dtype, numel);
                storages[key] = s;
                return s;
            }

            var stateDict = TorchPickle.ReadStateDict(pickleName, StoredZip.Read(stream, pickle.DataOffset, (int)pickle.Length), Storage);
            var tensors = new Dictionary<string, (SafeTensorInfo, long)>(StringComparer.Ordinal);
            var names = new List<string>();
            long total = 0;
            foreach (var (name, t) in stateDict)
            {
                int size = SafeTensorsFile.ElementSize(t.Storage.DType);
                long count = t.Shape.Aggregate(1L, (a, b) => a * b);
                long begin = entries[prefix + "data/" + t.Storage.Key].DataOffset + (t.Offset * size);
                if (!tensors.TryAdd(name, (new SafeTensorInfo(name, t.Storage.DType, t.Shape, count, begin, count * size), begin)))
                {
                    throw new ModelFormatException(pickleName, name, "unique tensor names", "the name twice");
                }

                names.Add(name);
                total += count * size;
            }

            // Views may share a storage (a tied head and wte), but a pickle could point many views at one
            // large storage: what the tensors declare is held to twice what the archive holds.
            if (total > 2 * stream.Length)
            {
                throw new ModelFormatException(pickleName, "(state dict)", $"tensors totalling at most twice the archive's {stream.Length} bytes", $"{total} bytes of views");
            }

            return new TorchArchive(path, stream, tensors, names);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    public SafeTensorInfo Info(string name) => Entry(name).Info;

    public float[] ReadFloat32(string name)
    {
        var (info, begin) = Entry(name);
        return TensorBytes.ReadFloat32(stream.SafeFileHandle, SourcePath, info, begin);
    }

    public void Dispose() => stream.Dispose();

    private (SafeTensorInfo Info, long Begin) Entry(string name) =>
        tensors.TryGetValue(name, out var e) ? e : throw new ArgumentException($"{SourcePath}: no tensor named '{name}'.", nameof(name));
}
