using System.Globalization;
using System.Text.Json;
using Headlight.Models;
using Headlight.Models.Loading;

namespace Headlight.Cli;

/// <summary>
/// <c>headlight embed TEXT...</c>: sentence embeddings, and with two or more texts their cosine similarities. A
/// sentence-transformers folder pools as it says; <c>--pooling MODE</c> (and <c>--normalize</c>) chooses for any encoder.
/// </summary>
internal static class EmbedCommand
{
    public static int Run(CliArgs cli, TextWriter output)
    {
        var options = ModelOptions.Read(cli);
        bool json = cli.Flag("json");
        string? poolingText = cli.Option("pooling");
        bool normalizeFlag = cli.Flag("normalize");
        cli.RejectUnknown();
        PoolingMode? chosen = poolingText is null ? null : ParsePooling(poolingText);
        using var model = options.Load();
        if (model.Config.Pooling is null && chosen is null)
        {
            throw new UsageException($"Model '{model.Name}' defines no sentence embedding (no sentence-transformers modules.json): choose one with --pooling mean|cls|max|lasttoken|mean_sqrt_len.");
        }

        var batch = options.Batch(model, cli.Positional);
        var result = model.Forward(batch);
        PoolingMode pooling = chosen ?? model.Config.Pooling!.Value;
        bool normalize = normalizeFlag || (chosen is null && model.Config.NormalizeEmbedding);
        var embeddings = chosen is null && !normalizeFlag ? result.SentenceEmbeddings! : result.Pool(pooling, normalize);
        var similarity = new float[embeddings.Length][];
        for (int i = 0; i < embeddings.Length; i++)
        {
            similarity[i] = embeddings.Select(e => Cosine(embeddings[i], e)).ToArray();
        }

        var labels = batch.Texts.Select(t => t.Text).ToArray();
        if (json)
        {
            output.WriteLine(JsonSerializer.Serialize(
                new { Model = model.Name, Device = model.Device.Name, Texts = labels, Embeddings = embeddings, Similarity = embeddings.Length > 1 ? similarity : null },
                JsonOutput.Options));
            return 0;
        }

        output.WriteLine($"{model.Name} on {model.Device.Name}: {embeddings[0].Length}-dimensional embeddings ({pooling} pooling{(normalize ? ", L2-normalised" : string.Empty)})");
        for (int i = 0; i < embeddings.Length; i++)
        {
            var head = string.Join(", ", embeddings[i].Take(6).Select(v => v.ToString("F4", CultureInfo.InvariantCulture)));
            output.WriteLine($"[{i}] {Shorten(labels[i])}");
            output.WriteLine($"    [{head}, …]");
        }

        if (embeddings.Length > 1)
        {
            output.WriteLine();
            output.WriteLine("cosine similarity");
            output.Write("      ");
            output.WriteLine(string.Concat(Enumerable.Range(0, embeddings.Length).Select(j => $"{"[" + j + "]",8}")));
            for (int i = 0; i < embeddings.Length; i++)
            {
                output.Write($"{"[" + i + "]",-6}");
                output.WriteLine(string.Concat(similarity[i].Select(v => v.ToString("F4", CultureInfo.InvariantCulture).PadLeft(8))));
            }
        }

        return 0;
    }

    private static PoolingMode ParsePooling(string text) => text.ToLowerInvariant() switch
    {
        "mean" => PoolingMode.Mean,
        "cls" => PoolingMode.Cls,
        "max" => PoolingMode.Max,
        "lasttoken" or "last" => PoolingMode.LastToken,
        "mean_sqrt_len" => PoolingMode.MeanSqrtLength,
        "weightedmean" => throw new UsageException("--pooling weightedmean is not supported yet: use mean, cls, max, lasttoken or mean_sqrt_len."),
        _ => throw new UsageException($"--pooling '{text}': use mean, cls, max, lasttoken or mean_sqrt_len."),
    };

    private static float Cosine(float[] a, float[] b) => System.Numerics.Tensors.TensorPrimitives.CosineSimilarity(a, b);

    private static string Shorten(string text) => text.Length <= 70 ? text : text[..67] + "...";
}
