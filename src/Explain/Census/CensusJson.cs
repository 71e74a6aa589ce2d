using System.Text;
using System.Text.Json;

namespace Headlight.Explain.Census;

/// <summary>
/// Writes a census (or a comparison of several) as JSON with every number; the schema is documented in
/// the README ("Head census", JSON). Field order and number formatting are fixed, so two runs on the same
/// inputs give the same bytes except for <c>elapsed_seconds</c>.
/// </summary>
public static class CensusJson
{
    /// <summary>The schema name of a single census.</summary>
    public const string Schema = "headlight.census/1";

    /// <summary>The schema name of a comparison.</summary>
    public const string CompareSchema = "headlight.census-compare/1";

    /// <summary>One census as a JSON document.</summary>
    public static string Serialize(CensusResult result, bool indented = false)
    {
        ArgumentNullException.ThrowIfNull(result);
        return Write(w => WriteCensus(w, result, Schema), indented);
    }

    /// <summary>A comparison as a JSON document: every census and the verdict.</summary>
    public static string Serialize(CensusComparison comparison, bool indented = false)
    {
        ArgumentNullException.ThrowIfNull(comparison);
        return Write(
            w =>
            {
                w.WriteStartObject();
                w.WriteString("schema", CompareSchema);
                w.WriteStartArray("rows");
                foreach (var row in comparison.Rows)
                {
                    w.WriteStartObject();
                    w.WriteString("model", row.Model);
                    w.WriteNumber("parameters", row.Parameters);
                    w.WriteNumber("layers", row.Layers);
                    w.WriteNumber("heads_per_layer", row.HeadsPerLayer);
                    Number(w, "interpretable", row.Interpretable);
                    Number(w, "interpretable_except_special_tokens", row.InterpretableExceptSpecialTokens);
                    Nullable(w, "control_interpretable_mean", row.ControlInterpretable);
                    Nullable(w, "control_interpretable_min", row.ControlInterpretableMin);
                    Nullable(w, "control_interpretable_max", row.ControlInterpretableMax);
                    Nullable(w, "control_interpretable_except_special_tokens_mean", row.ControlInterpretableExceptSpecialTokens);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.WriteString("verdict", comparison.Verdict);
                w.WriteStartArray("models");
                foreach (var result in comparison.Results)
                {
                    WriteCensus(w, result, Schema);
                }

                w.WriteEndArray();
                w.WriteEndObject();
            },
            indented);
    }

    private static string Write(Action<Utf8JsonWriter> body, bool indented)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream, new JsonWriterOptions { Indented = indented }))
        {
            body(writer);
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static void WriteCensus(Utf8JsonWriter w, CensusResult r, string schema)
    {
        w.WriteStartObject();
        w.WriteString("schema", schema);
        w.WriteStartObject("model");
        w.WriteString("name", r.Model);
        w.WriteString("family", r.Family);
        w.WriteNumber("parameters", r.Parameters);
        w.WriteNumber("layers", r.Layers);
        w.WriteNumber("heads_per_layer", r.HeadsPerLayer);
        w.WriteString("device", r.Device);
        w.WriteEndObject();

        var c = r.Corpus;
        w.WriteStartObject("corpus");
        w.WriteString("name", c.Name);
        w.WriteString("sha256", c.Sha256);
        w.WriteString("text_source", c.TextSource);
        w.WriteNumber("texts", c.Texts);
        w.WriteNumber("text_tokens", c.TextTokens);
        w.WriteNumber("repeat_sequences", c.RepeatSequences);
        w.WriteNumber("repeat_length", c.RepeatLength);
        w.WriteNumber("repeat_tokens", c.RepeatTokens);
        w.WriteNumber("seed", c.Seed);
        w.WriteNumber("ablation_texts", c.AblationTexts);
        w.WriteEndObject();

        w.WriteStartObject("thresholds");
        Number(w, "mass", CensusThresholds.Mass);
        Number(w, "offset_argmax", CensusThresholds.OffsetArgmax);
        w.WriteNumber("max_offset", CensusThresholds.MaxOffset);
        w.WriteStartArray("special_token_roles");
        foreach (var role in CensusThresholds.Roles.Where(x => (CensusThresholds.SpecialTokenRoles & x) != 0))
        {
            w.WriteStringValue(CensusThresholds.Name(role));
        }

        w.WriteEndArray();
        w.WriteEndObject();

        if (r.Tagged is not { } t)
        {
            w.WriteNull("tagged");
        }
        else
        {
            w.WriteStartObject("tagged");
            w.WriteString("name", t.Name);
            w.WriteStartArray("files");
            foreach (string f in t.Files)
            {
                w.WriteStringValue(f);
            }

            w.WriteEndArray();
            w.WriteNumber("sentences", t.Sentences);
            w.WriteNumber("tokens", t.Tokens);
            w.WriteStartObject("pairs");
            w.WriteNumber("det_noun", t.DetNoun);
            w.WriteNumber("adj_noun", t.AdjNoun);
            w.WriteNumber("prep_object", t.PrepObject);
            w.WriteNumber("verb_subject", t.VerbSubject);
            w.WriteEndObject();
            w.WriteEndObject();
        }

        if (r.Target is null)
        {
            w.WriteNull("target");
        }
        else
        {
            w.WriteStartObject("target");
            w.WriteString("description", r.Target);
            Nullable(w, "baseline", r.TargetBaseline);
            w.WriteEndObject();
        }

        w.WritePropertyName("chance");
        Head(w, r.Chance, roles: false);
        w.WritePropertyName("shares");
        Shares(w, r.Shares, r.Chance);
        w.WriteStartArray("heads");
        foreach (var h in r.Heads)
        {
            Head(w, h, roles: true);
        }

        w.WriteEndArray();

        w.WriteStartArray("controls");
        foreach (var control in r.Controls)
        {
            w.WriteStartObject();
            w.WriteNumber("seed", control.Seed);
            w.WritePropertyName("shares");
            Shares(w, control.Shares, r.Chance);
            w.WriteStartArray("heads");
            foreach (var h in control.Heads)
            {
                Head(w, h, roles: true);
            }

            w.WriteEndArray();
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartObject("control_summary");
        w.WriteNumber("seeds", r.Controls.Count);
        Nullable(w, "interpretable_mean", r.ControlInterpretableMean);
        Nullable(w, "interpretable_min", r.Controls.Count == 0 ? null : r.Controls.Min(x => x.Shares.Interpretable));
        Nullable(w, "interpretable_max", r.Controls.Count == 0 ? null : r.Controls.Max(x => x.Shares.Interpretable));
        Nullable(w, "interpretable_except_special_tokens_mean", r.Controls.Count == 0 ? null : r.Controls.Average(x => x.Shares.InterpretableExceptSpecialTokens));
        w.WriteStartObject("per_role_mean");
        foreach (var role in CensusThresholds.Roles)
        {
            Nullable(w, CensusThresholds.Name(role), CensusThresholds.Measured(r.Chance, role) ? r.ControlRoleMean(role) : null);
        }

        w.WriteEndObject();
        w.WriteEndObject();
        Number(w, "elapsed_seconds", Math.Round(r.Elapsed.TotalSeconds, 3));
        w.WriteEndObject();
    }

    // A syntactic role without tagged text has a null share, not 0.
    private static void Shares(Utf8JsonWriter w, RoleShares s, HeadScores chance)
    {
        w.WriteStartObject();
        Number(w, "interpretable", s.Interpretable);
        Number(w, "interpretable_except_special_tokens", s.InterpretableExceptSpecialTokens);
        w.WriteStartObject("per_role");
        foreach (var role in CensusThresholds.Roles)
        {
            Nullable(w, CensusThresholds.Name(role), CensusThresholds.Measured(chance, role) ? s.PerRole[role] : null);
        }

        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void Head(Utf8JsonWriter w, HeadScores h, bool roles)
    {
        w.WriteStartObject();
        w.WriteNumber("layer", h.Layer);
        w.WriteNumber("head", h.Head);
        Number(w, "entropy", h.Entropy);
        Number(w, "normalized_entropy", h.NormalizedEntropy);
        Number(w, "confidence", h.Confidence);
        Number(w, "previous", h.Previous);
        Number(w, "next", h.Next);
        w.WriteNumber("offset", h.Offset);
        Number(w, "offset_argmax_share", h.OffsetArgmaxShare);
        Number(w, "first", h.First);
        Number(w, "separator", h.Separator);
        Number(w, "punctuation", h.Punctuation);
        Number(w, "duplicate", h.Duplicate);
        Number(w, "induction", h.Induction);
        Nullable(w, "det_noun", h.DetNoun);
        Nullable(w, "adj_noun", h.AdjNoun);
        Nullable(w, "prep_object", h.PrepObject);
        Nullable(w, "verb_subject", h.VerbSubject);
        if (roles)
        {
            Nullable(w, "importance", h.Importance);
            Nullable(w, "importance_share", h.ImportanceShare);
            Nullable(w, "ablation_drop", h.AblationDrop);
            w.WriteStartArray("roles");
            foreach (var role in CensusThresholds.Roles.Where(x => (h.Roles & x) != 0))
            {
                w.WriteStringValue(CensusThresholds.Name(role));
            }

            w.WriteEndArray();
        }

        w.WriteEndObject();
    }

    // Non-finite numbers (which JSON cannot hold) are written as null.
    private static void Number(Utf8JsonWriter w, string name, double value)
    {
        if (double.IsFinite(value))
        {
            w.WriteNumber(name, value);
        }
        else
        {
            w.WriteNull(name);
        }
    }

    private static void Nullable(Utf8JsonWriter w, string name, double? value)
    {
        if (value is { } v)
        {
            Number(w, name, v);
        }
        else
        {
            w.WriteNull(name);
        }
    }
}
