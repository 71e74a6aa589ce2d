using Headlight.Models;
using Headlight.Models.Loading;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Headlight.Tests.Loading;

/// <summary>Both packaged models, extracted once into a temporary cache and imported once for the whole class.</summary>
public sealed class PackagedModelsFixture : IDisposable
{
    private readonly Lazy<BertOnnxImport> miniLM;
    private readonly Lazy<BertOnnxImport> arcticXs;

    public PackagedModelsFixture()
    {
        MiniLMFiles = ModelCatalog.Extract(ModelCatalog.MiniLM, Cache.Path);
        ArcticXsFiles = ModelCatalog.Extract(ModelCatalog.ArcticXs, Cache.Path);
        miniLM = new Lazy<BertOnnxImport>(() => BertOnnxImport.Load(MiniLMFiles.ModelPath));
        arcticXs = new Lazy<BertOnnxImport>(() => BertOnnxImport.Load(ArcticXsFiles.ModelPath));
    }

    public TempFolder Cache { get; } = new();

    internal ExtractedModel MiniLMFiles { get; }

    internal ExtractedModel ArcticXsFiles { get; }

    internal BertOnnxImport MiniLM => miniLM.Value;

    internal BertOnnxImport ArcticXs => arcticXs.Value;

    internal ExtractedModel Files(string name) => name == "minilm" ? MiniLMFiles : ArcticXsFiles;

    internal BertOnnxImport Import(string name) => name == "minilm" ? MiniLM : ArcticXs;

    public void Dispose() => Cache.Dispose();
}

/// <summary>The packaged MiniLM and ArcticXs models: location, extraction, cache reuse, and graph-based import.</summary>
public sealed class PackagedModelTests(PackagedModelsFixture models) : IClassFixture<PackagedModelsFixture>
{
    public static TheoryData<string> Names => new() { "minilm", "arcticxs" };

    [Theory]
    [MemberData(nameof(Names))]
    public void Imports_the_expected_bert_layout(string name)
    {
        var import = models.Import(name);
        var expected = new BertConfig(384, 6, 12, 1536, ActivationFunction.GeluErf, 512, 1e-12, 30522, 2);
        Assert.Equal(expected, import.Config);
        Assert.Contains("Reshape", import.HeadsSource, StringComparison.Ordinal);
        Assert.Empty(import.Unidentified);

        // Validate() already checked every name and shape; check the layouts and sources too.
        BertWeights.Validate(import.Weights, import.Config, requirePooler: name == "minilm");
        for (int i = 0; i < 6; i++)
        {
            foreach (string linear in BertWeights.LayerLinears)
            {
                var w = import.Weights[$"encoder.layer.{i}.{linear}.weight"];
                Assert.Equal(TensorLayout.InOut, w.Layout);
                Assert.NotEqual(w.Name, w.Source);
                Assert.True(import.Graph.Initializers.ContainsKey(w.Source));
            }
        }

        Assert.Equal(6, import.AttentionProbabilities.Count);
        Assert.All(import.AttentionProbabilities, p => Assert.Equal("Softmax", import.Graph.Producer(p)!.OpType));
        Assert.Equal(6, import.AttentionProbabilities.Distinct().Count());
        Assert.Equal("last_hidden_state", import.HiddenStateOutput);
        Assert.Equal(["input_ids", "attention_mask", "token_type_ids"], import.Graph.Inputs);
    }

    [Fact]
    public void MiniLM_has_a_pooler_and_ArcticXs_does_not()
    {
        Assert.Equal("924", models.MiniLM.PoolerOutput);
        Assert.Equal(["last_hidden_state", "924"], models.MiniLM.Outputs);
        Assert.Equal(TensorLayout.OutIn, models.MiniLM.Weights["pooler.dense.weight"].Layout);
        Assert.Equal(5 + (6 * 16) + 2, models.MiniLM.Weights.Count);

        Assert.Null(models.ArcticXs.PoolerOutput);
        Assert.Equal(["last_hidden_state"], models.ArcticXs.Outputs);
        Assert.Equal(5 + (6 * 16), models.ArcticXs.Weights.Count);
    }

