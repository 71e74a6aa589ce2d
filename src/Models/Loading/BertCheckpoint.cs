namespace Headlight.Models.Loading;

/// <summary>A BERT checkpoint loaded from a Hugging Face folder.</summary>
/// <param name="Folder">The folder.</param>
/// <param name="Config">The validated configuration.</param>
/// <param name="Weights">Weights under canonical names; linear layers [out, in] (<see cref="TensorLayout.OutIn"/>).</param>
/// <param name="VocabPath"><c>vocab.txt</c>, or null when the folder has none.</param>
/// <param name="SentenceEmbedding">Pooling and normalisation when the folder is a sentence-transformers model (has <c>modules.json</c>).</param>
internal sealed record BertCheckpoint(string Folder, BertConfig Config, WeightSet Weights, string? VocabPath, SentenceEmbeddingConfig? SentenceEmbedding);
