using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Tokenization;

namespace Headlight.Explain;

/// <summary>
/// Kernel SHAP on a model, one input row at a time: the row's features (words or tokens; special tokens never),
/// coalitions drawn on the model's device, each coalition's masked input built there from the row's ids
/// (<see cref="Coalitions.MaskInputs"/>), all of them run through the forward pass in batches sized to the memory
/// budget, the target read from each batch's last hidden state without a gradient.
/// </summary>
internal static class ShapExplainer
{
    /// <summary>The features of one tokenised text: each token's feature (−1 = never masked) and each feature's tokens.</summary>
    internal sealed record FeatureMap(int[] FeatureOf, FeatureScore[] Features);

    public static (Attribution[] Rows, int Passes) Explain(Model model, TokenBatch inputs, ITarget target, KernelShapOptions options, RunControl control)
    {
        int? replacement = Replacement(model, options);
        var rows = new Attribution[inputs.BatchSize];
        var maps = new FeatureMap[inputs.BatchSize];
        for (int r = 0; r < inputs.BatchSize; r++)
        {
            int length = inputs.Lengths[r];
            maps[r] = Features(inputs.Texts[r], length, options.Features);
            int features = maps[r].Features.Length;
            if (features == 0)
            {
                throw new ArgumentException($"Input row {r} has no features to mask: all its {length} tokens are special tokens.", nameof(inputs));
            }

            // Coalitions expected for progress: the sampled (or every) coalition plus the empty and full ones.
            double coalitions = options.Exact ? CoalitionSet.AllCoalitions(features) : options.Budget ?? KernelShap.DefaultBudget(features);
            control.Expect((long)Math.Min(coalitions, int.MaxValue) + 2);
        }

        int passes = 0;
        for (int r = 0; r < inputs.BatchSize; r++)
        {
            var text = inputs.Texts[r];
            int length = inputs.Lengths[r];
            var map = maps[r];
            int m = map.Features.Length;
            var runner = new Runner(model, inputs, r, target, map.FeatureOf, replacement, options.MemoryBudgetBytes, control);
            var estimate = options.Exact
                ? KernelShap.Exact(m, runner.Evaluate)
                : KernelShap.Estimate(model.Device, m, runner.Evaluate, options.Budget, ((ulong)(uint)r << 32) | (uint)options.Seed, options.Paired);
            passes += runner.Passes;
            rows[r] = ToAttribution(model, text, length, map, estimate);
        }

        return (rows, passes);
    }

    /// <summary>Words (a word's pieces together) or tokens of the first <paramref name="length"/> tokens, in order; special tokens belong to none.</summary>
    internal static FeatureMap Features(TokenizedText text, int length, ShapFeatures kind)
    {
        var featureOf = new int[length];
        var features = new List<FeatureScore>();
        var byWord = new Dictionary<int, int>();
        for (int t = 0; t < length; t++)
        {
            int word = text.WordIndices[t];
            if (word < 0)
            {
                featureOf[t] = -1;
            }
            else if (kind == ShapFeatures.Tokens)
            {
                featureOf[t] = features.Count;
                features.Add(new FeatureScore(text.Tokens[t], t, 1, 0, 0));
            }
            else if (byWord.TryGetValue(word, out int f))
            {
                featureOf[t] = f;
                features[f] = features[f] with { TokenCount = t - features[f].FirstToken + 1 };
            }
            else
            {
                featureOf[t] = byWord[word] = features.Count;
                features.Add(new FeatureScore(text.Words[word].Text, t, 1, 0, 0));
            }
        }

        return new FeatureMap(featureOf, [.. features]);
    }

    private static int? Replacement(Model model, KernelShapOptions options)
    {
        if (options.Masking == ShapMasking.Drop)
        {
            return null;
        }

        int id = options.ReplacementTokenId
            ?? Explainer.ReplacementToken(model)
            ?? throw new ArgumentException($"Model '{model.Name}' has no mask token ([MASK] or <mask> come with a BERT or RoBERTa tokenizer): give a replacement token id, or drop masked words from attention.", nameof(options));
        if ((uint)id >= (uint)model.Config.VocabSize)
        {
            throw new ArgumentOutOfRangeException(nameof(options), id, $"The replacement token id is outside the vocabulary [0, {model.Config.VocabSize}) of model '{model.Name}'.");
        }

        return id;
    }

