using System.Text.Json;
using Headlight.Explain.Census;
using Headlight.Models;
using Headlight.Tests.Explain;
using Headlight.Tests.Loading;
using Headlight.Tests.Training;

namespace Headlight.Tests.Census;

/// <summary>
/// The syntactic roles: pair extraction on hand-written and hand-checked Brown sentences, and the scores
/// on synthetic attention that follows the pairs exactly (1) or is uniform (the chance level).
/// </summary>
public sealed class SyntacticRoleTests
{
    private static List<TaggedWord> Sentence(string tagged)
        => tagged.Split(' ').Select(t => new TaggedWord(t[..t.LastIndexOf('/')], t[(t.LastIndexOf('/') + 1)..])).ToList();

    private static string[] Pairs(string tagged)
    {
        var s = Sentence(tagged);
        return SyntacticPairs.Extract(s).Select(p => $"{SyntacticPairs.Name(p.Relation)} {s[p.Query].Word}->{s[p.Key].Word}").ToArray();
    }

    [Fact]
    public void Hand_written_sentences_give_the_expected_pairs()
    {
        Assert.Equal(
            ["det_noun jury->The", "det_noun budget->the", "adj_noun jury->grand", "prep_object budget->on", "verb_subject reported->jury"],
            Pairs("The/at grand/jj county/nn jury/nn-tl reported/vbd on/in the/at budget/nn ./."));

        // A possessive is the object's determiner; it is itself a determiner's noun.
        Assert.Equal(
            ["det_noun city's->the", "prep_object budget->into", "verb_subject looked->She"],
            Pairs("She/pps looked/vbd into/in the/at city's/nn$ budget/nn ./."));

        // A preposition's object is no subject; a comma, relative pronoun or auxiliary blocks the subject.
        Assert.Equal(
            ["det_noun man->The", "det_noun park->the", "prep_object park->in"],
            Pairs("The/at man/nn in/in the/at park/nn sleeps/vbz ./."));
        Assert.Equal(
            ["det_noun man->the", "verb_subject saw->I", "verb_subject will->he"],
            Pairs("I/ppss saw/vbd the/at man/nn who/wps came/vbd ,/, and/cc he/pps will/md go/vb ./."));

        // A verb, preposition or punctuation between a determiner or adjective and the next noun: no pair.
        Assert.Equal(
            ["verb_subject was->it"],
            Pairs("The/at ,/, old/jj running/vbg it/pps was/bedz ./."));

        // Tag suffixes and negation are dropped; contractions belong to no class; more than Window words: no pair.
        Assert.Equal(
            ["det_noun Times->The", "verb_subject didn't->Times"],
            Pairs("The/at-tl Times/np-tl didn't/dod* go/vb I'm/ppss+bem ./."));
        Assert.Equal(["adj_noun man->old"], Pairs("the/at very/ql very/ql very/ql old/jj man/nn"));
    }

    [Fact]
    public void Tag_bases_and_detokenisation_follow_the_corpus_text()
    {
        Assert.Equal("nn", SyntacticPairs.Base("NN-TL-HL"));
        Assert.Equal("in", SyntacticPairs.Base("fw-in"));
        Assert.Equal("md", SyntacticPairs.Base("md*"));
        Assert.Equal("*", SyntacticPairs.Base("*"));
        var (text, starts) = SyntacticPairs.Detokenize(Sentence("``/`` He's/pps+bez (/( here/rb )/) ,/, John's/np$ dog/nn ''/'' ./."));
        Assert.Equal("\"He's (here), John's dog\".", text);
        Assert.Equal([0, 1, 6, 7, 11, 12, 14, 21, 24, 25], starts);
    }

    [Fact]
    public void Tagged_files_read_sentences_between_blank_lines()
    {
        var sentences = SyntacticPairs.ReadSentences("The\tat\r\ndog\tnn\n\n\nIt\tpps\nran\tvbd\n", "x.tsv");
        Assert.Equal(2, sentences.Count);
        Assert.Equal(new TaggedWord("dog", "nn"), sentences[0][1]);
        Assert.Contains("x.tsv line 1", Assert.Throws<FormatException>(() => SyntacticPairs.ReadSentences("no tab here\n", "x.tsv")).Message, StringComparison.Ordinal);
    }

