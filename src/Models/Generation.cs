namespace Headlight.Models;

/// <summary>How <see cref="Model.Generate(IReadOnlyList{int}, GenerationOptions, CancellationToken)"/> picks each token.</summary>
public sealed record GenerationOptions
{
    /// <summary>The most tokens to append.</summary>
    public int MaxNewTokens { get; init; } = 20;

    /// <summary>0 (the default) picks the most likely token (greedy); above 0 samples from softmax(logits / temperature).</summary>
    public double Temperature { get; init; }

    /// <summary>When sampling, only the <c>TopK</c> most likely tokens may be drawn; 0 keeps every token.</summary>
    public int TopK { get; init; }

    /// <summary>When sampling, only the smallest set of most likely tokens whose probability reaches <c>TopP</c> may be drawn (nucleus sampling); 1 keeps every token.</summary>
    public double TopP { get; init; } = 1;

    /// <summary>Seeds the sampler: the same seed, prompt and model give the same tokens.</summary>
    public int Seed { get; init; }

    /// <summary>Stops after a token of <see cref="ModelConfig.EndOfSequenceIds"/> (which is kept in the output).</summary>
    public bool StopAtEndOfSequence { get; init; } = true;

    /// <summary>
    /// True (the default) keeps each block's keys and values so a step runs the blocks on the new token alone; false reruns
    /// the whole prefix every step (the reference the cache is tested against).
    /// </summary>
    public bool UseKeyValueCache { get; init; } = true;

    /// <summary>Throws an <see cref="ArgumentOutOfRangeException"/> naming the first option out of range.</summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegative(MaxNewTokens, nameof(MaxNewTokens));
        if (!(double.IsFinite(Temperature) && Temperature >= 0))
        {
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "Temperature must be 0 (greedy) or positive and finite.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(TopK, nameof(TopK));
        if (!(TopP > 0 && TopP <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "TopP must be in (0, 1].");
        }
    }
}

/// <summary>The tokens a decoder generated.</summary>
/// <param name="Tokens">The new ids, in order (an end-of-sequence token that stopped generation included).</param>
/// <param name="Probabilities">The probability each token had under the distribution it was drawn from (after temperature, top-k and top-p).</param>
/// <param name="StoppedAtEndOfSequence">True when an end-of-sequence token ended generation before <see cref="GenerationOptions.MaxNewTokens"/>.</param>
public sealed record GenerationResult(IReadOnlyList<int> Tokens, IReadOnlyList<double> Probabilities, bool StoppedAtEndOfSequence);

/// <summary>Picks the next token from one row of logits: argmax, or a seeded draw after temperature, top-k and top-p.</summary>
internal sealed class TokenSampler(GenerationOptions options)
{
    private readonly Random random = new(options.Seed);

    public (int Id, double Probability) Next(ReadOnlySpan<float> logits)
    {
        if (options.Temperature == 0)
        {
            int best = 0;
            for (int i = 1; i < logits.Length; i++)
            {
                if (logits[i] > logits[best])
                {
                    best = i;
                }
            }

            return (best, 1);
        }

        // Candidates by descending logit (ties by id, so the order never depends on the sort).
        var order = new int[logits.Length];
        for (int i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        var keys = logits.ToArray();
        Array.Sort(order, (x, y) => keys[y].CompareTo(keys[x]) is var c && c != 0 ? c : x.CompareTo(y));
        int keep = options.TopK > 0 ? Math.Min(options.TopK, order.Length) : order.Length;
        double max = keys[order[0]];
        var weights = new double[keep];
        double total = 0;
        for (int i = 0; i < keep; i++)
        {
            weights[i] = Math.Exp((keys[order[i]] - max) / options.Temperature);
            total += weights[i];
        }

        if (options.TopP < 1)
        {
            double cumulative = 0;
            for (int i = 0; i < keep; i++)
            {
                cumulative += weights[i] / total;
                if (cumulative >= options.TopP)
                {
                    keep = i + 1;
                    break;
                }
            }

            total = 0;
            for (int i = 0; i < keep; i++)
            {
                total += weights[i];
            }
        }

        double draw = random.NextDouble() * total;
        for (int i = 0; i < keep; i++)
        {
            draw -= weights[i];
            if (draw < 0 || i == keep - 1)
            {
                return (order[i], weights[i] / total);
            }
        }

        throw new InvalidOperationException("unreachable: the loop returns on its last candidate");
    }
}