    // Feature values spread evenly over their tokens; special tokens score 0.
    private static Attribution ToAttribution(Model model, TokenizedText text, int length, FeatureMap map, ShapleyValues estimate)
    {
        var tokenScores = new double[length];
        var features = new FeatureScore[map.Features.Length];
        for (int f = 0; f < features.Length; f++)
        {
            var feature = map.Features[f];
            features[f] = feature with { Score = estimate.Values[f], StandardError = estimate.StandardErrors[f] };
            for (int t = feature.FirstToken; t < feature.FirstToken + feature.TokenCount; t++)
            {
                if (map.FeatureOf[t] == f)
                {
                    tokenScores[t] = estimate.Values[f] / feature.TokenCount;
                }
            }
        }

        var check = new CheckFigure("efficiency gap", estimate.EfficiencyGap, "Σ Shapley values − (F(x) − F(∅)): the fit enforces efficiency, so only rounding remains.");
        return new Attribution(text, tokenScores, [], model.Config.Hidden, estimate.FullValue, estimate.EmptyValue, check, features);
    }

    /// <summary>The value function of one input row: masked inputs on the device, batched forward passes, the target without a gradient.</summary>
    internal sealed class Runner(Model model, TokenBatch inputs, int row, ITarget target, int[] featureOf, int? replacement, long memoryBudget, RunControl control)
    {
        private readonly int seq = inputs.Lengths[row];

        /// <summary>Rows run through the model, padding rows included.</summary>
        public int Passes { get; private set; }

        public void Evaluate(ReadOnlySpan<byte> masks, Span<double> values)
        {
            int count = values.Length;
            int m = masks.Length / count;
            var shape = new PassRequest { Rows = 1, SequenceLength = seq };
            int chunk = PassRunner.BatchRows(model, count, shape, memoryBudget, equalBatches: true);
            int batches = (count + chunk - 1) / chunk;
            var device = model.Device;

            // All coalitions go up once; the last batch is topped up with copies of the last coalition.
            var padded = new byte[batches * chunk * m];
            masks.CopyTo(padded);
            for (int k = count; k < batches * chunk; k++)
            {
                masks.Slice((count - 1) * m, m).CopyTo(padded.AsSpan(k * m, m));
            }

            var ids = inputs.InputIds.Span.Slice(row * inputs.SequenceLength, seq);
            var keys = inputs.AttentionMask.Span.Slice(row * inputs.SequenceLength, seq);
            var rowTypes = inputs.TokenTypeIds.Span.Slice(row * inputs.SequenceLength, seq);
            for (int t = 0; t < seq; t++)
            {
                if ((uint)ids[t] >= (uint)model.Config.VocabSize)
                {
                    throw new ArgumentException($"Token id {ids[t]} at row {row}, position {t} is outside the vocabulary [0, {model.Config.VocabSize}) of model '{model.Name}'.", nameof(inputs));
                }
            }

            // Every coalition takes the input row's token types.
            var types = new int[chunk * seq];
            for (int i = 0; i < types.Length; i++)
            {
                types[i] = rowTypes[i % seq];
            }

            using var allMasks = device.FromHost<byte>(padded, batches * chunk, m);
            using var features = device.FromHost<int>(featureOf, seq);
            using var baseIds = device.FromHost<int>(ids, seq);
            using var baseKeys = device.FromHost<int>(keys, seq);
            var hostKeys = new int[chunk * seq];
            var inputRows = new int[chunk];
            Array.Fill(inputRows, row);
            var lengths = new int[chunk];
            Array.Fill(lengths, seq);
            var batchValues = new double[chunk];
            var results = new double[count];

            PassRequest Build(int start, int used, int rows)
            {
                var batchMasks = allMasks.Slice((long)start * m, chunk, m);
                return shape with
                {
                    Rows = rows,
                    TokenTypeIds = types,
                    WriteInputs = (maskedIds, maskedKeys) => Coalitions.MaskInputs(batchMasks, features, baseIds, baseKeys, maskedIds, maskedKeys, replacement),
                };
            }

            void Use(ModelPass pass, int start, int used)
            {
                // Targets pool over the key mask on the host: dropped tokens are left out like padding.
                pass.AttentionMask.CopyTo(hostKeys);
                batchValues.AsSpan().Fill(double.NaN);
                target.Evaluate(new TargetContext(model, pass.LastHiddenState, chunk, seq, hostKeys, inputRows, lengths, null, batchValues));
            }

            void Done(int start, int used)
            {
                for (int r = 0; r < used; r++)
                {
                    if (!double.IsFinite(batchValues[r]))
                    {
                        throw new InvalidOperationException(
                            $"Explaining '{target.Description}' on model '{model.Name}': the value ({batchValues[r]}) of input row {row} with coalition {start + r} is not finite.");
                    }

                    results[start + r] = batchValues[r];
                }
            }

            Passes += PassRunner.Run(model, count, shape, memoryBudget, equalBatches: true, control, Build, Use, Done);
            results.CopyTo(values);
        }
    }
}
