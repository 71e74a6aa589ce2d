namespace Headlight.Models.Tokenization.HfTokenizerJson;

/// <summary>One token while a text is encoded: offsets into the text of sequence <see cref="Sequence"/> (−1: added by the post-processor).</summary>
internal record struct EncodedToken(int Id, string Token, int TypeId, int Sequence, int Word, TextSpan Span);

/// <summary>A tokenizer.json post-processor: trims offsets, adds special tokens, sets type ids.</summary>
internal abstract class PostProcessor
{
    /// <summary>Processes the sequences (one, or two for a pair) into the final token list.</summary>
    public abstract List<EncodedToken> Process(List<List<EncodedToken>> sequences);

    /// <summary>ByteLevel offset trimming: leading/trailing spaces (GPT-2's 'Ġ' or whitespace) leave the span.</summary>
    internal static void TrimOffsets(List<EncodedToken> tokens, bool addPrefixSpace)
    {
        for (int i = 0; i < tokens.Count; i++)
        {
            EncodedToken t = tokens[i];
            string s = t.Token;
            int leading = 0, trailing = 0;
            while (leading < s.Length && IsSpace(s[leading]))
            {
                leading++;
            }

            while (trailing < s.Length && IsSpace(s[s.Length - 1 - trailing]))
            {
                trailing++;
            }

            if (leading == 0 && trailing == 0)
            {
                continue;
            }

            int start = t.Span.Start, end = t.Span.End;
            if (leading > 0)
            {
                bool first = i == 0 || start == 0;
                if (!(first && addPrefixSpace && leading == 1))
                {
                    start = Math.Min(start + leading, end);
                }
            }

            if (trailing > 0 && end >= trailing)
            {
                end = Math.Max(end - trailing, start);
            }

            tokens[i] = t with { Span = new TextSpan(start, end) };
        }

        static bool IsSpace(char c) => c == 'Ġ' || char.IsWhiteSpace(c);
    }

    protected static EncodedToken Special(int id, string token, int typeId) => new(id, token, typeId, -1, -1, default);

    protected static IEnumerable<EncodedToken> WithType(List<EncodedToken> tokens, int typeId) =>
        tokens.Select(t => t with { TypeId = typeId });
}

internal sealed class ByteLevelProcessor(bool trimOffsets, bool addPrefixSpace) : PostProcessor
{
    public override List<EncodedToken> Process(List<List<EncodedToken>> sequences)
    {
        var result = new List<EncodedToken>();
        foreach (var sequence in sequences)
        {
            if (trimOffsets)
            {
                TrimOffsets(sequence, addPrefixSpace);
            }

            result.AddRange(sequence);
        }

        return result;
    }
}

/// <summary>RobertaProcessing: &lt;s&gt; A &lt;/s&gt; (&lt;/s&gt; B &lt;/s&gt;), all type 0, optional ByteLevel trimming.</summary>
internal sealed class RobertaProcessor((string Token, int Id) sep, (string Token, int Id) cls, bool trimOffsets, bool addPrefixSpace) : PostProcessor
{
    public override List<EncodedToken> Process(List<List<EncodedToken>> sequences)
    {
        var result = new List<EncodedToken> { Special(cls.Id, cls.Token, 0) };
        for (int s = 0; s < sequences.Count; s++)
        {
            if (trimOffsets)
            {
                TrimOffsets(sequences[s], addPrefixSpace);
            }

            if (s > 0)
            {
                result.Add(Special(sep.Id, sep.Token, 0));
            }

            result.AddRange(WithType(sequences[s], 0));
            result.Add(Special(sep.Id, sep.Token, 0));
        }

        return result;
    }
}

/// <summary>BertProcessing: [CLS] A [SEP] (B [SEP]) with type ids 0 and 1.</summary>
internal sealed class BertProcessor((string Token, int Id) sep, (string Token, int Id) cls) : PostProcessor
{
    public override List<EncodedToken> Process(List<List<EncodedToken>> sequences)
    {
        var result = new List<EncodedToken> { Special(cls.Id, cls.Token, 0) };
        for (int s = 0; s < sequences.Count; s++)
        {
            result.AddRange(WithType(sequences[s], s));
            result.Add(Special(sep.Id, sep.Token, s));
        }

        return result;
    }
}

/// <summary>One element of a template: a special token (its ids and tokens) or sequence A / B, with a type id.</summary>
internal readonly record struct TemplatePiece(int Sequence, (int Id, string Token)[] Special, int TypeId);

internal sealed class TemplateProcessor(TemplatePiece[] single, TemplatePiece[] pair) : PostProcessor
{
    public override List<EncodedToken> Process(List<List<EncodedToken>> sequences)
    {
        var result = new List<EncodedToken>();
        foreach (TemplatePiece piece in sequences.Count == 1 ? single : pair)
        {
            if (piece.Sequence >= 0)
            {
                result.AddRange(WithType(sequences[piece.Sequence], piece.TypeId));
                continue;
            }

            foreach (var (id, token) in piece.Special)
            {
                result.Add(Special(id, token, piece.TypeId));
            }
        }

        return result;
    }
}

/// <summary>No post-processor: the sequences back to back (the library's default; the second keeps type id 1).</summary>
internal sealed class ConcatenateProcessor : PostProcessor
{
    public override List<EncodedToken> Process(List<List<EncodedToken>> sequences) => sequences.SelectMany(s => s).ToList();
}

/// <summary>Sequence: each processor in turn; only the last may add tokens to a split pair.</summary>
internal sealed class SequenceProcessor(IReadOnlyList<PostProcessor> steps) : PostProcessor
{
    public override List<EncodedToken> Process(List<List<EncodedToken>> sequences)
    {
        for (int i = 0; i < steps.Count - 1; i++)
        {
            // Offset-only steps (ByteLevel) keep the sequences apart for the next step.
            if (steps[i] is not ByteLevelProcessor)
            {
                var merged = steps[i].Process(sequences);
                sequences = [merged];
                continue;
            }

            steps[i].Process(sequences);
        }

        return steps.Count == 0 ? sequences.SelectMany(s => s).ToList() : steps[^1].Process(sequences);
    }
}
