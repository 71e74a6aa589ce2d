using System.Text.Json;
using Headlight.Models.Tokenization;

namespace Headlight.Models.Loading;

/// <summary>
/// Picks a model folder's tokenizer as Hugging Face does: <c>tokenizer.json</c> when present
/// (it wins over vocab.txt and vocab.json + merges.txt); otherwise BERT's vocab.txt with the flags
/// of <c>tokenizer_config.json</c> (do_lower_case, strip_accents, tokenize_chinese_chars, the
/// special tokens), special tokens typed in the text matched as the library matches them.
/// </summary>
internal static class FolderTokenizer
{
    /// <summary>The folder's tokenizer.json as a tokenizer, or null when there is none.</summary>
    /// <exception cref="ModelFormatException">The file is malformed or defines more ids than the model's vocab_size.</exception>
    public static HfTokenizer? FromJson(string folder, int modelVocabSize)
    {
        string path = Path.Combine(folder, "tokenizer.json");
        if (!File.Exists(path))
        {
            return null;
        }

        HfTokenizer tokenizer = HfTokenizer.FromFile(path);
        if (tokenizer.VocabularySize > modelVocabSize)
        {
            throw new ModelFormatException(path, "model.vocab", $"at most vocab_size = {modelVocabSize} ids (config.json)", $"{tokenizer.VocabularySize} ids");
        }

        return tokenizer;
    }

    /// <summary>A BERT folder's tokenizer: tokenizer.json, else vocab.txt with tokenizer_config.json's flags, else null.</summary>
    /// <exception cref="ModelFormatException">A tokenizer file is malformed.</exception>
    public static ITextTokenizer? ForBert(string folder, string? vocabPath, int modelVocabSize)
    {
        if (FromJson(folder, modelVocabSize) is { } json)
        {
            return json;
        }

        return vocabPath is null ? null : BertWordPieceTokenizer.FromFile(vocabPath, BertOptions(folder));
    }

    /// <summary>vocab.txt options from tokenizer_config.json (absent: an uncased model's defaults).</summary>
    /// <exception cref="ModelFormatException">A flag has the wrong JSON type.</exception>
    public static BertTokenizerOptions BertOptions(string folder)
    {
        var options = BertTokenizerOptions.Uncased with { MatchSpecialTokens = true };
        string path = Path.Combine(folder, "tokenizer_config.json");
        if (!File.Exists(path))
        {
            return options;
        }

        using JsonDocument document = Json.Parse(path);
        JsonElement root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw new ModelFormatException(path, "(root)", "an object", root.ValueKind.ToString().ToLowerInvariant());
        }

        bool? Flag(string name) => !root.TryGetProperty(name, out JsonElement e) || e.ValueKind == JsonValueKind.Null ? null
            : e.ValueKind is JsonValueKind.True or JsonValueKind.False ? e.GetBoolean()
            : throw new ModelFormatException(path, name, "true, false or null", e.GetRawText());

        // A special token is a string or an AddedToken object {"content": …}.
        string? Token(string name)
        {
            if (!root.TryGetProperty(name, out JsonElement e) || e.ValueKind == JsonValueKind.Null)
            {
                return null;
            }

            if (e.ValueKind == JsonValueKind.Object && e.TryGetProperty("content", out JsonElement content))
            {
                e = content;
            }

            return e.ValueKind == JsonValueKind.String && e.GetString() is { Length: > 0 } s ? s
                : throw new ModelFormatException(path, name, "a token string or {\"content\": token}", e.GetRawText());
        }

        return options with
        {
            LowerCase = Flag("do_lower_case") ?? options.LowerCase,
            StripAccents = Flag("strip_accents"),
            TokenizeChineseCharacters = Flag("tokenize_chinese_chars") ?? options.TokenizeChineseCharacters,
            UnknownToken = Token("unk_token") ?? options.UnknownToken,
            ClsToken = Token("cls_token") ?? options.ClsToken,
            SepToken = Token("sep_token") ?? options.SepToken,
            PadToken = Token("pad_token") ?? options.PadToken,
            MaskToken = Token("mask_token") ?? options.MaskToken,
        };
    }
}
