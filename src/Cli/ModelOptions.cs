using System.Globalization;
using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Cli;

/// <summary>The options every model command shares: <c>--model</c>, <c>--device</c>, <c>--ids</c>, <c>--truncate</c>.</summary>
internal sealed class ModelOptions
{
    public const string DefaultModel = "minilm";

    private ModelOptions(string model, string? device, IReadOnlyList<IReadOnlyList<int>>? ids, bool truncate)
    {
        ModelName = model;
        DeviceName = device;
        Ids = ids;
        Truncate = truncate;
    }

    public string ModelName { get; }

    public string? DeviceName { get; }

    /// <summary>Token ids given with <c>--ids 1,2,3</c> (rows separated by ';'), or null for text input.</summary>
    public IReadOnlyList<IReadOnlyList<int>>? Ids { get; }

    public bool Truncate { get; }

    public static ModelOptions Read(CliArgs cli)
    {
        string model = cli.Option("model", DefaultModel);
        string? device = cli.Option("device");
        string? idsText = cli.Option("ids");
        bool truncate = cli.Flag("truncate");
        return new ModelOptions(model, device, idsText is null ? null : ParseIds(idsText), truncate);
    }

    /// <summary>Opens the device and loads the model on it; the model owns the device.</summary>
    public Model Load()
    {
        var device = Device.Open(DeviceName);
        try
        {
            return Model.Load(ModelName, device);
        }
        catch
        {
            device.Dispose();
            throw;
        }
    }

    /// <summary>The batch from the texts or the ids.</summary>
    public TokenBatch Batch(Model model, IReadOnlyList<string> texts)
    {
        if (Ids is not null)
        {
            if (texts.Count > 0)
            {
                throw new UsageException("Give either text or --ids, not both.");
            }

            return model.FromIds(Ids);
        }

        if (texts.Count == 0)
        {
            throw new UsageException("No input: give text arguments or --ids 1,2,3.");
        }

        return model.Tokenize(texts, Truncate ? TruncationMode.LongestFirst : TruncationMode.None);
    }

    private static List<IReadOnlyList<int>> ParseIds(string text)
    {
        var rows = new List<IReadOnlyList<int>>();
        foreach (string row in text.Split(';', StringSplitOptions.TrimEntries))
        {
            var ids = new List<int>();
            foreach (string part in row.Split(',', StringSplitOptions.TrimEntries))
            {
                if (part.Length == 0 && row.Length > 0)
                {
                    throw new UsageException($"--ids: '{row}' has an empty id between commas.");
                }

                if (part.Length == 0)
                {
                    continue;
                }

                if (!int.TryParse(part, NumberStyles.Integer, CultureInfo.InvariantCulture, out int id))
                {
                    throw new UsageException($"--ids: '{part}' is not an integer token id.");
                }

                ids.Add(id);
            }

            if (ids.Count == 0)
            {
                throw new UsageException("--ids: a row has no ids.");
            }

            rows.Add(ids);
        }

        return rows;
    }
}
