namespace Headlight.Explain.Census;

/// <summary>The four syntactic relations the tagged-text roles score.</summary>
internal enum SyntacticRelation
{
    DetNoun = 0,
    AdjNoun = 1,
    PrepObject = 2,
    VerbSubject = 3,
}

/// <summary>One tagged word: its text and its Brown tag as written in the corpus (lower case, suffixes kept).</summary>
internal sealed record TaggedWord(string Word, string Tag);

/// <summary>
/// One (query word → key word) pair: <see cref="Query"/> is always the later word and <see cref="Key"/> the
/// earlier one, so a causal head can make the link. Indices are word positions in the sentence.
/// </summary>
internal sealed record SyntacticPair(SyntacticRelation Relation, int Query, int Key);

/// <summary>
/// Heuristic syntactic pairs from Brown-tagged sentences. Tags are first reduced to their base: a
/// leading <c>fw-</c> and the suffixes <c>-tl</c>, <c>-hl</c>, <c>-nc</c> are dropped (in any order),
/// and a trailing negation <c>*</c> is dropped; a contraction tagged with <c>+</c> (<c>ppss+ber</c>)
/// belongs to no class. Classes of base tags:
/// <list type="bullet">
/// <item>determiner: at, dt, dti, dts, pp$ (the, this, any, these, his);</item>
/// <item>adjective: jj, jjr, jjs, jjt;</item>
/// <item>noun: nn, nns, np, nps, nr, nrs and their possessives (nn$, ...);</item>
/// <item>preposition: in;</item>
/// <item>subject pronoun: pps, ppss; object pronoun: ppo, ppl, ppls, pn;</item>
/// <item>finite verb: vb, vbd, vbz, md, and the finite forms of be/have/do (bem, ber, bez, bed, bedz, hv, hvd, hvz, do, dod, doz);</item>
/// <item>noun-phrase filler: adjectives, cd, od, ap, abn, ql, rb (may stand between a determiner or adjective and its noun).</item>
/// </list>
/// A noun's phrase head is the last noun of the run of consecutive nouns that starts at it (a compound's
/// head: "the county jury" → jury), stopping after a possessive ("the city's budget" → city's).
/// Relations, each with the query (later) and key (earlier) word:
/// <list type="bullet">
/// <item><b>det_noun</b>: a determiner followed within <see cref="Window"/> words by a noun, only filler
/// between (so no verb, preposition or punctuation); query = that noun's phrase head, key = the determiner.</item>
/// <item><b>adj_noun</b>: the same from an adjective; query = the phrase head, key = the adjective.</item>
/// <item><b>prep_object</b>: a preposition followed within <see cref="Window"/> words by a noun or object
/// pronoun, only determiners, possessive nouns and filler between; query = the noun's phrase head (or the pronoun), key = the
/// preposition.</item>
/// <item><b>verb_subject</b>: a finite verb whose nearest preceding word, skipping at most two adverbs (rb, ql)
/// or negations (*), is a subject pronoun or a non-possessive noun — so no comma, conjunction, relative
/// pronoun, auxiliary or other word stands between, and the noun's phrase does not start right after a
/// preposition ("the man in the park sleeps" gives no pair: park is the preposition's object); query = the
/// verb, key = the subject.</item>
/// </list>
/// The rules favour precision over recall: a sentence contributes only the links they are sure of.
/// </summary>
internal static class SyntacticPairs
{
    /// <summary>The most words from a determiner, adjective or preposition to its noun (the noun counted).</summary>
    public const int Window = 4;

    /// <summary>The names used in JSON and on the command line, by relation.</summary>
    public static string Name(SyntacticRelation relation) => relation switch
    {
        SyntacticRelation.DetNoun => "det_noun",
        SyntacticRelation.AdjNoun => "adj_noun",
        SyntacticRelation.PrepObject => "prep_object",
        _ => "verb_subject",
    };

    /// <summary>Every pair of one sentence, ordered by relation, then key, then query.</summary>
    public static List<SyntacticPair> Extract(IReadOnlyList<TaggedWord> sentence)
    {
        ArgumentNullException.ThrowIfNull(sentence);
        var tags = sentence.Select(w => Base(w.Tag)).ToArray();
        var pairs = new List<SyntacticPair>();
        for (int i = 0; i < tags.Length; i++)
        {
            string t = tags[i];
            if (IsDeterminer(t) && NounAfter(tags, i, IsFiller) is { } det)
            {
                pairs.Add(new SyntacticPair(SyntacticRelation.DetNoun, det, i));
            }

            if (IsAdjective(t) && NounAfter(tags, i, IsFiller) is { } adj)
            {
                pairs.Add(new SyntacticPair(SyntacticRelation.AdjNoun, adj, i));
            }

            if (t == "in" && ObjectAfter(tags, i) is { } obj)
            {
                pairs.Add(new SyntacticPair(SyntacticRelation.PrepObject, obj, i));
            }

            if (IsFiniteVerb(t) && SubjectBefore(tags, i) is { } subject)
            {
                pairs.Add(new SyntacticPair(SyntacticRelation.VerbSubject, i, subject));
            }
        }

        return pairs.OrderBy(p => p.Relation).ThenBy(p => p.Key).ThenBy(p => p.Query).ToList();
    }

