using Headlight.Kernels;

namespace Headlight.Models.Training;

/// <summary>
/// The gradient of a decoder's next-token cross-entropy with respect to every parameter, for windows of one shape:
/// forward (saving what the backward reads), the loss fused with the LM head (no [tokens, vocab] tensor kept), the
/// backward through every block with weight gradients, and the embedding tables' scatter-adds. Buffers are allocated once.
/// </summary>
internal sealed class DecoderGradient : IDisposable
{
    private static readonly HashSet<string> NoCapture = [];
    private readonly Model model;
    private readonly ForwardState state;
    private readonly Tensor<int> targets;          // [batch·context]
    private readonly Tensor<float> losses;         // [batch·context]
    private readonly Tensor<float> logitBlock;     // [rows per block, vocab] the fused loss's scratch
    private readonly int rows;

    public DecoderGradient(Model model, int batch, int context)
    {
        this.model = model;
        rows = batch * context;
        var device = model.Device;
        Gradients = new ParameterGradients(device, model.Config, model.Weights);
        state = new ForwardState(device, model.Config, batch, context, savesForBackward: true);
        state.KeyMask.Fill(1);
        targets = device.Allocate<int>(rows);
        losses = device.Allocate<float>(rows);
        logitBlock = device.Allocate<float>(Math.Min(rows, 256), model.Config.VocabSize);
    }

    public ParameterGradients Gradients { get; }

    /// <summary>
    /// Adds scale·∂(Σ losses)/∂θ of the windows (<paramref name="inputs"/> [batch·context], next tokens <paramref name="next"/>,
    /// −1 = not counted) to <see cref="Gradients"/> and returns Σ losses (nats). Call under the model's lock.
    /// </summary>
    public double Accumulate(ReadOnlySpan<int> inputs, ReadOnlySpan<int> next, float scale)
    {
        var config = model.Config;
        var weights = model.Weights;
        var backward = state.BackwardBuffers(config);
        state.Ids.CopyFrom(inputs);
        targets.CopyFrom(next);
        TransformerForward.Run(config, weights, state, NoCapture, null);
        CrossEntropy.Run(state.Final!.Reshape(rows, config.Hidden), weights.OutputEmbeddings, targets, losses,
            backward.Seed.Reshape(rows, config.Hidden), Gradients.OutputEmbeddings, scale, logitBlock);
        TransformerBackward.Run(config, weights, state, backward, BackwardRules.Gradient, gates: false, taps: null, weightGrads: Gradients);
        Embedding.ScatterAdd(backward.TokenEmbeds, state.Ids, Gradients.TokenEmbeddings);
        if (Gradients.PositionEmbeddings is { } positions)
        {
            // GPT-2: word and position embeddings are summed, so the position table receives the same signal.
            Embedding.ScatterAdd(backward.TokenEmbeds, state.Positions, positions);
        }

        return Sum(losses);
    }

    /// <summary>Σ losses of the windows without a backward pass. Call under the model's lock.</summary>
    public double Loss(ReadOnlySpan<int> inputs, ReadOnlySpan<int> next)
    {
        state.Ids.CopyFrom(inputs);
        targets.CopyFrom(next);
        TransformerForward.Run(model.Config, model.Weights, state, NoCapture, null);
        CrossEntropy.Run(state.Final!.Reshape(rows, model.Config.Hidden), model.Weights.OutputEmbeddings, targets, losses, null, null, 1f, logitBlock);
        return Sum(losses);
    }

    public void Dispose()
    {
        Gradients.Dispose();
        state.Dispose();
        targets.Dispose();
        losses.Dispose();
        logitBlock.Dispose();
    }

    // In index order, so the sum is the same on every run.
    private static double Sum(Tensor<float> values)
    {
        double total = 0;
        foreach (float v in values.ToArray())
        {
            total += v;
        }

        return total;
    }
}
