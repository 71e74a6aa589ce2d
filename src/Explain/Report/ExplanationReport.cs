using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain.Report;

/// <summary>Every head's attention probabilities on one text: <c>[layer, head, query, key]</c>.</summary>
internal sealed class AttentionPatterns
{
    /// <summary>The longest input whose patterns a report embeds (layers × heads × tokens² numbers go into the page).</summary>
    public const int MaxTokens = 256;

    public AttentionPatterns(IReadOnlyList<string> tokens, int layers, int heads, float[] probabilities)
    {
        int t = tokens.Count;
        if (probabilities.Length != (long)layers * heads * t * t)
        {
            throw new ArgumentException($"Attention patterns: {probabilities.Length} probabilities for {layers} layers x {heads} heads x {t}^2 tokens.", nameof(probabilities));
        }

        Tokens = tokens;
        Layers = layers;
        Heads = heads;
        Probabilities = probabilities;
    }

    public IReadOnlyList<string> Tokens { get; }

    public int Layers { get; }

    public int Heads { get; }

    /// <summary>[layer, head, query, key], row-major.</summary>
    public float[] Probabilities { get; }

    /// <summary>Runs <paramref name="model"/> forward on row <paramref name="row"/> of <paramref name="batch"/> and captures every layer's attention.</summary>
    public static AttentionPatterns Capture(Model model, TokenBatch batch, int row = 0)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batch);
        var text = batch.Texts[row];
        var single = batch.BatchSize == 1 ? batch : model.FromIds([text.Ids]);
        int layers = model.Config.Layers;
        int heads = model.Config.Heads;
        int seq = single.SequenceLength;
        int t = text.Count;
        var capture = Enumerable.Range(0, layers).Select(ActivationNames.AttentionProbs).ToArray();
        var result = model.Forward(single, capture);
        var probabilities = new float[layers * heads * t * t];
        for (int l = 0; l < layers; l++)
        {
            // probs [1, heads, seq, seq] -> [heads, t, t] (padding, if any, cut off)
            var p = result.Activations[ActivationNames.AttentionProbs(l)].Data;
            for (int h = 0; h < heads; h++)
            {
                for (int q = 0; q < t; q++)
                {
                    p.AsSpan(((h * seq) + q) * seq, t).CopyTo(probabilities.AsSpan((((l * heads) + h) * t + q) * t, t));
                }
            }
        }

        return new AttentionPatterns(text.Tokens, layers, heads, probabilities);
    }
}

/// <summary>
/// What an explanation report shows: the results of several methods on the same inputs and target, and optionally
/// the attention patterns of the first input and further HTML sections (the head census).
/// </summary>
internal sealed class ExplanationReport
{
    public ExplanationReport(string model, string device, string target, IReadOnlyList<AttributionResult> results, AttentionPatterns? attention = null, IReadOnlyList<string>? sections = null)
    {
        ArgumentNullException.ThrowIfNull(results);
        if (results.Count == 0)
        {
            throw new ArgumentException("A report needs at least one result.", nameof(results));
        }

        Model = model;
        Device = device;
        Target = target;
        Results = results;
        Attention = attention;
        Sections = sections ?? [];
    }

    public string Model { get; }

    public string Device { get; }

    public string Target { get; }

    /// <summary>One result per method; all on the same rows.</summary>
    public IReadOnlyList<AttributionResult> Results { get; }

    public AttentionPatterns? Attention { get; }

    /// <summary>Extra self-contained HTML sections appended to the page.</summary>
    public IReadOnlyList<string> Sections { get; }

    /// <summary>Number of input rows.</summary>
    public int Rows => Results[0].Rows.Count;
}
