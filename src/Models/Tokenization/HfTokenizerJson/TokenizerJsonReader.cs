using System.Text.Json;
using System.Text.RegularExpressions;
using Headlight.Models.Loading;

namespace Headlight.Models.Tokenization.HfTokenizerJson;

/// <summary>An added token of tokenizer.json ("added_tokens"), matched in the text before the model runs.</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool SingleWord, bool LeftStrip, bool RightStrip, bool Normalized);

/// <summary>Everything a tokenizer.json defines, read and checked.</summary>
internal sealed record TokenizerDefinition(
    Normalizer? Normalizer, PreTokenizer? PreTokenizer, TokenModel Model, PostProcessor PostProcessor,
    IReadOnlyList<AddedToken> AddedTokens, DecoderSpec Decoder, int? PadId);

/// <summary>The decoder: ByteLevel, WordPiece (prefix, per-token cleanup), Metaspace (replacement, leading space dropped) or Join (any other: tokens joined by spaces).</summary>
internal sealed record DecoderSpec(string Type, string Prefix, bool Cleanup, char Replacement, bool StripFirstSpace);

/// <summary>Reads tokenizer.json; every error names the file and the JSON path of the field at fault.</summary>
internal sealed class TokenizerJsonReader(string source)
{
    public static TokenizerDefinition Read(string path)
    {
        using JsonDocument document = Json.Parse(path);
        return new TokenizerJsonReader(path).Read(document.RootElement);
    }

    public TokenizerDefinition Read(JsonElement root)
    {
        Require(root, "(root)", JsonValueKind.Object, "an object");
        var model = ReadModel(Property(root, "model", "model"));
        var added = new List<AddedToken>();
        if (root.TryGetProperty("added_tokens", out JsonElement addedJson) && addedJson.ValueKind != JsonValueKind.Null)
        {
            Require(addedJson, "added_tokens", JsonValueKind.Array, "an array");
            int i = 0;
            foreach (JsonElement t in addedJson.EnumerateArray())
            {
                string at = $"added_tokens[{i++}]";
                added.Add(new AddedToken(Int(t, "id", at), String(t, "content", at), Bool(t, "special", at, false), Bool(t, "single_word", at, false),
                    Bool(t, "lstrip", at, false), Bool(t, "rstrip", at, false), Bool(t, "normalized", at, true)));
            }
        }

        var normalizer = Optional(root, "normalizer") is { } n ? ReadNormalizer(n, "normalizer") : null;
        var preTokenizer = Optional(root, "pre_tokenizer") is { } p ? ReadPreTokenizer(p, "pre_tokenizer") : null;
        var post = Optional(root, "post_processor") is { } q ? ReadPostProcessor(q, "post_processor") : new ConcatenateProcessor();
        var decoder = new DecoderSpec("WordPiece", model is WordPieceModel wp ? wp.Prefix : "##", true, '▁', true);
        if (Optional(root, "decoder") is { } d)
        {
            string type = String(d, "type", "decoder");
            decoder = type switch
            {
                "ByteLevel" => decoder with { Type = type },
                "WordPiece" => decoder with { Prefix = StringOr(d, "prefix", "decoder", "##"), Cleanup = Bool(d, "cleanup", "decoder", true) },
                "Metaspace" => decoder with
                {
                    Type = type,
                    Replacement = StringOr(d, "replacement", "decoder", "▁") is { Length: 1 } r ? r[0] : throw Bad("decoder.replacement", "one character", Quote(StringOr(d, "replacement", "decoder", ""))),
                    StripFirstSpace = StringOr(d, "prepend_scheme", "decoder", Bool(d, "add_prefix_space", "decoder", true) ? "always" : "never") != "never",
                },
                // Other decoders only affect Decode: the tokens are then joined with spaces.
                _ => decoder with { Type = "Join" },
            };
        }

        int? pad = null;
        if (Optional(root, "padding") is { } padding && padding.TryGetProperty("pad_id", out JsonElement padId) && padId.ValueKind == JsonValueKind.Number)
        {
            pad = padId.GetInt32();
        }

        return new TokenizerDefinition(normalizer, preTokenizer, model, post, added, decoder, pad);
    }

