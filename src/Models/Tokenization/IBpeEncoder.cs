namespace Headlight.Models.Tokenization;

/// <summary>Encodes one pre-tokenisation chunk into token ids.</summary>
internal interface IBpeEncoder
{
    /// <summary>Appends the ids of <paramref name="chunk"/> (whose UTF-8 bytes are <paramref name="utf8"/>) to <paramref name="ids"/>.</summary>
    void Encode(ReadOnlySpan<char> chunk, ReadOnlySpan<byte> utf8, List<int> ids);
}
