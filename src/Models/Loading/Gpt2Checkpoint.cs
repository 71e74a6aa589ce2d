namespace Headlight.Models.Loading;

/// <summary>A GPT-2 checkpoint loaded from a Hugging Face folder.</summary>
/// <param name="Folder">The folder.</param>
/// <param name="Config">The validated configuration.</param>
/// <param name="Weights">Weights under canonical names (no <c>transformer.</c> prefix); Conv1D matrices [in, out] (<see cref="TensorLayout.InOut"/>).</param>
/// <param name="VocabJsonPath"><c>vocab.json</c>, or null when the folder has none.</param>
/// <param name="MergesPath"><c>merges.txt</c>, or null when the folder has none.</param>
internal sealed record Gpt2Checkpoint(string Folder, Gpt2Config Config, WeightSet Weights, string? VocabJsonPath, string? MergesPath);
