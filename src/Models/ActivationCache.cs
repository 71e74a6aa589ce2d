using System.Globalization;
using System.Text.RegularExpressions;

namespace Headlight.Models;

/// <summary>
/// The names of everything a forward pass can hand back, with their shapes:
/// <list type="bullet">
/// <item><c>embed</c> [batch, seq, d] — the embedding output (after BERT's embedding LayerNorm; the sum for GPT-2)</item>
/// <item><c>layer{i}.attn.probs</c> [batch, head, query, key] — attention probabilities, from the fused kernel's logsumexp</item>
/// <item><c>layer{i}.attn.z</c> [batch, seq, head·head_dim] — each head's weighted values, before the output projection</item>
/// <item><c>layer{i}.attn.out</c> [batch, seq, d] — the attention block's output projection, before the residual add</item>
/// <item><c>layer{i}.resid_mid</c> [batch, seq, d] — the residual stream between attention and MLP</item>
/// <item><c>layer{i}.mlp.out</c> [batch, seq, d] — the MLP's output, before the residual add</item>
/// <item><c>layer{i}.resid_post</c> [batch, seq, d] — the residual stream after block i</item>
/// <item><c>final</c> [batch, seq, d] — the last hidden state (after GPT-2's final LayerNorm)</item>
/// </list>
/// </summary>
public static partial class ActivationNames
{
    /// <summary>The embedding output.</summary>
    public const string Embed = "embed";

    /// <summary>The last hidden state.</summary>
    public const string Final = "final";

    /// <summary>Attention probabilities of block <paramref name="layer"/>.</summary>
    public static string AttentionProbs(int layer) => $"layer{layer}.attn.probs";

    /// <summary>Per-head attention values of block <paramref name="layer"/>.</summary>
    public static string AttentionZ(int layer) => $"layer{layer}.attn.z";

    /// <summary>Attention output of block <paramref name="layer"/>.</summary>
    public static string AttentionOut(int layer) => $"layer{layer}.attn.out";

    /// <summary>Residual stream between attention and MLP in block <paramref name="layer"/>.</summary>
    public static string ResidMid(int layer) => $"layer{layer}.resid_mid";

    /// <summary>MLP output of block <paramref name="layer"/>.</summary>
    public static string MlpOut(int layer) => $"layer{layer}.mlp.out";

    /// <summary>Residual stream after block <paramref name="layer"/>.</summary>
    public static string ResidPost(int layer) => $"layer{layer}.resid_post";

    /// <summary>Every name a model with <paramref name="layers"/> blocks offers.</summary>
    public static IReadOnlyList<string> All(int layers)
    {
        var names = new List<string> { Embed };
        for (int i = 0; i < layers; i++)
        {
            names.AddRange([AttentionProbs(i), AttentionZ(i), AttentionOut(i), ResidMid(i), MlpOut(i), ResidPost(i)]);
        }

        names.Add(Final);
        return names;
    }

    /// <summary>Checks every requested name; throws an <see cref="ArgumentException"/> naming the unknown one and the valid patterns.</summary>
    public static HashSet<string> Validate(IEnumerable<string>? names, int layers)
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        if (names is null)
        {
            return set;
        }

        foreach (string name in names)
        {
            bool ok = name is Embed or Final;
            var m = LayerPattern().Match(name);
            if (m.Success)
            {
                int layer = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
                if (layer >= layers)
                {
                    throw new ArgumentException($"Capture '{name}': the model has {layers} layers (0 to {layers - 1}).", nameof(names));
                }

                ok = true;
            }

            if (!ok)
            {
                throw new ArgumentException(
                    $"Unknown capture point '{name}'. Valid: embed, final, layer{{i}}.attn.probs, layer{{i}}.attn.z, layer{{i}}.attn.out, layer{{i}}.resid_mid, layer{{i}}.mlp.out, layer{{i}}.resid_post.",
                    nameof(names));
            }

            set.Add(name);
        }

        return set;
    }

    [GeneratedRegex(@"^layer(\d{1,4})\.(attn\.probs|attn\.z|attn\.out|resid_mid|mlp\.out|resid_post)$", RegexOptions.CultureInvariant)]
    private static partial Regex LayerPattern();
}

/// <summary>One captured activation, copied to the host.</summary>
/// <param name="Name">Its capture name.</param>
/// <param name="Shape">Its dimensions, as documented in <see cref="ActivationNames"/>.</param>
/// <param name="Data">Row-major values.</param>
public sealed record Activation(string Name, int[] Shape, float[] Data)
{
    /// <summary>The value at a full index.</summary>
    public float this[params int[] index]
    {
        get
        {
            if (index.Length != Shape.Length)
            {
                throw new ArgumentException($"Activation '{Name}' has rank {Shape.Length}; got {index.Length} indices.", nameof(index));
            }

            long flat = 0;
            for (int i = 0; i < index.Length; i++)
            {
                if ((uint)index[i] >= (uint)Shape[i])
                {
                    throw new ArgumentOutOfRangeException(nameof(index), $"Activation '{Name}': index {index[i]} on axis {i} is outside [0, {Shape[i]}).");
                }

                flat = (flat * Shape[i]) + index[i];
            }

            return Data[flat];
        }
    }
}

/// <summary>The activations a forward pass was asked to keep, by name.</summary>
public sealed class ActivationCache
{
    private readonly Dictionary<string, Activation> activations = new(StringComparer.Ordinal);

    /// <summary>The names held.</summary>
    public IReadOnlyCollection<string> Names => activations.Keys;

    /// <summary>An activation by name; throws a <see cref="KeyNotFoundException"/> naming what was captured.</summary>
    public Activation this[string name] => activations.TryGetValue(name, out var a)
        ? a
        : throw new KeyNotFoundException($"'{name}' was not captured. Captured: {string.Join(", ", activations.Keys)}.");

    /// <summary>True when <paramref name="name"/> was captured.</summary>
    public bool Contains(string name) => activations.ContainsKey(name);

    internal void Add(Activation activation) => activations[activation.Name] = activation;
}