    // tests/fixtures/syntactic-pairs/sample.tsv: 100 pairs from held-out Brown sentences, each marked by hand.
    [Fact]
    public void Extractor_gives_exactly_the_hand_checked_pairs()
    {
        string path = Path.Combine(TrainingFiles.Fixture("syntactic-pairs"), "sample.tsv");
        var expected = new Dictionary<string, List<string>>();
        var sentences = new Dictionary<string, List<TaggedWord>>();
        string? current = null;
        foreach (string line in File.ReadLines(path).Where(l => l.Length > 0 && !l.StartsWith('#')))
        {
            var f = line.Split('\t');
            if (f[0] == "sentence")
            {
                current = f[1];
                sentences[current] = Sentence(f[2]);
                expected[current] = [];
            }
            else
            {
                Assert.Equal("pair", f[0]);
                Assert.Contains(f[4], new[] { "correct", "incorrect" });
                Assert.False(string.IsNullOrWhiteSpace(f[5]));
                expected[current!].Add($"{f[1]}\t{f[2]}\t{f[3]}");
            }
        }

        Assert.Equal(100, expected.Values.Sum(v => v.Count));
        foreach (var (id, words) in sentences)
        {
            var actual = SyntacticPairs.Extract(words).Select(p => $"{SyntacticPairs.Name(p.Relation)}\t{p.Query}:{words[p.Query].Word}\t{p.Key}:{words[p.Key].Word}");
            Assert.True(expected[id].SequenceEqual(actual), $"{id}: expected\n{string.Join('\n', expected[id])}\ngot\n{string.Join('\n', actual)}");
        }
    }

    // 12 tokens, BOS at 0; links with one- and two-token key words.
    private static TaggedRow Row()
    {
        var ids = Enumerable.Range(0, 12).Select(i => 500 + i).ToArray();
        TaggedLink[] links =
        [
            new(SyntacticRelation.DetNoun, 3, 1, 2),
            new(SyntacticRelation.DetNoun, 9, 6, 8),
            new(SyntacticRelation.AdjNoun, 3, 2, 3),
            new(SyntacticRelation.PrepObject, 11, 10, 11),
            new(SyntacticRelation.VerbSubject, 5, 2, 4),
        ];
        return new TaggedRow(ids, new TokenKind[12], links);
    }

    // probs [heads, stride, stride]: head h puts every query of a relation-h link on its key word (spread over its
    // tokens); other queries attend to themselves.
    private static float[] Following(TaggedRow row, int heads, int stride)
    {
        var p = new float[heads * stride * stride];
        for (int h = 0; h < heads; h++)
        {
            for (int i = 0; i < row.Length; i++)
            {
                p[(h * stride * stride) + (i * stride) + i] = 1;
            }

            foreach (var link in row.Links.Where(l => (int)l.Relation == h))
            {
                int rowStart = (h * stride * stride) + (link.Query * stride);
                Array.Clear(p, rowStart, stride);
                for (int k = link.KeyStart; k < link.KeyEnd; k++)
                {
                    p[rowStart + k] = 1f / (link.KeyEnd - link.KeyStart);
                }
            }
        }

        return p;
    }

    [Theory]
    [InlineData(true, 12)]
    [InlineData(true, 15)]
    [InlineData(false, 12)]
    public void Heads_following_the_pairs_score_one_and_uniform_attention_the_chance_level(bool causal, int stride)
    {
        var row = Row();
        var stats = new AttentionStatistics(1, 4, causal);
        stats.AddTagged(0, Following(row, 4, stride), stride, row);
        stats.AddTaggedChance(row);
        var scores = Enumerable.Range(0, 4).Select(h => stats.Scores(0, h)).ToArray();
        HeadRole[] roles = [HeadRole.DetNoun, HeadRole.AdjNoun, HeadRole.PrepObject, HeadRole.VerbSubject];
        for (int h = 0; h < 4; h++)
        {
            var assigned = CensusThresholds.Assign(scores[h]);
            Assert.Equal(1.0, CensusThresholds.Score(scores[h], roles[h]), 6);
            Assert.Equal(roles[h], assigned & CensusThresholds.SyntacticRoles);
            foreach (var other in roles.Where(r => r != roles[h]))
            {
                Assert.True(CensusThresholds.Score(scores[h], other) < CensusThresholds.Mass);
            }
        }

        // Uniform over the visible keys: the key word's share of them (causal: query + 1 keys; else all 12).
        double Visible(int q) => causal ? q + 1 : 12;
        var chance = stats.Chance();
        Assert.Equal(((1 / Visible(3)) + (2 / Visible(9))) / 2, chance.DetNoun!.Value, 6);
        Assert.Equal(1 / Visible(3), chance.AdjNoun!.Value, 6);
        Assert.Equal(1 / Visible(11), chance.PrepObject!.Value, 6);
        Assert.Equal(2 / Visible(5), chance.VerbSubject!.Value, 6);
        Assert.Equal(HeadRole.None, CensusThresholds.Assign(chance) & CensusThresholds.SyntacticRoles);

        // A head attending uniformly scores the chance level too.
        var uniform = new AttentionStatistics(1, 1, causal);
        var u = new float[stride * stride];
        for (int i = 0; i < 12; i++)
        {
            int visible = causal ? i + 1 : 12;
            u.AsSpan(i * stride, visible).Fill(1f / visible);
        }

        uniform.AddTagged(0, u, stride, row);
        var us = uniform.Scores(0, 0);
        Assert.Equal(chance.DetNoun!.Value, us.DetNoun!.Value, 6);
        Assert.Equal(chance.VerbSubject!.Value, us.VerbSubject!.Value, 6);
    }

