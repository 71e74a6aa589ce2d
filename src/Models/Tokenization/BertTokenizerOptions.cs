namespace Headlight.Models.Tokenization;

/// <summary>
/// How a BERT model's text is normalised and which vocabulary entries are its special tokens.
/// The defaults are an uncased model's (bert-base-uncased, all-MiniLM-L6-v2,
/// snowflake-arctic-embed-xs); take <see cref="LowerCase"/> and <see cref="StripAccents"/> from
/// the model's tokenizer configuration (do_lower_case, strip_accents).
/// </summary>
public sealed record BertTokenizerOptions
{
    /// <summary>Options of an uncased model: lower-case and strip accents.</summary>
    public static BertTokenizerOptions Uncased { get; } = new();

    /// <summary>Options of a cased model: text kept as written.</summary>
    public static BertTokenizerOptions Cased { get; } = new() { LowerCase = false };

    /// <summary>Lower-case the text (do_lower_case). Default true.</summary>
    public bool LowerCase { get; init; } = true;

    /// <summary>Decompose (NFD) and drop nonspacing marks; null (the default) follows <see cref="LowerCase"/>, as BERT does.</summary>
    public bool? StripAccents { get; init; }

    /// <summary>Make every CJK ideograph its own word (tokenize_chinese_chars). Default true.</summary>
    public bool TokenizeChineseCharacters { get; init; } = true;

    /// <summary>A longer word (in code points, after normalisation) becomes [UNK] whole. Default 100.</summary>
    public int MaxInputCharsPerWord { get; init; } = 100;

    /// <summary>Prefix of continuation pieces in the vocabulary. Default "##".</summary>
    public string ContinuingSubwordPrefix { get; init; } = "##";

    /// <summary>The unknown token. Default "[UNK]".</summary>
    public string UnknownToken { get; init; } = "[UNK]";

    /// <summary>The classification token that starts every input. Default "[CLS]".</summary>
    public string ClsToken { get; init; } = "[CLS]";

    /// <summary>The separator that ends each text. Default "[SEP]".</summary>
    public string SepToken { get; init; } = "[SEP]";

    /// <summary>The padding token. Default "[PAD]".</summary>
    public string PadToken { get; init; } = "[PAD]";

    /// <summary>The mask token (masking baselines and SHAP). Default "[MASK]".</summary>
    public string MaskToken { get; init; } = "[MASK]";

    /// <summary>Whether accents are stripped once <see cref="StripAccents"/>'s default is resolved.</summary>
    /// <summary>
    /// Find the special tokens ([CLS], [SEP], [PAD], [MASK], [UNK]) written in the text and give
    /// them their ids, as Hugging Face's tokenizers do for a model folder (so "[MASK]" is the mask id,
    /// not "[", "mask", "]"). Default false: BERT's reference basic tokenizer treats them as text.
    /// </summary>
    public bool MatchSpecialTokens { get; init; }

    internal bool StripsAccents => StripAccents ?? LowerCase;
}
