namespace Headlight.Models.Tokenization;

/// <summary>How a GPT-2 tokenizer frames a text. The defaults are GPT-2's: no special tokens added.</summary>
public sealed record Gpt2TokenizerOptions
{
    /// <summary>GPT-2's convention: the text's tokens only.</summary>
    public static Gpt2TokenizerOptions Default { get; } = new();

    /// <summary>
    /// Prepend &lt;|endoftext|&gt; as a beginning-of-sequence token, as GPT-2 saw at document
    /// boundaries in training; it gives the first real token something to attend to. Default false.
    /// </summary>
    public bool PrependEndOfText { get; init; }
}
