namespace Headlight.Models.Loading;

/// <summary>A model shipped inside a NuGet package's assembly as manifest resources.</summary>
/// <param name="Name">Headlight's short name, e.g. <c>minilm</c>.</param>
/// <param name="PackageId">The NuGet package id.</param>
/// <param name="PackageVersion">The package version the files were checked against.</param>
/// <param name="ModelResourceSuffix">How the ONNX model's resource name ends.</param>
/// <param name="VocabResourceSuffix">How the WordPiece vocabulary's resource name ends.</param>
/// <param name="Pooling">How token vectors become the sentence embedding.</param>
/// <param name="Normalize">Whether the sentence embedding is L2-normalised.</param>
/// <param name="HasPoolerOutput">Whether the graph also outputs BERT's pooler (tanh of a dense layer on [CLS]).</param>
/// <param name="SourceModel">The original checkpoint the graph was exported from.</param>
/// <param name="Licence">Licences of the weights and of the package.</param>
/// <param name="MaxSequenceLength">The source model's sentence-transformers <c>max_seq_length</c>: texts are cut to this many tokens, special tokens included.</param>
internal sealed record PackagedModel(
    string Name,
    string PackageId,
    string PackageVersion,
    string ModelResourceSuffix,
    string VocabResourceSuffix,
    PoolingMode Pooling,
    bool Normalize,
    bool HasPoolerOutput,
    string SourceModel,
    string Licence,
    int MaxSequenceLength)
{
    /// <summary>The assembly file inside the package, relative to the package's folder.</summary>
    public string AssemblyRelativePath => Path.Combine("lib", "netstandard2.1", PackageId + ".dll");
}
