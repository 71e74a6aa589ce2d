using System.Globalization;

namespace Headlight.Explain.Census;

/// <summary>
/// What an attention head does, as far as label-free attention statistics can tell. A head can have
/// several roles; it is called interpretable when it has at least one. Each role passes when its score
/// reaches the threshold in <see cref="CensusThresholds"/>.
/// </summary>
[Flags]
public enum HeadRole
{
    /// <summary>No role passes.</summary>
    None = 0,

    /// <summary>P: at least half the attention goes to the previous token.</summary>
    Previous = 1,

    /// <summary>N: at least half the attention goes to the next token (encoders only; a causal head cannot see it).</summary>
    Next = 2,

    /// <summary>F: the strongest key sits at one fixed offset from the query (self, ±1, ±2, ...) for at least 90% of queries.</summary>
    Positional = 4,

    /// <summary>C: at least half the attention goes to the first token ([CLS] for BERT, the prepended &lt;|endoftext|&gt; for GPT-2).</summary>
    First = 8,

    /// <summary>S: at least half the attention goes to separator tokens ([SEP]; control tokens after the first position).</summary>
    Separator = 16,

    /// <summary>.: at least half the attention goes to punctuation tokens.</summary>
    Punctuation = 32,

    /// <summary>D: on a random sequence repeated twice, at least half the attention goes to the other copy of the same token.</summary>
    Duplicate = 64,

    /// <summary>I: on a random sequence repeated twice, at least half the attention goes to the token after the earlier copy.</summary>
    Induction = 128,

    /// <summary>T: on tagged text, at least half of a noun's attention goes to its determiner (needs tagged text).</summary>
    DetNoun = 256,

    /// <summary>A: on tagged text, at least half of a noun's attention goes to an adjective before it.</summary>
    AdjNoun = 512,

    /// <summary>O: on tagged text, at least half of a preposition's object's attention goes to the preposition.</summary>
    PrepObject = 1024,

    /// <summary>V: on tagged text, at least half of a finite verb's attention goes to its subject.</summary>
    VerbSubject = 2048,
}

/// <summary>
/// The thresholds that assign roles, stated in one place (printed with every census and written to its JSON).
/// The syntactic roles use the same mass threshold on the
/// mean attention from each pair's query word (its first token) to any token of its key word, the chance
/// level being uniform attention over the visible keys. Attention-mass scores are "mul" scores, Σ(A⊙pattern)/ΣA averaged over queries, so 0.5 means "at least
/// half of the head's attention follows the pattern" — the criterion Clark et al. (2019) use for BERT's
/// previous/next-token heads. The fixed-offset rule is the argmax criterion (≥ 90% of queries).
/// </summary>
public static class CensusThresholds
{
    /// <summary>Attention-mass score a role needs: previous, next, first, separator, punctuation, duplicate, induction and the four syntactic roles.</summary>
    public const double Mass = 0.5;

    /// <summary>Share of queries whose strongest key is at the same offset, for the fixed-offset (positional) role.</summary>
    public const double OffsetArgmax = 0.9;

    /// <summary>Offsets from −this to +this are tried for the fixed-offset role.</summary>
    public const int MaxOffset = 8;

    /// <summary>The roles about special tokens ([CLS]/BOS, [SEP], punctuation): often "no-op" attention (Clark et al. 2019), so shares are also given without them.</summary>
    public const HeadRole SpecialTokenRoles = HeadRole.First | HeadRole.Separator | HeadRole.Punctuation;

    /// <summary>
    /// The roles scored on part-of-speech-tagged text (pairs from <c>SyntacticPairs</c>): their scores are null
    /// and they never pass when the census had no tagged text.
    /// </summary>
    public const HeadRole SyntacticRoles = HeadRole.DetNoun | HeadRole.AdjNoun | HeadRole.PrepObject | HeadRole.VerbSubject;

    /// <summary>Every role, in the order they are listed.</summary>
    public static IReadOnlyList<HeadRole> Roles { get; } =
    [
        HeadRole.Previous, HeadRole.Next, HeadRole.Positional, HeadRole.First, HeadRole.Separator,
        HeadRole.Punctuation, HeadRole.Duplicate, HeadRole.Induction,
        HeadRole.DetNoun, HeadRole.AdjNoun, HeadRole.PrepObject, HeadRole.VerbSubject,
    ];

    /// <summary>The one-character symbol of a role in the terminal grid.</summary>
    public static char Letter(HeadRole role) => role switch
    {
        HeadRole.Previous => 'P',
        HeadRole.Next => 'N',
        HeadRole.Positional => 'F',
        HeadRole.First => 'C',
        HeadRole.Separator => 'S',
        HeadRole.Punctuation => '.',
        HeadRole.Duplicate => 'D',
        HeadRole.Induction => 'I',
        HeadRole.DetNoun => 'T',
        HeadRole.AdjNoun => 'A',
        HeadRole.PrepObject => 'O',
        HeadRole.VerbSubject => 'V',
        _ => '-',
    };

