using Headlight.Models;
using Headlight.Tests.Loading;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Model;

/// <summary>
/// Decoder folders written by <see cref="RandomDecoderFolder"/>: a Pythia-160M-shaped one (with the buffers real Pythia files
/// carry) loads with Pythia-160M's exact parameter count and generates the same tokens with and without the key–value
/// cache; tiny Llama, Qwen2 and GPT-NeoX folders stored as sharded BF16 or F16 give bit for bit the logits of the same
/// rounded values stored as one F32 file.
/// </summary>
public sealed class RandomDecoderFolderTests
{
    public static TheoryData<string, string> TypesAndDtypes
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (string type in new[] { "llama", "qwen2", "gpt_neox" })
            {
                data.Add(type, "BF16");
                data.Add(type, "F16");
            }

            return data;
        }
    }

    [Fact]
    public void A_pythia_160m_sized_folder_loads_with_the_exact_parameter_count_and_generates_the_same_with_the_cache()
    {
        using var folder = new TempFolder();
        var config = RandomDecoderFolder.Pythia160M();
        Assert.Equal(RandomDecoderFolder.Pythia160MParameters, RandomDecoderFolder.Parameters(config));
        RandomDecoderFolder.Write(folder.Path, config, seed: 160, dtype: "F16");
        using var model = HeadlightModel.Load(folder.Path, Backends.Require("cpu"));
        Assert.Equal(ModelFamily.GptNeoXDecoder, model.Config.Family);
        Assert.Equal(162_322_944, model.Config.ParameterCount); // Pythia-160M's count (untied embed_out)

        int[] prompt = [11, 4000, 27, 50000, 3];
        var logits = model.Forward(model.FromIds([prompt])).Logits!;
        Assert.Equal(prompt.Length * 50304L, logits.Length);
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));

        var cached = model.Generate(prompt, new GenerationOptions { MaxNewTokens = 3, StopAtEndOfSequence = false });
        var uncached = model.Generate(prompt, new GenerationOptions { MaxNewTokens = 3, StopAtEndOfSequence = false, UseKeyValueCache = false });
        Assert.Equal(3, cached.Tokens.Count);
        Assert.Equal(uncached.Tokens, cached.Tokens);
    }

    [Theory]
    [MemberData(nameof(TypesAndDtypes))]
    public void Sharded_half_precision_folders_give_the_logits_of_the_rounded_values_in_float32(string modelType, string dtype)
    {
        using var half = new TempFolder();
        using var single = new TempFolder();
        var config = RandomDecoderFolder.Tiny(modelType);
        RandomDecoderFolder.Write(half.Path, config, seed: 5, dtype: dtype, shards: 3);
        RandomDecoderFolder.Write(single.Path, config, seed: 5, dtype: "F32", roundTo: dtype);
        Assert.True(File.Exists(Path.Combine(half.Path, "model.safetensors.index.json")));
        Assert.Equal(3, Directory.GetFiles(half.Path, "model-*-of-00003.safetensors").Length);

        var device = Backends.Require("cpu");
        using var a = HeadlightModel.Load(half.Path, device);
        using var b = HeadlightModel.Load(single.Path, device);
        Assert.Equal(RandomDecoderFolder.Parameters(config), a.Config.ParameterCount);
        int[] ids = [2, 17, 40, 95, 3, 60, 8];
        var fromHalf = a.Forward(a.FromIds([ids])).Logits!;
        var fromSingle = b.Forward(b.FromIds([ids])).Logits!;
        Assert.All(fromHalf, v => Assert.True(float.IsFinite(v)));
        Assert.True(fromHalf.AsSpan().SequenceEqual(fromSingle), $"{modelType} {dtype}: logits differ from the F32 copy of the rounded weights");

        // And the rounding mattered: full-precision weights give other logits.
        using var full = new TempFolder();
        RandomDecoderFolder.Write(full.Path, config, seed: 5);
        using var c = HeadlightModel.Load(full.Path, device);
        Assert.False(c.Forward(c.FromIds([ids])).Logits!.AsSpan().SequenceEqual(fromHalf), "rounding to half precision left the logits unchanged");
    }
}
