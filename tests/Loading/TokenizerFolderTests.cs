using System.Text.Json.Nodes;
using Headlight.Models;
using Headlight.Models.Tokenization;
using Headlight.Tests.Explain;

namespace Headlight.Tests.Loading;

/// <summary>
/// Model folders laid out as the Hub has them: tokenizer.json read (and preferred), cased
/// configurations honoured, special tokens typed in the text given their ids, and bad
/// tokenizer files refused with the file and the JSON path named.
/// </summary>
public sealed class TokenizerFolderTests
{
    // TinyModel.Bert's vocabulary: [PAD] [UNK] [CLS] [SEP] [MASK] w5 … w29.
    private static JsonObject BertJson(bool lowercase)
    {
        var vocab = new JsonObject();
        string[] special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
        for (int i = 0; i < TinyModel.BertVocab; i++)
        {
            vocab[i < special.Length ? special[i] : $"w{i}"] = i;
        }

        var added = new JsonArray();
        for (int i = 0; i < special.Length; i++)
        {
            added.Add(new JsonObject { ["id"] = i, ["content"] = special[i], ["special"] = true, ["normalized"] = false });
        }

        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["normalizer"] = new JsonObject { ["type"] = "BertNormalizer", ["lowercase"] = lowercase, ["strip_accents"] = null },
            ["pre_tokenizer"] = new JsonObject { ["type"] = "BertPreTokenizer" },
            ["post_processor"] = new JsonObject { ["type"] = "BertProcessing", ["sep"] = new JsonArray("[SEP]", 3), ["cls"] = new JsonArray("[CLS]", 2) },
            ["decoder"] = new JsonObject { ["type"] = "WordPiece", ["prefix"] = "##" },
            ["model"] = new JsonObject { ["type"] = "WordPiece", ["unk_token"] = "[UNK]", ["vocab"] = vocab },
        };
    }

    [Fact]
    public void Bert_folder_with_only_tokenizer_json_loads_and_matches_mask_typed_in_text()
    {
        using var tiny = TinyModel.Bert(1, TinyHead.None);
        File.Delete(Path.Combine(tiny.Folder, "vocab.txt"));
        File.WriteAllText(Path.Combine(tiny.Folder, "tokenizer.json"), BertJson(lowercase: false).ToJsonString());
        using var model = Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu"));
        Assert.IsType<HfTokenizer>(model.Tokenizer);
        var batch = model.Tokenize(["w5 [MASK] W6"]);
        Assert.Equal([2, 5, 4, 1, 3], batch.InputIds.ToArray());
        var pair = model.TokenizePair("w5", "w6");
        Assert.Equal([2, 5, 3, 6, 3], pair.InputIds.ToArray());
        Assert.Equal([0, 0, 0, 1, 1], pair.TokenTypeIds.ToArray());
    }

    [Fact]
    public void Tokenizer_json_wins_over_vocab_txt()
    {
        using var tiny = TinyModel.Bert(2, TinyHead.None);
        File.WriteAllText(Path.Combine(tiny.Folder, "tokenizer.json"), BertJson(lowercase: true).ToJsonString());
        using var model = Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu"));
        Assert.IsType<HfTokenizer>(model.Tokenizer);
        Assert.Equal([2, 6, 3], model.Tokenize(["W6"]).InputIds.ToArray());
    }

    [Fact]
    public void Cased_vocab_txt_folder_is_not_lower_cased_and_mask_is_one_token()
    {
        using var tiny = TinyModel.Bert(3, TinyHead.None);
        using (var uncased = Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu")))
        {
            Assert.Equal([2, 5, 5, 4, 3], uncased.Tokenize(["W5 w5 [MASK]"]).InputIds.ToArray());
        }

        File.WriteAllText(Path.Combine(tiny.Folder, "tokenizer_config.json"), """{"do_lower_case": false, "mask_token": {"content": "[MASK]"}}""");
        using var cased = Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu"));
        var tokenizer = Assert.IsType<BertWordPieceTokenizer>(cased.Tokenizer);
        Assert.False(tokenizer.Options.LowerCase);
        var text = tokenizer.Encode("W5 w5 [MASK]");
        Assert.Equal([2, 1, 5, 4, 3], text.Ids.ToArray());
        Assert.Equal("[MASK]", text.Spans[3].Of(text.Text));
    }

    [Fact]
    public void Packaged_bert_gives_mask_typed_in_text_the_mask_id()
    {
        using var model = Headlight.Models.Model.Load("minilm", Backends.Require("cpu"));
        var ids = model.Tokenize(["Paris is the [MASK] of France."]).InputIds.ToArray();
        Assert.Equal(103, ids[4]);
        Assert.Equal(9, ids.Length);
    }

    [Fact]
    public void Gpt2_folder_with_only_tokenizer_json_uses_its_vocabulary()
    {
        using var tiny = TinyModel.Gpt2(4);

        // 40 ids: <|endoftext|>, the letters a–z, Ġ, and merges "Ġ a", "a b", "Ġa b".
        var vocab = new JsonObject { ["<|endoftext|>"] = 0 };
        for (char c = 'a'; c <= 'z'; c++)
        {
            vocab[c.ToString()] = c - 'a' + 1;
        }

        vocab["Ġ"] = 27;
        vocab["Ġa"] = 28;
        vocab["ab"] = 29;
        vocab["Ġab"] = 30;
        var json = new JsonObject
        {
            ["added_tokens"] = new JsonArray(new JsonObject { ["id"] = 0, ["content"] = "<|endoftext|>", ["special"] = true, ["normalized"] = true }),
            ["pre_tokenizer"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true },
            ["post_processor"] = new JsonObject { ["type"] = "ByteLevel", ["trim_offsets"] = true },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel" },
            ["model"] = new JsonObject { ["type"] = "BPE", ["vocab"] = vocab, ["merges"] = new JsonArray("Ġ a", "a b", "Ġa b") },
        };
        File.WriteAllText(Path.Combine(tiny.Folder, "tokenizer.json"), json.ToJsonString());
        using var model = Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu"));
        var tokenizer = Assert.IsType<HfTokenizer>(model.Tokenizer);
        var text = tokenizer.Encode("ab ab<|endoftext|>");
        Assert.Equal([29, 30, 0], text.Ids.ToArray());
        Assert.Equal(new TextSpan(3, 5), text.Spans[1]);
        Assert.Equal("ab ab", tokenizer.Decode(text.Ids.ToArray(), skipSpecialTokens: true));
    }

    [Fact]
    public void Tokenizer_json_with_more_ids_than_the_model_is_refused()
    {
        using var tiny = TinyModel.Bert(5, TinyHead.None);
        var json = BertJson(lowercase: true);
        json["model"]!["vocab"]!["extra"] = TinyModel.BertVocab;
        File.WriteAllText(Path.Combine(tiny.Folder, "tokenizer.json"), json.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => Headlight.Models.Model.Load(tiny.Folder, Backends.Require("cpu")));
        Assert.EndsWith("tokenizer.json", e.FilePath, StringComparison.Ordinal);
        Assert.Equal("model.vocab", e.Field);
    }

    public static TheoryData<string, string, string> BadFiles => new()
    {
        { "unknown normalizer in a sequence", """{"normalizer": {"type": "Sequence", "normalizers": [{"type": "Lowercase"}, {"type": "Foo"}]}}""", "normalizer.normalizers[1].type" },
        { "unknown pre-tokenizer", """{"pre_tokenizer": {"type": "Bar"}}""", "pre_tokenizer.type" },
        { "unknown model", """{"model": {"type": "Unigram", "vocab": {"a": 0}}}""", "model.type" },
        { "unknown post-processor", """{"post_processor": {"type": "Baz"}}""", "post_processor.type" },
        { "byte fallback", """{"model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0}, "merges": []}}""", "model.byte_fallback" },
        { "split behaviour", """{"pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Sideways"}}""", "pre_tokenizer.behavior" },
        { "bad regex", """{"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}}""", "pre_tokenizer.pattern.Regex" },
        { "merge of unknown tokens", """{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}}""", "model.merges[0]" },
        { "id gap", """{"model": {"type": "WordPiece", "unk_token": "a", "vocab": {"a": 0, "b": 5}}}""", "model.vocab[\"b\"]" },
        { "template naming an unknown special", """{"post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "[X]", "type_id": 0}}], "pair": [], "special_tokens": {}}}""", "post_processor.single[0].SpecialToken.id" },
        { "missing model", """{"version": "1.0"}""", "model" },
        { "precompiled normaliser", """{"normalizer": {"type": "Precompiled", "precompiled_charsmap": "AA=="}}""", "normalizer.type" },
        { "flag of the wrong type", """{"normalizer": {"type": "BertNormalizer", "lowercase": "yes"}}""", "normalizer.lowercase" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void Bad_tokenizer_json_names_the_file_and_the_field(string name, string overrides, string field)
    {
        _ = name;
        var json = BertJson(lowercase: true);
        foreach (var (key, value) in JsonNode.Parse(overrides)!.AsObject())
        {
            json[key] = value?.DeepClone();
        }

        if (field == "model")
        {
            json.Remove("model");
        }

        string path = Path.Combine(Directory.CreateTempSubdirectory("headlight-tokenizer").FullName, "tokenizer.json");
        try
        {
            File.WriteAllText(path, json.ToJsonString());
            var e = Assert.Throws<ModelFormatException>(() => HfTokenizer.FromFile(path));
            Assert.Equal(path, e.FilePath);
            Assert.Equal(field, e.Field);
            Assert.Contains(path, e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    [Fact]
    public void Malformed_json_names_the_file()
    {
        string path = Path.Combine(Directory.CreateTempSubdirectory("headlight-tokenizer").FullName, "tokenizer.json");
        try
        {
            File.WriteAllText(path, """{"model": {"type": "BPE", """);
            var e = Assert.Throws<ModelFormatException>(() => HfTokenizer.FromFile(path));
            Assert.Equal(path, e.FilePath);
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }
}
