using System.Text.Json;
using Headlight.Cli;
using Headlight.Tests.Loading;
using Headlight.Tests.Model;

namespace Headlight.Tests.Cli;

/// <summary>
/// Every command on a tiny random GPT-NeoX, Llama and Qwen2 folder with a byte-level tokenizer (<see cref="TinyDecoder"/>), on
/// the cpu backend: logits, generate (greedy, sampled, explained step), attend, explain with every method and the HTML report,
/// the head census and the faithfulness benchmark with next-token targets.
/// </summary>
public sealed class DecoderFamilyCliTests
{
    private const string Prompt = "the cat sat on the mat";

    public static TheoryData<TinyFamily> Families => new(TinyDecoder.All);

    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = Program.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    private static string Ok(params string[] args)
    {
        var (code, output, error) = Run(args);
        Assert.True(code == 0, $"headlight {string.Join(' ', args)} exited {code}: {error}\n{output}");
        return output;
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Logits_generate_and_attend_run(TinyFamily family)
    {
        using var tiny = TinyDecoder.Create(family, 8100 + (int)family);
        string m = tiny.Folder;
        using (var doc = JsonDocument.Parse(Ok("logits", "--model", m, "--device", "cpu", "--json", Prompt)))
        {
            Assert.Equal(TinyDecoder.Vocab, doc.RootElement.GetProperty("logits")[0].GetArrayLength());
        }

        using (var doc = JsonDocument.Parse(Ok("generate", "--model", m, "--device", "cpu", "--json", "-n", "5", "--no-stop", Prompt)))
        {
            Assert.Equal(5, doc.RootElement.GetProperty("generated").GetArrayLength());
        }

        string attend = Ok("attend", "--model", m, "--device", "cpu", Prompt);
        Assert.Contains("L1", attend, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Generate_samples_reproducibly_matches_the_uncached_path_and_explains_a_step(TinyFamily family)
    {
        using var tiny = TinyDecoder.Create(family, 8500 + (int)family);
        string[] common = ["generate", "--model", tiny.Folder, "--device", "cpu", "--json", "--max-new-tokens", "6", "--no-stop"];
        int[] Tokens(params string[] extra)
        {
            using var doc = JsonDocument.Parse(Ok([.. common, .. extra, Prompt]));
            return doc.RootElement.GetProperty("generated").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        }

        string[] sampled = ["--temperature", "1.3", "--top-k", "40", "--top-p", "0.9", "--seed", "5"];
        var a = Tokens(sampled);
        Assert.Equal(6, a.Length);
        Assert.Equal(a, Tokens(sampled));
        Assert.Equal(a, Tokens([.. sampled, "--no-cache"]));
        Assert.Equal(Tokens(), Tokens("--top-k", "1", "--temperature", "2"));

        // Step 3 explained: the target is the logit of generated token 3 after the prompt and tokens 0..2.
        string human = Ok("generate", "--model", tiny.Folder, "--device", "cpu", "-n", "4", "--no-stop", "--explain-step", "3", "--method", "gradxinput,lrp", Prompt);
        Assert.Contains("step 3 chose", human, StringComparison.Ordinal);
        Assert.Contains("conservation gap", human, StringComparison.Ordinal);
        using (var doc = JsonDocument.Parse(Ok([.. common, "--explain-step", "2", "--method", "shap", "--seed", "1", Prompt])))
        {
            var explained = doc.RootElement.GetProperty("explained");
            var generated = doc.RootElement.GetProperty("generated");
            Assert.Equal(generated[2].GetInt32(), explained.GetProperty("token").GetInt32());
            int promptLength = doc.RootElement.GetProperty("prompt").GetArrayLength();
            Assert.Equal(promptLength + 2, explained.GetProperty("methods")[0].GetProperty("scores").GetArrayLength());
        }

        Assert.Equal(2, Run("generate", "--model", tiny.Folder, "--device", "cpu", "-n", "2", "--explain-step", "2", Prompt).Code);
        Assert.Equal(2, Run("generate", "--model", tiny.Folder, "--device", "cpu", "--top-p", "0", Prompt).Code);
        Assert.Equal(2, Run("generate", "--model", tiny.Folder, "--device", "cpu", "--method", "lrp", Prompt).Code);
        Assert.Equal(2, Run("generate", "--model", tiny.Folder, "--device", "cpu", "--temperature", "hot", Prompt).Code);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Explain_runs_every_method_and_writes_the_report(TinyFamily family)
    {
        using var tiny = TinyDecoder.Create(family, 8200 + (int)family);
        using var temp = new TempFolder();
        string html = Path.Combine(temp.Path, "report.html");
        string methods = "ig,saliency,gradxinput,smoothgrad,shap,lrp,cp-lrp,rollout,gradattn";
        string output = Ok("explain", "--model", tiny.Folder, "--device", "cpu", "--target", "next:top", "--method", methods, "--samples", "2", "--steps", "8", "--html", html, Prompt);
        Assert.Contains("conservation gap", output, StringComparison.Ordinal);
        Assert.Contains("<html", File.ReadAllText(html), StringComparison.OrdinalIgnoreCase);

        // The defaults (ig, lrp, shap, rollout) with no target: the decoder's next-token default.
        Ok("explain", "--model", tiny.Folder, "--device", "cpu", Prompt);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Heads_census_states_the_grouped_query_layout(TinyFamily family)
    {
        using var tiny = TinyDecoder.Create(family, 8300 + (int)family);
        string output = Ok("heads", "--model", tiny.Folder, "--device", "cpu", "--controls", "1", "--repeats", "4", "--repeat-length", "6", "--ablation-texts", "2");
        if (family == TinyFamily.NeoX)
        {
            Assert.DoesNotContain("kv head", output, StringComparison.Ordinal);
        }
        else
        {
            Assert.Contains("uses kv head", output, StringComparison.Ordinal);
        }
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Faithfulness_runs_with_next_token_targets(TinyFamily family)
    {
        using var tiny = TinyDecoder.Create(family, 8400 + (int)family);
        using var temp = new TempFolder();
        string corpus = Path.Combine(temp.Path, "corpus.txt");
        File.WriteAllLines(corpus, ["the cat sat on the mat", "a bird in the hand is worth two"]);
        foreach (string removal in new[] { "mask", "remove" })
        {
            using var doc = JsonDocument.Parse(Ok("faithfulness", "--model", tiny.Folder, "--device", "cpu", "--json", "--corpus", corpus, "--target", "next:top",
                "--method", "gradxinput,lrp,shap", "--random", "1", "--removal", removal));
            Assert.Equal(JsonValueKind.Object, doc.RootElement.ValueKind);
        }
    }
}
