namespace Headlight.Explain.Census;

/// <summary>How a census is run.</summary>
public sealed record CensusOptions
{
    /// <summary>The texts (and repeated-sequence settings); default <see cref="CensusCorpus.BuiltIn"/>.</summary>
    public CensusCorpus? Corpus { get; init; }

    /// <summary>The most control seeds <see cref="ControlSeeds"/> may hold.</summary>
    public const int MaxControlSeeds = 100;

    /// <summary>The largest <see cref="AblationTexts"/>.</summary>
    public const int MaxAblationTexts = 1_000_000;

    /// <summary>The largest <see cref="BatchTokens"/> (2^24).</summary>
    public const int MaxBatchTokens = 1 << 24;

    /// <summary>
    /// Seeds of the random-weight controls (one control model per seed, distinct, at most <see cref="MaxControlSeeds"/>);
    /// default 1, 2, 3. Empty: no controls.
    /// </summary>
    public IReadOnlyList<int> ControlSeeds { get; init; } = [1, 2, 3];

    /// <summary>Compute head importance (gate gradients) and ablation drops for the model itself; default true.</summary>
    public bool Importance { get; init; } = true;

    /// <summary>
    /// Texts the ablation runs over (evenly spaced through the corpus; every head is ablated on each);
    /// default 32; range [0, <see cref="MaxAblationTexts"/>]. The gate gradients always use every text.
    /// </summary>
    public int AblationTexts { get; init; } = 32;

    /// <summary>Part-of-speech-tagged sentences for the syntactic roles; null (default): those roles are not scored.</summary>
    public TaggedCorpus? Tagged { get; init; }

    /// <summary>Padded tokens per batch (rows of similar length are batched together); default 4096; range [1, <see cref="MaxBatchTokens"/>].</summary>
    public int BatchTokens { get; init; } = 4096;

    /// <summary>Throws for values out of range.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A count is out of range.</exception>
    public void Validate()
    {
        const string method = "census";
        OptionRange.Check(method, nameof(AblationTexts), AblationTexts, 0, MaxAblationTexts);
        OptionRange.Check(method, nameof(BatchTokens), BatchTokens, 1, MaxBatchTokens);
        ArgumentNullException.ThrowIfNull(ControlSeeds, nameof(ControlSeeds));
        OptionRange.Check(method, nameof(ControlSeeds), ControlSeeds.Count, 0, MaxControlSeeds);
        if (ControlSeeds.Distinct().Count() != ControlSeeds.Count)
        {
            throw new ArgumentOutOfRangeException(nameof(ControlSeeds), string.Join(", ", ControlSeeds), "Control seeds must be distinct.");
        }
    }
}

/// <summary>Progress of a census: the stage, and how many of its steps are done.</summary>
/// <param name="Stage">What runs: <c>capture</c>, <c>importance</c>, <c>ablation</c>, <c>control seed N</c>.</param>
/// <param name="Done">Steps done in the stage.</param>
/// <param name="Total">Steps in the stage.</param>
public sealed record CensusProgress(string Stage, int Done, int Total);

/// <summary>The share of a model's heads that have each role, and that have any.</summary>
public sealed record RoleShares
{
    /// <summary>Heads with at least one role, over all heads.</summary>
    public required double Interpretable { get; init; }

    /// <summary>Heads with at least one role other than the special-token roles (<see cref="CensusThresholds.SpecialTokenRoles"/>).</summary>
    public required double InterpretableExceptSpecialTokens { get; init; }

    /// <summary>Share of heads per role (a head with several roles counts for each).</summary>
    public required IReadOnlyDictionary<HeadRole, double> PerRole { get; init; }

    /// <summary>The shares of a set of heads.</summary>
    public static RoleShares Of(IReadOnlyCollection<HeadScores> heads)
    {
        ArgumentNullException.ThrowIfNull(heads);
        double n = Math.Max(heads.Count, 1);
        return new RoleShares
        {
            Interpretable = heads.Count(h => h.Roles != HeadRole.None) / n,
            InterpretableExceptSpecialTokens = heads.Count(h => (h.Roles & ~CensusThresholds.SpecialTokenRoles) != HeadRole.None) / n,
            PerRole = CensusThresholds.Roles.ToDictionary(r => r, r => heads.Count(h => (h.Roles & r) != 0) / n),
        };
    }
}

/// <summary>The census of one random-weight control model.</summary>
/// <param name="Seed">The seed its weights were drawn with.</param>
/// <param name="Heads">Its heads' scores and roles (no importance), layer by layer.</param>
/// <param name="Shares">Its role shares.</param>
public sealed record ControlCensus(int Seed, IReadOnlyList<HeadScores> Heads, RoleShares Shares);