    [Fact]
    public void Layers_are_identified_by_their_bias_not_by_order()
    {
        // The matrix feeding encoder.layer.3's query bias is the one whose MatMul output gets that bias.
        var import = models.ArcticXs;
        var w = import.Weights["encoder.layer.3.attention.self.query.weight"];
        var matmul = import.Graph.Nodes.Single(n => n.OpType == "MatMul" && n.Inputs[1] == w.Source);
        var add = Assert.Single(import.Graph.Consumers(matmul.Outputs[0]));
        Assert.Contains("encoder.layer.3.attention.self.query.bias", add.Inputs);
        Assert.Equal(import.Graph.Initializers[w.Source].ToFloat32(), w.Data.ToArray());

        // Each Softmax lies between its own layer's projections.
        for (int i = 0; i < 6; i++)
        {
            var softmax = import.Graph.Producer(import.AttentionProbabilities[i])!;
            var query = import.Graph.Nodes.Single(n => n.OpType == "MatMul" && n.Inputs[1] == import.Weights[$"encoder.layer.{i}.attention.self.query.weight"].Source);
            var output = import.Graph.Nodes.Single(n => n.OpType == "MatMul" && n.Inputs[1] == import.Weights[$"encoder.layer.{i}.attention.output.dense.weight"].Source);
            Assert.InRange(softmax.Index, query.Index, output.Index);
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Extracted_files_are_complete_and_reused(string name)
    {
        var files = models.Files(name);
        Assert.StartsWith(Path.Combine(models.Cache.Path, "models", name, "24.9.52193"), files.Directory, StringComparison.Ordinal);
        string[] vocab = File.ReadAllLines(files.VocabPath);
        Assert.Equal(30522, vocab.Length);
        Assert.Equal(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], vocab.Where(v => v.StartsWith('[') && v.EndsWith(']') && !v.StartsWith("[unused", StringComparison.Ordinal)));
        Assert.Empty(Directory.GetFiles(files.Directory, "*.tmp"));

        var written = File.GetLastWriteTimeUtc(files.ModelPath);
        var again = ModelCatalog.Extract(name, models.Cache.Path);
        Assert.Equal(files, again);
        Assert.Equal(written, File.GetLastWriteTimeUtc(files.ModelPath));
    }

    [Fact]
    public void A_wrong_size_cache_file_is_replaced_and_concurrent_extractions_agree()
    {
        using var cache = new TempFolder();
        string dir = Path.Combine(cache.Path, "models", "arcticxs", "24.9.52193");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "vocab.txt"), "[PAD]\n");