    [Fact]
    public void Without_tagged_text_the_syntactic_scores_are_null_and_never_pass()
    {
        var stats = new AttentionStatistics(1, 1, causal: true);
        var s = stats.Scores(0, 0);
        Assert.Null(s.DetNoun);
        Assert.Null(s.VerbSubject);
        Assert.False(CensusThresholds.Measured(s, HeadRole.PrepObject));
        Assert.True(CensusThresholds.Measured(s, HeadRole.Previous));
        Assert.Equal(HeadRole.None, CensusThresholds.Assign(s) & CensusThresholds.SyntacticRoles);
    }

    [Fact]
    public void Tagged_folder_uses_the_last_files_in_name_order()
    {
        string dir = TrainingFiles.TempFolder();
        try
        {
            File.WriteAllText(Path.Combine(dir, "a.tsv"), "The\tat\ndog\tnn\nran\tvbd\n\n");
            File.WriteAllText(Path.Combine(dir, "b.tsv"), "It\tpps\nran\tvbd\n\nGo\tvb\n\n");
            File.WriteAllText(Path.Combine(dir, "c.txt"), "ignored");
            var one = TaggedCorpus.FromDirectory(dir, files: 1);
            Assert.Equal(["b.tsv"], one.Files);
            Assert.Single(one.Sentences);
            Assert.Equal(["a.tsv", "b.tsv"], TaggedCorpus.FromDirectory(dir).Files);
            Assert.Throws<DirectoryNotFoundException>(() => TaggedCorpus.FromDirectory(Path.Combine(dir, "none")));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Census_with_tagged_text_scores_and_writes_the_syntactic_roles()
    {
        using var model = Headlight.Models.Model.Load("minilm", Backends.Require("cpu"));
        var corpus = CensusCorpus.FromTexts("t", ["Hello, world!", "A second text."]);
        var tagged = TaggedCorpus.FromSentences("hand", [Sentence("The/at grand/jj jury/nn reported/vbd on/in the/at budget/nn ./."), Sentence("She/pps looked/vbd into/in the/at city's/nn$ budget/nn ./.")]);
        var plan = CorpusPlan.Build(model, corpus, tagged);
        Assert.Equal(2, plan.Tagged.Count);
        var first = plan.Tagged[0];
        Assert.Equal(["[CLS]", "the", "grand", "jury", "reported", "on", "the", "budget", ".", "[SEP]"], first.Ids.Select(model.Tokenizer!.GetToken));
        Assert.Equal(new TaggedLink(SyntacticRelation.DetNoun, 3, 1, 2), first.Links[0]);
        Assert.All(plan.Tagged.SelectMany(r => r.Links), l => Assert.True(l.KeyStart < l.KeyEnd && l.KeyEnd <= l.Query));

        var options = new CensusOptions { Corpus = corpus.WithRepeats(2, 4, 0), ControlSeeds = [1], Importance = false, Tagged = tagged };
        var result = HeadCensus.Run(model, options);
        var summary = result.Tagged!;
        Assert.Equal((2, plan.Tagged.Sum(r => r.Length), 3, 1, 2, 2), (summary.Sentences, summary.Tokens, summary.DetNoun, summary.AdjNoun, summary.PrepObject, summary.VerbSubject));
        Assert.All(result.Heads, h => Assert.InRange(h.DetNoun!.Value, 0, 1 + 1e-6));
        Assert.NotNull(result.Chance.VerbSubject);
        using var doc = JsonDocument.Parse(CensusJson.Serialize(result));
        var root = doc.RootElement;
        Assert.Equal(3, root.GetProperty("tagged").GetProperty("pairs").GetProperty("det_noun").GetInt32());
        Assert.Equal(JsonValueKind.Number, root.GetProperty("shares").GetProperty("per_role").GetProperty("verb_subject").ValueKind);

        var plain = HeadCensus.Run(model, options with { Tagged = null, ControlSeeds = [] });
        Assert.Null(plain.Tagged);
        using var plainDoc = JsonDocument.Parse(CensusJson.Serialize(plain));
        Assert.Equal(JsonValueKind.Null, plainDoc.RootElement.GetProperty("shares").GetProperty("per_role").GetProperty("det_noun").ValueKind);
    }
}
