using System.Text.Json;
using Headlight.Cli;
using Headlight.Tests.Loading;

namespace Headlight.Tests.Cli;

/// <summary>The headlight command end to end, in process: exit codes, human output and the JSON shapes.</summary>
public sealed class CliTests
{
    private static (int Code, string Output, string Error) Run(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int code = Program.Run(args, output, error);
        return (code, output.ToString(), error.ToString());
    }

    [Fact]
    public void Devices_lists_cpu_as_json()
    {
        var (code, output, _) = Run("devices", "--json");
        Assert.Equal(0, code);
        using var doc = JsonDocument.Parse(output);
        Assert.Contains(doc.RootElement.EnumerateArray(), d => d.GetProperty("name").GetString() == "cpu");
    }

    [Fact]
    public void Embed_two_texts_gives_embeddings_and_a_symmetric_similarity_matrix()
    {
        var (code, output, error) = Run("embed", "--device", "cpu", "--json", "A man is eating food.", "A man is eating a piece of bread.");
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        var embeddings = doc.RootElement.GetProperty("embeddings");
        Assert.Equal(2, embeddings.GetArrayLength());
        Assert.Equal(384, embeddings[0].GetArrayLength());
        var sim = doc.RootElement.GetProperty("similarity");
        Assert.Equal(1.0, sim[0][0].GetDouble(), 1e-5);
        Assert.Equal(sim[0][1].GetDouble(), sim[1][0].GetDouble(), 1e-7);
        Assert.InRange(sim[0][1].GetDouble(), 0.5, 0.95);
    }

    [Fact]
    public void Attend_json_holds_probabilities_layer_head_query_key()
    {
        var (code, output, error) = Run("attend", "--device", "cpu", "--json", "The cat sat on the mat.");
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal([6, 12, 9, 9], doc.RootElement.GetProperty("shape").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        var row = doc.RootElement.GetProperty("probabilities")[5][11][0];
        Assert.Equal(1.0, row.EnumerateArray().Sum(v => v.GetDouble()), 1e-5);
    }

    [Fact]
    public void Attend_human_output_has_one_line_per_head()
    {
        var (code, output, _) = Run("attend", "--device", "cpu", "--ids", "101,7592,2088,102");
        Assert.Equal(0, code);
        Assert.Equal(6 * 12, output.Split('\n').Count(l => l.StartsWith('L')));
    }

    [Fact]
    public void Logits_and_generate_work_on_a_decoder_given_ids()
    {
        string model = LoadingFiles.SharedFixture("gpt2-tiny");
        var (code, output, error) = Run("logits", "--model", model, "--device", "cpu", "--ids", "483,320,350", "--json");
        Assert.True(code == 0, error);
        using var doc = JsonDocument.Parse(output);
        Assert.Equal(3, doc.RootElement.GetProperty("logits").GetArrayLength());
        Assert.Equal(512, doc.RootElement.GetProperty("logits")[0].GetArrayLength());
        var gen = Run("generate", "--model", model, "--device", "cpu", "--ids", "483,320,350", "-n", "4", "--json");
        Assert.Equal(0, gen.Code);
        using var genDoc = JsonDocument.Parse(gen.Output);
        Assert.Equal(4, genDoc.RootElement.GetProperty("generated").GetArrayLength());
    }

    [Theory]
    [InlineData(2, "frobnicate")]
    [InlineData(2, "embed", "--nonsense", "1", "hi")]
    [InlineData(2, "attend", "--device", "cpu")]
    [InlineData(1, "attend", "--device", "tpu", "hi")]
    [InlineData(1, "attend", "--model", "/nonexistent/model", "hi")]
    [InlineData(1, "attend", "--device", "cpu", "--ids", "101,999999,102")]
    [InlineData(2, "logits", "--device", "cpu", "hi")]
    public void Bad_command_lines_fail_with_a_message_and_no_stack_trace(int expectedCode, params string[] args)
    {
        var (code, _, error) = Run(args);
        Assert.Equal(expectedCode, code);
        Assert.StartsWith("headlight: ", error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", error, StringComparison.Ordinal);
    }
}
