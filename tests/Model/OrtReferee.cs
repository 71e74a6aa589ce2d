using System.Collections.Concurrent;
using Headlight.Models.Loading;
using Headlight.Models.Tokenization;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Headlight.Tests.Model;

/// <summary>What ONNX Runtime computes for one batch: the graph's outputs plus every layer's Softmax (attention probabilities).</summary>
/// <param name="Hidden">last_hidden_state [batch, seq, d].</param>
/// <param name="Pooler">The pooler output [batch, d], when the graph has one.</param>
/// <param name="Probabilities">Per layer [batch, head, query, key].</param>
public sealed record OrtOutputs(float[] Hidden, float[]? Pooler, float[][] Probabilities);

/// <summary>
/// ONNX Runtime 1.31.1 running the same ONNX file as the referee for the encoder. The Softmax output
/// of every layer is added to the graph's outputs so ORT also returns attention probabilities.
/// One session per model per test run.
/// </summary>
public static class OrtReferee
{
    private static readonly ConcurrentDictionary<string, Lazy<(InferenceSession Session, BertOnnxImport Import)>> Sessions = new(StringComparer.Ordinal);

    /// <summary>Runs ORT on <paramref name="batch"/> for catalogue model <paramref name="model"/>.</summary>
    public static OrtOutputs Run(string model, TokenBatch batch)
    {
        var (session, import) = Sessions.GetOrAdd(model, m => new Lazy<(InferenceSession, BertOnnxImport)>(() => Open(m))).Value;
        int b = batch.BatchSize;
        int t = batch.SequenceLength;
        int[] dims = [b, t];
        long[] Widen(ReadOnlySpan<int> v) => v.ToArray().Select(x => (long)x).ToArray();
        var inputs = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(Widen(batch.InputIds.Span), dims)),
            NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(Widen(batch.AttentionMask.Span), dims)),
            NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor<long>(Widen(batch.TokenTypeIds.Span), dims)),
        };
        lock (session)
        {
            using var results = session.Run(inputs);
            var byName = results.ToDictionary(r => r.Name, r => r.AsTensor<float>().ToArray());
            return new OrtOutputs(
                byName[import.HiddenStateOutput],
                import.PoolerOutput is null ? null : byName[import.PoolerOutput],
                import.AttentionProbabilities.Select(p => byName[p]).ToArray());
        }
    }

    private static (InferenceSession, BertOnnxImport) Open(string model)
    {
        string path = TestModels.Files(model).ModelPath;
        var import = BertOnnxImport.Load(path);
        byte[] edited = OnnxEdit.AddOutputs(File.ReadAllBytes(path), import.AttentionProbabilities);
        var options = new SessionOptions { IntraOpNumThreads = 2 };
        return (new InferenceSession(edited, options), import);
    }
}
