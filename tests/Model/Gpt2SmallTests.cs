using Headlight.Models;
using Headlight.Tests.Loading;
using HeadlightModel = Headlight.Models.Model;

namespace Headlight.Tests.Model;

/// <summary>
/// A random model of GPT-2 small's size (12 layers, 768 wide, 12 heads, 50,257 tokens, 1,024 positions), written
/// here as a Hugging Face folder: it loads, counts GPT-2 small's 124,439,808 parameters, and runs a causal
/// forward pass on 128 tokens with finite logits.
/// </summary>
public sealed class Gpt2SmallTests : IDisposable
{
    private const int Layers = RandomGpt2Folder.Layers, Hidden = RandomGpt2Folder.Hidden, Heads = RandomGpt2Folder.Heads, Vocab = RandomGpt2Folder.Vocab, Positions = RandomGpt2Folder.Positions;
    private readonly TempFolder folder = new();

    public Gpt2SmallTests() => RandomGpt2Folder.Write(folder.Path, seed: 124);

    public void Dispose() => folder.Dispose();

    [Fact]
    public void A_gpt2_small_sized_random_model_loads_and_runs_128_tokens_causally()
    {
        using var model = HeadlightModel.Load(folder.Path, Backends.Require("cpu"));
        Assert.Equal(ModelFamily.Gpt2Decoder, model.Config.Family);
        Assert.Equal((Layers, Hidden, Heads, Vocab, Positions, 4 * Hidden), (model.Config.Layers, model.Config.Hidden, model.Config.Heads, model.Config.VocabSize, model.Config.MaxPositions, model.Config.Intermediate));
        Assert.Equal(124_439_808, model.Config.ParameterCount); // GPT-2 small's published count (tied output embedding)

        var random = new Random(7);
        var ids = Enumerable.Range(0, 128).Select(_ => random.Next(Vocab)).ToArray();
        var logits = model.Forward(model.FromIds([ids])).Logits!.ToArray();
        Assert.Equal(128L * Vocab, logits.Length);
        Assert.All(logits, v => Assert.True(float.IsFinite(v)));

        // A different last token changes only the last position's logits, bit for bit.
        ids[^1] = (ids[^1] + 1) % Vocab;
        var changed = model.Forward(model.FromIds([ids])).Logits!.ToArray();
        long before = 127L * Vocab;
        Assert.True(logits.AsSpan(0, (int)before).SequenceEqual(changed.AsSpan(0, (int)before)), "a later token changed earlier positions' logits");
        Assert.False(logits.AsSpan((int)before).SequenceEqual(changed.AsSpan((int)before)), "the last position's logits did not change");
    }
}
