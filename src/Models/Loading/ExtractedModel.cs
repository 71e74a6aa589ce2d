namespace Headlight.Models.Loading;

/// <summary>The files of a packaged model after extraction to the cache.</summary>
/// <param name="Model">The catalogue entry.</param>
/// <param name="Directory">The cache folder holding the files.</param>
/// <param name="ModelPath">The ONNX model.</param>
/// <param name="VocabPath">The WordPiece vocabulary (<c>vocab.txt</c>).</param>
internal sealed record ExtractedModel(PackagedModel Model, string Directory, string ModelPath, string VocabPath);