    private TokenModel ReadModel(JsonElement m)
    {
        Require(m, "model", JsonValueKind.Object, "an object");
        string type = m.TryGetProperty("type", out JsonElement t) ? t.GetString() ?? "" : m.TryGetProperty("merges", out _) ? "BPE" : "WordPiece";
        var (tokens, ids) = ReadVocab(Property(m, "vocab", "model.vocab"));
        switch (type)
        {
            case "WordPiece":
            {
                string unk = String(m, "unk_token", "model");
                if (!ids.TryGetValue(unk, out int unkId))
                {
                    throw Bad("model.unk_token", "a token of model.vocab", Quote(unk));
                }

                return new WordPieceModel(tokens, ids, StringOr(m, "continuing_subword_prefix", "model", "##"), unkId, IntOr(m, "max_input_chars_per_word", "model", 100));
            }

            case "BPE":
            {
                if (Bool(m, "byte_fallback", "model", false))
                {
                    throw Bad("model.byte_fallback", "false (byte fallback is not supported)", "true");
                }

                if (Optional(m, "dropout") is { ValueKind: JsonValueKind.Number } dropout && dropout.GetDouble() != 0)
                {
                    throw Bad("model.dropout", "null (BPE dropout is not supported)", dropout.GetRawText());
                }

                string prefix = Optional(m, "continuing_subword_prefix") is { } cp ? StringValue(cp, "model.continuing_subword_prefix") : "";
                string suffix = Optional(m, "end_of_word_suffix") is { } ew ? StringValue(ew, "model.end_of_word_suffix") : "";
                int unkId = -1;
                if (Optional(m, "unk_token") is { } unk)
                {
                    string u = StringValue(unk, "model.unk_token");
                    if (!ids.TryGetValue(u, out unkId))
                    {
                        throw Bad("model.unk_token", "a token of model.vocab", Quote(u));
                    }
                }

                var merges = new Dictionary<(int, int), (int, int)>();
                JsonElement list = Property(m, "merges", "model.merges");
                Require(list, "model.merges", JsonValueKind.Array, "an array");
                int rank = 0;
                foreach (JsonElement merge in list.EnumerateArray())
                {
                    string at = $"model.merges[{rank}]";
                    string a, b;
                    if (merge.ValueKind == JsonValueKind.String)
                    {
                        string s = merge.GetString()!;
                        int space = s.IndexOf(' ', 1);
                        if (space < 0)
                        {
                            throw Bad(at, "two tokens separated by a space", Quote(s));
                        }

                        (a, b) = (s[..space], s[(space + 1)..]);
                    }
                    else if (merge.ValueKind == JsonValueKind.Array && merge.GetArrayLength() == 2)
                    {
                        (a, b) = (StringValue(merge[0], at + "[0]"), StringValue(merge[1], at + "[1]"));
                    }
                    else
                    {
                        throw Bad(at, "a string \"a b\" or a pair [\"a\", \"b\"]", merge.GetRawText());
                    }

                    string joined = a + (prefix.Length > 0 && b.StartsWith(prefix, StringComparison.Ordinal) ? b[prefix.Length..] : b);
                    if (!ids.TryGetValue(a, out int ia) || !ids.TryGetValue(b, out int ib) || !ids.TryGetValue(joined, out int ij))
                    {
                        throw Bad(at, "a merge of two vocabulary tokens into a vocabulary token", Quote($"{a} {b}"));
                    }

                    merges.TryAdd((ia, ib), (rank, ij));
                    rank++;
                }

                return new BpeModel(tokens, ids, merges, unkId, Bool(m, "ignore_merges", "model", false), prefix, suffix, Bool(m, "fuse_unk", "model", false));
            }

            default:
                throw Bad("model.type", "WordPiece or BPE", Quote(type));
        }
    }

    private (string[] Tokens, Dictionary<string, int> Ids) ReadVocab(JsonElement vocab)
    {
        Require(vocab, "model.vocab", JsonValueKind.Object, "an object of token → id");
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty entry in vocab.EnumerateObject())
        {
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetInt32(out int id) || id < 0)
            {
                throw Bad($"model.vocab[{Quote(entry.Name)}]", "a non-negative integer id", entry.Value.GetRawText());
            }