/// <summary>What the corpus amounted to for one model.</summary>
/// <param name="Name"><c>built-in</c> or the corpus file.</param>
/// <param name="Sha256">Hash of the corpus texts.</param>
/// <param name="TextSource"><c>corpus texts</c>, or <c>random tokens</c> for a model without a tokenizer.</param>
/// <param name="Texts">Texts (rows) measured.</param>
/// <param name="TextTokens">Their tokens, special tokens included.</param>
/// <param name="RepeatSequences">Random sequences repeated twice.</param>
/// <param name="RepeatLength">Tokens per copy.</param>
/// <param name="RepeatTokens">Their tokens, special tokens included.</param>
/// <param name="Seed">The seed of the random sequences.</param>
/// <param name="AblationTexts">Texts the ablation ran over (0 without importance).</param>
public sealed record CorpusSummary(string Name, string Sha256, string TextSource, int Texts, int TextTokens, int RepeatSequences, int RepeatLength, int RepeatTokens, int Seed, int AblationTexts);

/// <summary>The tagged text the syntactic roles were scored on.</summary>
/// <param name="Name">The folder.</param>
/// <param name="Files">The files used, in order.</param>
/// <param name="Sentences">Sentences measured (those that fit the model and give a pair).</param>
/// <param name="Tokens">Their tokens, special tokens included.</param>
/// <param name="DetNoun">det_noun pairs.</param>
/// <param name="AdjNoun">adj_noun pairs.</param>
/// <param name="PrepObject">prep_object pairs.</param>
/// <param name="VerbSubject">verb_subject pairs.</param>
public sealed record TaggedSummary(string Name, IReadOnlyList<string> Files, int Sentences, int Tokens, int DetNoun, int AdjNoun, int PrepObject, int VerbSubject);

/// <summary>A head census of one model: every head's scores and roles, the chance level, the controls.</summary>
public sealed record CensusResult
{
    /// <summary>The model's name (catalogue name or path).</summary>
    public required string Model { get; init; }

    /// <summary><c>bert-encoder</c> or <c>gpt2-decoder</c>.</summary>
    public required string Family { get; init; }

    /// <summary>Number of weights, embeddings included.</summary>
    public required long Parameters { get; init; }

    /// <summary>Blocks.</summary>
    public required int Layers { get; init; }

    /// <summary>Heads per block.</summary>
    public required int HeadsPerLayer { get; init; }

    /// <summary>The device it ran on.</summary>
    public required string Device { get; init; }

    /// <summary>The corpus as used.</summary>
    public required CorpusSummary Corpus { get; init; }

    /// <summary>The tagged text of the syntactic roles; null when they were not scored.</summary>
    public TaggedSummary? Tagged { get; init; }

    /// <summary>The target importance and ablation measure, in words; null without importance.</summary>
    public string? Target { get; init; }

    /// <summary>Mean target value over the ablation texts with no head ablated; null without importance.</summary>
    public double? TargetBaseline { get; init; }

    /// <summary>Every head, layer by layer (index = layer · heads + head).</summary>
    public required IReadOnlyList<HeadScores> Heads { get; init; }

    /// <summary>The scores of uniform attention over the same corpus: the chance level of each metric.</summary>
    public required HeadScores Chance { get; init; }

    /// <summary>The model's role shares.</summary>
    public required RoleShares Shares { get; init; }

    /// <summary>The random-weight controls, one per seed.</summary>
    public required IReadOnlyList<ControlCensus> Controls { get; init; }

    /// <summary>Wall-clock time of the whole census (the one number that differs between identical runs).</summary>
    public required TimeSpan Elapsed { get; init; }

    /// <summary>The head at <paramref name="layer"/>, <paramref name="head"/>.</summary>
    public HeadScores this[int layer, int head]
    {
        get
        {
            ArgumentOutOfRangeException.ThrowIfNegative(layer);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(layer, Layers);
            ArgumentOutOfRangeException.ThrowIfNegative(head);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(head, HeadsPerLayer);
            return Heads[(layer * HeadsPerLayer) + head];
        }
    }

    /// <summary>Mean over the controls of their interpretable share; null without controls.</summary>
    public double? ControlInterpretableMean => Controls.Count == 0 ? null : Controls.Average(c => c.Shares.Interpretable);

    /// <summary>Mean over the controls of a role's share; null without controls.</summary>
    public double? ControlRoleMean(HeadRole role) => Controls.Count == 0 ? null : Controls.Average(c => c.Shares.PerRole[role]);
}
