using Headlight.Models.Tokenization;

namespace Headlight.Models;

/// <summary>What one forward pass hands back, copied to the host. Arrays are row-major with the shapes given.</summary>
public sealed class ForwardResult
{
    internal ForwardResult(
        int batchSize, int sequenceLength, int hidden, TokenBatch batch, float[] lastHiddenState, float[]? pooler,
        float[]? classLogits, float[]? logits, float[][]? sentenceEmbeddings, ActivationCache activations)
    {
        BatchSize = batchSize;
        SequenceLength = sequenceLength;
        Hidden = hidden;
        Batch = batch;
        LastHiddenState = lastHiddenState;
        Pooler = pooler;
        ClassLogits = classLogits;
        Logits = logits;
        SentenceEmbeddings = sentenceEmbeddings;
        Activations = activations;
    }

    /// <summary>Rows in the batch.</summary>
    public int BatchSize { get; }

    /// <summary>Tokens per row (padded).</summary>
    public int SequenceLength { get; }

    /// <summary>Width of the hidden state, d.</summary>
    public int Hidden { get; }

    /// <summary>The input batch.</summary>
    public TokenBatch Batch { get; }

    /// <summary>The last hidden state [batch, seq, d] (after GPT-2's final LayerNorm).</summary>
    public float[] LastHiddenState { get; }

    /// <summary>BERT's pooler output tanh(W·h[CLS] + b) [batch, d], when the model has a pooler.</summary>
    public float[]? Pooler { get; }

    /// <summary>Sequence-classification logits [batch, labels], when the model has a classifier.</summary>
    public float[]? ClassLogits { get; }

    /// <summary>Next-token logits [batch, seq, vocab], for decoders.</summary>
    public float[]? Logits { get; }

    /// <summary>Sentence embeddings [batch][d], for models that define one.</summary>
    public float[][]? SentenceEmbeddings { get; }

    /// <summary>The activations that were asked for.</summary>
    public ActivationCache Activations { get; }

    /// <summary>
    /// Pools the last hidden state over each row's real tokens as sentence-transformers defines <paramref name="mode"/>
    /// ([batch][d]), L2-normalised when <paramref name="normalize"/> is set: a sentence embedding for a model folder that
    /// defines none, or another pooling than the folder's.
    /// </summary>
    public float[][] Pool(Loading.PoolingMode mode, bool normalize)
        => SentencePooling.Pool(LastHiddenState, Batch.AttentionMask.Span, BatchSize, SequenceLength, Hidden, mode, normalize);
}

/// <summary>One candidate next token.</summary>
/// <param name="Id">Its id.</param>
/// <param name="Token">Its text (or <c>#id</c> without a tokenizer).</param>
/// <param name="Logit">Its logit.</param>
/// <param name="Probability">Its softmax probability over the vocabulary.</param>
public sealed record TokenPrediction(int Id, string Token, float Logit, float Probability);