    /// <summary>
    /// Reads a tagged file: one <c>token&lt;TAB&gt;tag</c> per line, a blank line after each sentence.
    /// </summary>
    /// <exception cref="FormatException">A non-blank line has no tab (the message names the source and line).</exception>
    public static List<List<TaggedWord>> ReadSentences(string content, string source)
    {
        ArgumentNullException.ThrowIfNull(content);
        var sentences = new List<List<TaggedWord>>();
        var current = new List<TaggedWord>();
        int number = 0;
        foreach (string raw in content.Split('\n'))
        {
            number++;
            string line = raw.TrimEnd('\r');
            if (line.Length == 0)
            {
                if (current.Count > 0)
                {
                    sentences.Add(current);
                    current = [];
                }

                continue;
            }

            int tab = line.IndexOf('\t', StringComparison.Ordinal);
            if (tab <= 0)
            {
                throw new FormatException($"{source} line {number}: expected 'token<TAB>tag', got '{line}'.");
            }

            current.Add(new TaggedWord(line[..tab], line[(tab + 1)..]));
        }

        if (current.Count > 0)
        {
            sentences.Add(current);
        }

        return sentences;
    }

    /// <summary>
    /// The sentence as plain text, the way scripts/install-brown.sh writes Brown's text files: words joined by
    /// one space, none before closing punctuation or an apostrophe suffix ('s), none after an opening one, and
    /// `` '' written as ". Returns the text and the start of each word in it (the word's leading space excluded).
    /// </summary>
    public static (string Text, int[] Starts) Detokenize(IReadOnlyList<TaggedWord> sentence)
    {
        var text = new System.Text.StringBuilder();
        var starts = new int[sentence.Count];
        string? previous = null;
        for (int i = 0; i < sentence.Count; i++)
        {
            string word = sentence[i].Word;
            bool glued = previous is null || NoSpaceAfter(previous) || NoSpaceBefore(word);
            if (!glued)
            {
                text.Append(' ');
            }

            starts[i] = text.Length;
            text.Append(word is "``" or "''" ? "\"" : word);
            previous = word;
        }

        return (text.ToString(), starts);
    }

    /// <summary>The base of a Brown tag: lower case, without fw-, -tl, -hl, -nc and a trailing *.</summary>
    public static string Base(string tag)
    {
        string t = tag.ToLowerInvariant();
        if (t.StartsWith("fw-", StringComparison.Ordinal))
        {
            t = t[3..];
        }

        bool changed = true;
        while (changed)
        {
            changed = false;
            foreach (string suffix in new[] { "-tl", "-hl", "-nc" })
            {
                if (t.EndsWith(suffix, StringComparison.Ordinal))
                {
                    t = t[..^suffix.Length];
                    changed = true;
                }
            }
        }

        return t.Length > 1 ? t.TrimEnd('*') : t;
    }

    private static bool NoSpaceBefore(string word)
        => word is "," or "." or ";" or ":" or "?" or "!" or ")" or "]" or "}" or "''" or "'"
           || (word.Length > 1 && word[0] == '\'' && word != "''");

    private static bool NoSpaceAfter(string word) => word is "``" or "(" or "[" or "{" or "$";

    private static bool IsDeterminer(string t) => t is "at" or "dt" or "dti" or "dts" or "pp$";

    private static bool IsAdjective(string t) => t is "jj" or "jjr" or "jjs" or "jjt";

    private static bool IsNoun(string t) => t.TrimEnd('$') is "nn" or "nns" or "np" or "nps" or "nr" or "nrs";

    private static bool IsPossessive(string t) => t.EndsWith('$');

    private static bool IsFiller(string t) => IsAdjective(t) || t is "cd" or "od" or "ap" or "abn" or "ql" or "rb";

    private static bool IsFiniteVerb(string t)
        => t is "vb" or "vbd" or "vbz" or "md" or "bem" or "ber" or "bez" or "bed" or "bedz" or "hv" or "hvd" or "hvz" or "do" or "dod" or "doz";

    // The phrase head of the first noun within Window words after `from`, with only `between` tags before it; else null.
    private static int? NounAfter(string[] tags, int from, Func<string, bool> between)
    {
        for (int j = from + 1; j < tags.Length && j <= from + Window; j++)
        {
            if (IsNoun(tags[j]))
            {
                return PhraseHead(tags, j);
            }

            if (!between(tags[j]))
            {
                return null;
            }
        }

        return null;
    }

    private static int? ObjectAfter(string[] tags, int from)
    {
        for (int j = from + 1; j < tags.Length && j <= from + Window; j++)
        {
            if (IsNoun(tags[j]))
            {
                // A possessive is the object's determiner ("onto Burnside's horse"): look past it.
                int head = PhraseHead(tags, j);
                if (!IsPossessive(tags[head]))
                {
                    return head;
                }

                j = head;
                continue;
            }

            if (tags[j] is "ppo" or "ppl" or "ppls" or "pn")
            {
                return j;
            }

            if (!IsDeterminer(tags[j]) && !IsFiller(tags[j]))
            {
                return null;
            }
        }

        return null;
    }

    // Last noun of the run of nouns from `noun`; a possessive ends the run (it modifies what follows).
    private static int PhraseHead(string[] tags, int noun)
    {
        int j = noun;
        while (!IsPossessive(tags[j]) && j + 1 < tags.Length && IsNoun(tags[j + 1]))
        {
            j++;
        }

        return j;
    }

    private static int? SubjectBefore(string[] tags, int verb)
    {
        int j = verb - 1;
        int skipped = 0;
        while (j >= 0 && tags[j] is "rb" or "ql" or "*" && skipped < 2)
        {
            j--;
            skipped++;
        }

        if (j < 0)
        {
            return null;
        }

        if (tags[j] is "pps" or "ppss")
        {
            return j;
        }

        if (!IsNoun(tags[j]) || IsPossessive(tags[j]))
        {
            return null;
        }

        // Walk back over the noun phrase; one opened by a preposition is its object, not a subject.
        int start = j;
        while (start > 0 && (IsNoun(tags[start - 1]) || IsDeterminer(tags[start - 1]) || IsFiller(tags[start - 1])))
        {
            start--;
        }

        return start > 0 && tags[start - 1] == "in" ? null : j;
    }
}