        var results = new ExtractedModel[4];
        Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i => results[i] = ModelCatalog.Extract(ModelCatalog.ArcticXs, cache.Path));

        Assert.All(results, r => Assert.Equal(results[0], r));
        Assert.Equal(new FileInfo(models.ArcticXsFiles.ModelPath).Length, new FileInfo(results[0].ModelPath).Length);
        Assert.Equal(File.ReadAllBytes(models.ArcticXsFiles.VocabPath), File.ReadAllBytes(results[0].VocabPath));
        Assert.Empty(Directory.GetFiles(dir, "*.tmp"));
    }

    [Fact]
    public void Catalog_entries_describe_the_packages()
    {
        Assert.Equal(ModelCatalog.MiniLM, ModelCatalog.Get("MiniLM"));
        Assert.Equal((PoolingMode.Mean, true, true), (ModelCatalog.MiniLM.Pooling, ModelCatalog.MiniLM.Normalize, ModelCatalog.MiniLM.HasPoolerOutput));
        Assert.Equal((PoolingMode.Cls, true, false), (ModelCatalog.ArcticXs.Pooling, ModelCatalog.ArcticXs.Normalize, ModelCatalog.ArcticXs.HasPoolerOutput));
        Assert.All(ModelCatalog.All, m => Assert.Contains("Apache-2.0", m.Licence, StringComparison.Ordinal));
        Assert.Throws<ArgumentException>(() => ModelCatalog.Get("gpt5"));
        Assert.Contains(ModelCatalog.PackageSearchPath(ModelCatalog.MiniLM), s => s.Source == "path recorded at build time");
    }

    [Fact]
    public void A_missing_package_says_where_it_looked_and_what_to_restore()
    {
        var missing = ModelCatalog.MiniLM with { Name = "absent", PackageId = "Headlight.NoSuchPackage", PackageVersion = "0.0.1" };
        var e = Assert.Throws<FileNotFoundException>(() => ModelCatalog.Extract(missing, Path.GetTempPath()));
        Assert.Contains("Headlight.NoSuchPackage 0.0.1", e.Message, StringComparison.Ordinal);
        Assert.Contains("dotnet restore", e.Message, StringComparison.Ordinal);
        Assert.Contains("/opt/nuget/packages", e.Message, StringComparison.Ordinal);
        Assert.Contains(Path.Combine("headlight.nosuchpackage", "0.0.1", "lib", "netstandard2.1", "Headlight.NoSuchPackage.dll"), e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Corrupt_assemblies_are_format_errors()
    {
        using var temp = new TempFolder();
        string assembly = ModelCatalog.LocateAssembly(ModelCatalog.MiniLM);

        string garbage = temp.File("garbage.dll");
        File.WriteAllBytes(garbage, TestData.Uniform(5, 4096).Select(v => (byte)(v * 127)).ToArray());
        Assert.Equal(garbage, Assert.Throws<ModelFormatException>(() => ManifestResources.List(garbage)).FilePath);

        // The headers survive but the resources directory lies past the end.
        string truncated = temp.File("truncated.dll");
        using (var source = File.OpenRead(assembly))
        using (var target = File.Create(truncated))
        {
            var head = new byte[1 << 20];
            source.ReadExactly(head);
            target.Write(head);
        }

        Assert.Equal(truncated, Assert.Throws<ModelFormatException>(() => ManifestResources.List(truncated)).FilePath);
        Assert.Equal(2, ManifestResources.List(assembly).Count(r => r.Name.EndsWith("model.onnx", StringComparison.Ordinal) || r.Name.EndsWith("vocab.txt", StringComparison.Ordinal)));
    }

    [Fact]
    public void Truncated_or_corrupted_real_model_is_a_format_error()
    {
        byte[] bytes = File.ReadAllBytes(models.MiniLMFiles.ModelPath);
        foreach (double fraction in new[] { 0.0001, 0.01, 0.5, 0.999 })
        {
            int cut = (int)(bytes.Length * fraction);
            var e = Assert.Throws<ModelFormatException>(() => OnnxModel.Parse(bytes[..cut], "minilm-truncated.onnx"));
            Assert.Equal("minilm-truncated.onnx", e.FilePath);
        }

        // Random bytes over the graph's structure (the node list comes first): parse and import
        // either succeed or fail with a format error, never anything else.
        var random = new Random(7);
        for (int trial = 0; trial < 3; trial++)
        {
            byte[] corrupted = (byte[])bytes.Clone();
            for (int k = 0; k < 8; k++)
            {
                corrupted[random.Next(64, 200_000)] = (byte)random.Next(256);
            }

            try
            {
                BertOnnxImport.Import(OnnxModel.Parse(corrupted, "minilm-corrupted.onnx"));
            }
            catch (ModelFormatException e)
            {
                Assert.Equal("minilm-corrupted.onnx", e.FilePath);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Names))]
    public void Onnx_runtime_returns_the_reported_capture_points_and_confirms_the_layouts(string name)
    {
        var import = models.Import(name);
        var g = import.Graph;

        // Layer 0's query projection: its input x and its output x·W + b, to check W is [in, out].
        var queryWeight = import.Weights["encoder.layer.0.attention.self.query.weight"];
        var queryMatMul = g.Nodes.Single(n => n.OpType == "MatMul" && n.Inputs[1] == queryWeight.Source);
        string queryInput = queryMatMul.Inputs[0];
        string queryOutput = g.Consumers(queryMatMul.Outputs[0]).Single().Outputs[0];
        var extra = import.AttentionProbabilities.Concat([queryInput, queryOutput]).ToArray();
        byte[] edited = OnnxEdit.AddOutputs(File.ReadAllBytes(models.Files(name).ModelPath), extra);

        // Two rows: "[CLS] hello world [SEP] [PAD] [PAD]" (4 real tokens) and 6 real tokens.
        const int Batch = 2;
        const int Seq = 6;
        long[] ids = [101, 7592, 2088, 102, 0, 0, 101, 7592, 2088, 999, 999, 102];
        long[] mask = [1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1];
        int[] dims = [Batch, Seq];
        using var options = new SessionOptions { IntraOpNumThreads = 1 };
        using var session = new InferenceSession(edited, options);
        using var results = session.Run(
        [
            NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(ids, dims)),
            NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(mask, dims)),
            NamedOnnxValue.CreateFromTensor("token_type_ids", new DenseTensor<long>(new long[Batch * Seq], dims)),
        ]);
        var byName = results.ToDictionary(r => r.Name, r => r.AsTensor<float>());

        foreach (string probs in import.AttentionProbabilities)
        {
            var p = byName[probs];
            Assert.Equal([Batch, 12, Seq, Seq], p.Dimensions.ToArray());
            for (int b = 0; b < Batch; b++)
            {
                for (int h = 0; h < 12; h++)
                {
                    for (int q = 0; q < Seq; q++)
                    {
                        double sum = 0;
                        for (int k = 0; k < Seq; k++)
                        {
                            sum += p[b, h, q, k];
                            if (mask[(b * Seq) + k] == 0)
                            {
                                Assert.Equal(0f, p[b, h, q, k]);
                            }
                        }

                        Assert.InRange(sum, 1 - 1e-5, 1 + 1e-5);
                    }
                }
            }
        }

        // q = x·W + b with W stored [in, out], in float64.
        var x = byName[queryInput];
        var y = byName[queryOutput];
        var w = queryWeight.Data.Span;
        var bias = import.Weights["encoder.layer.0.attention.self.query.bias"].Data.Span;
        for (int row = 0; row < 3; row++)
        {
            for (int o = 0; o < 384; o += 7)
            {
                double expected = bias[o];
                for (int i = 0; i < 384; i++)
                {
                    expected += (double)x[0, row, i] * w[(i * 384) + o];
                }

                Assert.True(Math.Abs(y[0, row, o] - expected) <= 1e-4 * (1 + Math.Abs(expected)), $"q[0, {row}, {o}] = {y[0, row, o]}, expected {expected}");
            }
        }

        if (import.PoolerOutput is { } poolerName)
        {
            // pooler = tanh(W·h[CLS] + b) with W stored [out, in] (Gemm transB = 1).
            var hidden = byName[import.HiddenStateOutput];
            var pooled = byName[poolerName];
            var pw = import.Weights["pooler.dense.weight"].Data.Span;
            var pb = import.Weights["pooler.dense.bias"].Data.Span;
            for (int o = 0; o < 384; o++)
            {
                double z = pb[o];
                for (int i = 0; i < 384; i++)
                {
                    z += (double)pw[(o * 384) + i] * hidden[1, 0, i];
                }

                Assert.True(Math.Abs(pooled[1, o] - Math.Tanh(z)) <= 1e-5, $"pooler[1, {o}] = {pooled[1, o]}, expected {Math.Tanh(z)}");
            }
        }
    }
}