    /// <summary>The role's name as it appears in JSON (<c>previous</c>, <c>positional</c>, ...).</summary>
    public static string Name(HeadRole role) => role switch
    {
        HeadRole.Previous => "previous",
        HeadRole.Next => "next",
        HeadRole.Positional => "positional",
        HeadRole.First => "first",
        HeadRole.Separator => "separator",
        HeadRole.Punctuation => "punctuation",
        HeadRole.Duplicate => "duplicate",
        HeadRole.Induction => "induction",
        HeadRole.DetNoun => "det_noun",
        HeadRole.AdjNoun => "adj_noun",
        HeadRole.PrepObject => "prep_object",
        HeadRole.VerbSubject => "verb_subject",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, "Not a single role."),
    };

    /// <summary>One line per rule, as printed with a census.</summary>
    public static IReadOnlyList<string> Describe() =>
    [
        F($"P previous      mean attention on token i-1                        >= {Mass}"),
        F($"N next          mean attention on token i+1                        >= {Mass}"),
        F($"F positional    strongest key at one offset in [-{MaxOffset}, +{MaxOffset}] for a share of queries >= {OffsetArgmax}"),
        F($"C first         mean attention on the first token ([CLS] / BOS)    >= {Mass}"),
        F($"S separator     mean attention on [SEP] (later control tokens)     >= {Mass}"),
        F($". punctuation   mean attention on punctuation tokens               >= {Mass}"),
        F($"D duplicate     repeated random tokens: attention on the same token's other copy   >= {Mass}"),
        F($"I induction     repeated random tokens: attention on the token after the earlier copy >= {Mass}"),
        F($"T det_noun      tagged text: noun's attention on its determiner     >= {Mass}"),
        F($"A adj_noun      tagged text: noun's attention on an adjective before it >= {Mass}"),
        F($"O prep_object   tagged text: object's attention on its preposition  >= {Mass}"),
        F($"V verb_subject  tagged text: finite verb's attention on its subject >= {Mass}"),
    ];

    /// <summary>The roles a head's scores pass.</summary>
    public static HeadRole Assign(HeadScores scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        var roles = HeadRole.None;
        foreach (var role in Roles)
        {
            if (Score(scores, role) >= Threshold(role))
            {
                roles |= role;
            }
        }

        return roles;
    }

    /// <summary>False for a syntactic role the census had no tagged text for (its score is null).</summary>
    public static bool Measured(HeadScores scores, HeadRole role)
    {
        ArgumentNullException.ThrowIfNull(scores);
        return role switch
        {
            HeadRole.DetNoun => scores.DetNoun is not null,
            HeadRole.AdjNoun => scores.AdjNoun is not null,
            HeadRole.PrepObject => scores.PrepObject is not null,
            HeadRole.VerbSubject => scores.VerbSubject is not null,
            _ => true,
        };
    }

    /// <summary>The score that decides <paramref name="role"/> (0 for a syntactic role not measured).</summary>
    public static double Score(HeadScores scores, HeadRole role)
    {
        ArgumentNullException.ThrowIfNull(scores);
        return role switch
        {
            HeadRole.Previous => scores.Previous,
            HeadRole.Next => scores.Next,
            HeadRole.Positional => scores.OffsetArgmaxShare,
            HeadRole.First => scores.First,
            HeadRole.Separator => scores.Separator,
            HeadRole.Punctuation => scores.Punctuation,
            HeadRole.Duplicate => scores.Duplicate,
            HeadRole.Induction => scores.Induction,
            HeadRole.DetNoun => scores.DetNoun ?? 0,
            HeadRole.AdjNoun => scores.AdjNoun ?? 0,
            HeadRole.PrepObject => scores.PrepObject ?? 0,
            HeadRole.VerbSubject => scores.VerbSubject ?? 0,
            _ => throw new ArgumentOutOfRangeException(nameof(role), role, "Not a single role."),
        };
    }

    /// <summary>The threshold of <paramref name="role"/>.</summary>
    public static double Threshold(HeadRole role) => role == HeadRole.Positional ? OffsetArgmax : Mass;

    /// <summary>
    /// The role whose score is furthest past its threshold (relative to it), or the role closest to passing
    /// when none passes; with its score divided by its threshold (≥ 1 exactly when it passes).
    /// </summary>
    public static (HeadRole Role, double Strength) Strongest(HeadScores scores)
    {
        ArgumentNullException.ThrowIfNull(scores);
        var best = HeadRole.None;
        double strength = double.NegativeInfinity;
        foreach (var role in Roles)
        {
            double s = Score(scores, role) / Threshold(role);
            if (s > strength)
            {
                best = role;
                strength = s;
            }
        }

        return (best, strength);
    }

    private static string F(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