            if (!ids.TryAdd(entry.Name, id))
            {
                throw Bad($"model.vocab[{Quote(entry.Name)}]", "each token once", "a repeated token");
            }
        }

        if (ids.Count == 0)
        {
            throw Bad("model.vocab", "at least one token", "none");
        }

        var tokens = new string[ids.Count];
        foreach (var (token, id) in ids)
        {
            if (id >= tokens.Length || tokens[id] is not null)
            {
                throw Bad($"model.vocab[{Quote(token)}]", $"ids 0 to {tokens.Length - 1}, each once", $"{id}");
            }

            tokens[id] = token;
        }

        return (tokens, ids);
    }

    private Normalizer ReadNormalizer(JsonElement n, string at)
    {
        string type = String(n, "type", at);
        switch (type)
        {
            case "BertNormalizer":
            {
                bool lowercase = Bool(n, "lowercase", at, true);
                bool? strip = Optional(n, "strip_accents") is { } s ? BoolValue(s, at + ".strip_accents") : null;
                return new BertNormalizerStep(Bool(n, "clean_text", at, true), Bool(n, "handle_chinese_chars", at, true), strip ?? lowercase, lowercase);
            }

            case "Lowercase":
                return new LowercaseStep();
            case "NFD" or "NFC" or "NFKD" or "NFKC":
                return new CanonicalStep(compose: type.EndsWith('C'), compatible: type.StartsWith("NFK", StringComparison.Ordinal));
            case "Strip":
                return new StripStep(Bool(n, "strip_left", at, true), Bool(n, "strip_right", at, true));
            case "StripAccents":
                return new StripAccentsStep();
            case "Replace":
                return new ReplaceStep(Pattern(Property(n, "pattern", at + ".pattern"), at + ".pattern"), String(n, "content", at));
            case "Prepend":
                return new PrependStep(String(n, "prepend", at));
            case "Sequence":
                return new SequenceNormalizer(Items(n, "normalizers", at, ReadNormalizer));
            default:
                throw Bad(at + ".type", "one of BertNormalizer, Lowercase, NFC, NFD, NFKC, NFKD, Strip, StripAccents, Replace, Prepend, Sequence", Quote(type));
        }
    }

    private PreTokenizer ReadPreTokenizer(JsonElement p, string at)
    {
        string type = String(p, "type", at);
        switch (type)
        {
            case "BertPreTokenizer":
                return new BertPreTokenizerStep();
            case "ByteLevel":
                return new ByteLevelStep(Bool(p, "add_prefix_space", at, true), Bool(p, "use_regex", at, true));
            case "Split":
                return new RegexSplitStep(Pattern(Property(p, "pattern", at + ".pattern"), at + ".pattern"), Behavior(p, at), Bool(p, "invert", at, false));
            case "Whitespace":
                // \w+|[^\w\s]+ with the Rust regex crate's \w (marks, letter numbers and joiners included).
                return new RegexSplitStep(RegexSplitter.Compile(@"[\w\p{Mc}\p{Me}\p{Nl}\u200C\u200D]+|[^\w\p{Mc}\p{Me}\p{Nl}\u200C\u200D\s]+", literal: false), SplitBehavior.Removed, invert: true);
            case "WhitespaceSplit":
                return new WhitespaceSplitStep();
            case "Metaspace":
            {
                string replacement = String(p, "replacement", at);
                if (replacement.Length != 1)
                {
                    throw Bad(at + ".replacement", "one character", Quote(replacement));
                }

                string scheme = Optional(p, "prepend_scheme") is { } ps ? StringValue(ps, at + ".prepend_scheme") : Bool(p, "add_prefix_space", at, true) ? "always" : "never";
                if (scheme is not ("always" or "first" or "never"))
                {
                    throw Bad(at + ".prepend_scheme", "always, first or never", Quote(scheme));
                }

                return new MetaspaceStep(replacement[0], scheme, Bool(p, "split", at, true));
            }

            case "Digits":
                return new DigitsStep(Bool(p, "individual_digits", at, false));
            case "Punctuation":
                return new PunctuationStep(Optional(p, "behavior") is null ? SplitBehavior.Isolated : Behavior(p, at));
            case "Sequence":
                return new SequencePreTokenizer(Items(p, "pretokenizers", at, ReadPreTokenizer));
            default:
                throw Bad(at + ".type", "one of BertPreTokenizer, ByteLevel, Split, Whitespace, WhitespaceSplit, Metaspace, Digits, Punctuation, Sequence", Quote(type));
        }
    }

    private PostProcessor ReadPostProcessor(JsonElement p, string at)
    {
        string type = String(p, "type", at);
        switch (type)
        {
            case "ByteLevel":
                return new ByteLevelProcessor(Bool(p, "trim_offsets", at, true), Bool(p, "add_prefix_space", at, true));
            case "RobertaProcessing":
                return new RobertaProcessor(Pair(p, "sep", at), Pair(p, "cls", at), Bool(p, "trim_offsets", at, true), Bool(p, "add_prefix_space", at, true));
            case "BertProcessing":
                return new BertProcessor(Pair(p, "sep", at), Pair(p, "cls", at));
            case "TemplateProcessing":
            {
                JsonElement specials = Property(p, "special_tokens", at + ".special_tokens");
                Require(specials, at + ".special_tokens", JsonValueKind.Object, "an object");
                var map = new Dictionary<string, (int, string)[]>(StringComparer.Ordinal);
                foreach (JsonProperty s in specials.EnumerateObject())
                {
                    string sat = $"{at}.special_tokens[{Quote(s.Name)}]";
                    var ids = Items(s.Value, "ids", sat, (e, a) => e.ValueKind == JsonValueKind.Number ? e.GetInt32() : throw Bad(a, "an integer", e.GetRawText()));
                    var tokens = Items(s.Value, "tokens", sat, StringValue);
                    if (ids.Count != tokens.Count)
                    {
                        throw Bad(sat, "as many ids as tokens", $"{ids.Count} ids, {tokens.Count} tokens");
                    }

                    map[s.Name] = ids.Select((id, k) => (id, tokens[k])).ToArray();
                }

                return new TemplateProcessor(Template(p, "single", at, map), Template(p, "pair", at, map));
            }

            case "Sequence":
                return new SequenceProcessor(Items(p, "processors", at, ReadPostProcessor));
            default:
                throw Bad(at + ".type", "one of TemplateProcessing, RobertaProcessing, BertProcessing, ByteLevel, Sequence", Quote(type));
        }
    }

    private TemplatePiece[] Template(JsonElement p, string name, string at, Dictionary<string, (int, string)[]> specials) =>
        Items(p, name, at, (e, a) =>
        {
            if (e.TryGetProperty("Sequence", out JsonElement seq))
            {
                string id = String(seq, "id", a + ".Sequence");
                int type = Int(seq, "type_id", a + ".Sequence");
                return id switch
                {
                    "A" => new TemplatePiece(0, [], type),
                    "B" => new TemplatePiece(1, [], type),
                    _ => throw Bad(a + ".Sequence.id", "A or B", Quote(id)),
                };
            }

            if (e.TryGetProperty("SpecialToken", out JsonElement special))
            {
                string id = String(special, "id", a + ".SpecialToken");
                return specials.TryGetValue(id, out var tokens)
                    ? new TemplatePiece(-1, tokens, Int(special, "type_id", a + ".SpecialToken"))
                    : throw Bad(a + ".SpecialToken.id", "a key of special_tokens", Quote(id));
            }

            throw Bad(a, "{\"Sequence\": …} or {\"SpecialToken\": …}", e.GetRawText());
        }).ToArray();

    private (string, int) Pair(JsonElement p, string name, string at)
    {
        JsonElement e = Property(p, name, $"{at}.{name}");
        if (e.ValueKind != JsonValueKind.Array || e.GetArrayLength() != 2 || e[0].ValueKind != JsonValueKind.String || e[1].ValueKind != JsonValueKind.Number)
        {
            throw Bad($"{at}.{name}", "[token, id]", e.GetRawText());
        }

        return (e[0].GetString()!, e[1].GetInt32());
    }

    private SplitBehavior Behavior(JsonElement p, string at)
    {
        string b = String(p, "behavior", at);
        return b switch
        {
            "Removed" => SplitBehavior.Removed,
            "Isolated" => SplitBehavior.Isolated,
            "MergedWithPrevious" => SplitBehavior.MergedWithPrevious,
            "MergedWithNext" => SplitBehavior.MergedWithNext,
            "Contiguous" => SplitBehavior.Contiguous,
            _ => throw Bad(at + ".behavior", "Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous", Quote(b)),
        };
    }

    private Regex Pattern(JsonElement pattern, string at)
    {
        if (pattern.ValueKind == JsonValueKind.Object && pattern.TryGetProperty("String", out JsonElement s))
        {
            return RegexSplitter.Compile(StringValue(s, at + ".String"), literal: true);
        }

        if (pattern.ValueKind == JsonValueKind.Object && pattern.TryGetProperty("Regex", out JsonElement r))
        {
            string text = StringValue(r, at + ".Regex");
            try
            {
                return RegexSplitter.Compile(text, literal: false);
            }
            catch (ArgumentException e)
            {
                throw new ModelFormatException(source, at + ".Regex", "a regular expression .NET can run", Quote(text), e);
            }
        }

        throw Bad(at, "{\"String\": …} or {\"Regex\": …}", pattern.GetRawText());
    }

    private List<T> Items<T>(JsonElement parent, string name, string at, Func<JsonElement, string, T> read)
    {
        JsonElement list = Property(parent, name, $"{at}.{name}");
        Require(list, $"{at}.{name}", JsonValueKind.Array, "an array");
        var result = new List<T>();
        int i = 0;
        foreach (JsonElement e in list.EnumerateArray())
        {
            result.Add(read(e, $"{at}.{name}[{i++}]"));
        }

        return result;
    }

    private static JsonElement? Optional(JsonElement parent, string name) =>
        parent.ValueKind == JsonValueKind.Object && parent.TryGetProperty(name, out JsonElement e) && e.ValueKind != JsonValueKind.Null ? e : null;

    private JsonElement Property(JsonElement parent, string name, string at)
    {
        Require(parent, at[..Math.Max(0, at.Length - name.Length - 1)] is { Length: > 0 } p ? p : "(root)", JsonValueKind.Object, "an object");
        return parent.TryGetProperty(name, out JsonElement e) ? e : throw Bad(at, "a value", "nothing (the field is missing)");
    }

    private string String(JsonElement parent, string name, string at) => StringValue(Property(parent, name, $"{at}.{name}"), $"{at}.{name}");

    private string StringOr(JsonElement parent, string name, string at, string fallback) =>
        Optional(parent, name) is { } e ? StringValue(e, $"{at}.{name}") : fallback;

    private string StringValue(JsonElement e, string at) =>
        e.ValueKind == JsonValueKind.String ? e.GetString()! : throw Bad(at, "a string", e.GetRawText());

    private int Int(JsonElement parent, string name, string at)
    {
        JsonElement e = Property(parent, name, $"{at}.{name}");
        return e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out int v) ? v : throw Bad($"{at}.{name}", "an integer", e.GetRawText());
    }

    private int IntOr(JsonElement parent, string name, string at, int fallback) =>
        Optional(parent, name) is null ? fallback : Int(parent, name, at);

    private bool Bool(JsonElement parent, string name, string at, bool fallback) =>
        Optional(parent, name) is { } e ? BoolValue(e, $"{at}.{name}") : fallback;

    private bool BoolValue(JsonElement e, string at) => e.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Bad(at, "true or false", e.GetRawText()),
    };

    private void Require(JsonElement e, string at, JsonValueKind kind, string expected)
    {
        if (e.ValueKind != kind)
        {
            throw Bad(at, expected, e.ValueKind.ToString().ToLowerInvariant());
        }
    }

    private ModelFormatException Bad(string at, string expected, string found) => new(source, at, expected, found);

    // A JSON string literal, without reflection-based serialisation (which applications may turn off).
    private static string Quote(string s) => $"\"{JsonEncodedText.Encode(s, System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping)}\"";
}
