using Headlight.Models;
using Headlight.Models.Loading;

namespace Headlight.Tests.Loading;

/// <summary>The ONNX wire-format reader and the graph-based BERT import, on graphs built in the test.</summary>
public sealed class OnnxReaderTests
{
    private const string Source = "synthetic.onnx";

    [Fact]
    public void Synthetic_bert_is_identified_from_the_graph()
    {
        var model = new SyntheticBert(layers: 2);
        var import = BertOnnxImport.Import(OnnxModel.Parse(model.Bytes, Source));

        var c = import.Config;
        Assert.Equal((SyntheticBert.Hidden, 2, SyntheticBert.Heads, SyntheticBert.Intermediate), (c.HiddenSize, c.Layers, c.Heads, c.IntermediateSize));
        Assert.Equal((SyntheticBert.Vocab, SyntheticBert.Positions, SyntheticBert.Types), (c.VocabSize, c.MaxPositions, c.TypeVocabSize));
        Assert.Equal(1e-5, c.LayerNormEps);
        Assert.Equal(ActivationFunction.GeluErf, c.Activation);
        Assert.Contains("Reshape", import.HeadsSource, StringComparison.Ordinal);
        Assert.Contains("scale", import.HeadsSource, StringComparison.Ordinal);
        Assert.Equal(["l0_probs", "l1_probs"], import.AttentionProbabilities);
        Assert.Equal("last_hidden_state", import.HiddenStateOutput);
        Assert.Null(import.PoolerOutput);
        Assert.Empty(import.Unidentified);

        // 5 embedding tensors + 16 per layer; the int64 position ids are not weights.
        Assert.Equal(5 + (16 * 2), import.Weights.Count);
        foreach (string name in import.Weights.Names)
        {
            var w = import.Weights[name];
            Assert.Equal(model.Values[w.Source], w.Data.ToArray());
        }

        var up = import.Weights["encoder.layer.1.intermediate.dense.weight"];
        Assert.Equal((TensorLayout.OutIn, "onnx::Gemm_510"), (up.Layout, up.Source));
        Assert.Equal([SyntheticBert.Intermediate, SyntheticBert.Hidden], up.Shape);
        var query = import.Weights["encoder.layer.0.attention.self.query.weight"];
        Assert.Equal((TensorLayout.InOut, "onnx::MatMul_500"), (query.Layout, query.Source));
        Assert.Equal(TensorLayout.None, import.Weights["embeddings.word_embeddings.weight"].Layout);
    }

    [Theory]
    [InlineData(3f)]
    [InlineData(0f)]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(0.5f * 1.00001f)]
    public void A_score_scale_other_than_one_over_sqrt_head_dim_is_refused_naming_the_file_and_node(float scale)
    {
        // headDim 4: the kernels scale by 1/2; a graph that asks for anything else would silently run with 1/2.
        var graph = OnnxModel.Parse(new SyntheticBert(layers: 2, scoreScale: scale).Bytes, Source);
        var e = LoadingFiles.ThrowsFormat(() => BertOnnxImport.Import(graph), Source, "Mul node");
        Assert.Contains("l0_scaled", e.Field, StringComparison.Ordinal);
        Assert.Contains("1/sqrt(4)", e.Expected, StringComparison.Ordinal);
        Assert.Contains(((double)scale).ToString("R", System.Globalization.CultureInfo.InvariantCulture), e.Found, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(3f)]
    [InlineData(0f)]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    public void Minilm_with_its_score_scale_constant_edited_is_refused_naming_the_file_and_the_node(float value)
    {
        // MiniLM's heads have 32 dimensions: its graph scales scores by Div 5.656854 (or Mul 0.1767767).
        var files = TestModels.Files("minilm");
        byte[] bytes = File.ReadAllBytes(files.ModelPath);
        var graph = OnnxModel.Parse(bytes, files.ModelPath);
        var scales = graph.Nodes
            .Where(n => n.OpType is "Div" or "Mul" && n.Inputs.Count == 2)
            .Select(n => (Node: n, Value: graph.ConstantValue(n.Inputs[1])?.ScalarValue()))
            .Where(s => s.Value is double c && (Math.Abs(c - Math.Sqrt(32)) < 1e-5 || Math.Abs(c - (1 / Math.Sqrt(32))) < 1e-6))
            .ToList();
        Assert.NotEmpty(scales);
        byte[] constant = BitConverter.GetBytes((float)scales[0].Value!.Value);
        byte[] replacement = BitConverter.GetBytes(value);
        int replaced = 0;
        for (int i = bytes.AsSpan().IndexOf(constant); i >= 0; i = bytes.AsSpan(i + 4).IndexOf(constant) is int next and >= 0 ? i + 4 + next : -1)
        {
            replacement.CopyTo(bytes, i);
            replaced++;
        }

        Assert.InRange(replaced, 1, 12);
        string folder = Directory.CreateTempSubdirectory("headlight-score-scale-").FullName;
        try
        {
            string path = Path.Combine(folder, "model.onnx");
            File.WriteAllBytes(path, bytes);
            var e = Assert.Throws<ModelFormatException>(() => Headlight.Models.Model.Load(path, Backends.Require("cpu")));
            Assert.Equal(path, e.FilePath);
            Assert.Contains($"{scales[0].Node.OpType} node '", e.Field, StringComparison.Ordinal);
            Assert.Contains("1/sqrt(32)", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void The_score_scale_one_over_sqrt_head_dim_is_accepted_within_a_millionth()
    {
        var graph = OnnxModel.Parse(new SyntheticBert(layers: 1, scoreScale: 0.5f * 1.0000002f).Bytes, Source);
        Assert.Equal(SyntheticBert.Heads, BertOnnxImport.Import(graph).Config.Heads);
    }

    [Fact]
    public void Heads_come_from_the_hint_only_when_the_graph_is_silent()
    {
        var silent = OnnxModel.Parse(new SyntheticBert(layers: 1, stateHeads: false).Bytes, Source);
        LoadingFiles.ThrowsFormat(() => BertOnnxImport.Import(silent), Source, "attention heads");
        var hinted = BertOnnxImport.Import(silent, headsHint: 4);
        Assert.Equal(4, hinted.Config.Heads);
        Assert.Contains("hint", hinted.HeadsSource, StringComparison.Ordinal);

        var stated = OnnxModel.Parse(new SyntheticBert(layers: 1).Bytes, Source);
        LoadingFiles.ThrowsFormat(() => BertOnnxImport.Import(stated, headsHint: 4), Source, "attention heads");
        Assert.Equal(2, BertOnnxImport.Import(stated, headsHint: 2).Config.Heads);
    }

    [Fact]
    public void Graph_index_and_tensor_encodings()
    {
        var graph = OnnxModel.Parse(new SyntheticBert(layers: 1).Bytes, Source);
        Assert.Equal("headlight-tests", graph.ProducerName);
        Assert.Equal(17, graph.Opsets[string.Empty]);
        Assert.Equal(["input_ids", "attention_mask_f", "token_type_ids"], graph.Inputs);
        Assert.Equal("Softmax", graph.Producer("l0_probs")!.OpType);
        Assert.Equal(["MatMul"], graph.Consumers("l0_probs").Select(n => n.OpType));
        Assert.Equal([0L, 0, 2, 4], graph.ConstantValue("split_shape")!.ToInt64());
        Assert.Equal(-10000.0, graph.ConstantValue("mask_fill")!.ScalarValue());
        Assert.Equal([0L, 1, 2, 3, 4, 5], graph.Initializers["position_ids"].ToInt64());
        Assert.Equal(1e-5f, graph.Nodes.First(n => n.OpType == "LayerNormalization").Attribute("epsilon")!.Float);
        Assert.Equal([0L, 2, 1, 3], graph.Producer("l0_qt")!.Attribute("perm")!.Ints);

        // Packed float_data and raw_data both read back exactly.
        var weights = new SyntheticBert(layers: 1).Values;
        Assert.Equal(weights["embeddings.LayerNorm.weight"], graph.Initializers["embeddings.LayerNorm.weight"].ToFloat32());
        Assert.Equal(weights["embeddings.LayerNorm.bias"], graph.Initializers["embeddings.LayerNorm.bias"].ToFloat32());
    }

    [Fact]
    public void Extra_outputs_are_added_without_touching_the_rest()
    {
        byte[] bytes = new SyntheticBert(layers: 2).Bytes;
        byte[] edited = OnnxEdit.AddOutputs(bytes, ["l0_probs", "l1_probs"]);
        var before = OnnxModel.Parse(bytes, Source);
        var after = OnnxModel.Parse(edited, Source);
        Assert.Equal(["last_hidden_state", "l0_probs", "l1_probs"], after.Outputs);
        Assert.Equal(before.Nodes.Select(n => n.ToString()), after.Nodes.Select(n => n.ToString()));
        Assert.Equal(before.Initializers.Keys, after.Initializers.Keys);
        Assert.Equal(before.Opsets, after.Opsets);
        Assert.Equal(bytes.Length + (2 * 12), edited.Length);

        LoadingFiles.ThrowsFormat(() => OnnxEdit.AddOutputs(new Proto().Varint(1, 8).ToArray(), ["x"], Source), Source, "graph");
        LoadingFiles.ThrowsFormat(() => OnnxEdit.AddOutputs(bytes[..(bytes.Length / 2)], ["x"], Source), Source, "ModelProto");
    }

    [Fact]
    public void Unknown_fields_of_every_wire_type_are_skipped()
    {
        static Proto Junk(Proto p) => p.Varint(1000, -5).Float(1001, 2f).Bytes(1002, [1, 2, 3]).Message(1003, new Proto().Varint(1, 1))
            .Fixed64(1004, 42).Group(1005, new Proto().Varint(1, 7).String(2, "inside a group"));

        var tensor = Junk(Onnx.RawFloat("w", [2], [1.5f, -2f]));
        var node = Junk(Onnx.Node("Relu", ["x"], ["y"], Junk(Onnx.IntAttribute("k", 3))));
        var graph = Junk(new Proto().Message(1, node).Message(5, tensor).Message(11, Junk(Onnx.Value("x"))).Message(12, Onnx.Value("y")));
        var bytes = Junk(new Proto()).Message(7, graph).ToArray();

        var model = OnnxModel.Parse(bytes, Source);
        Assert.Equal([1.5f, -2f], model.Initializers["w"].ToFloat32());
        Assert.Equal(3, model.Nodes[0].Attribute("k")!.Int);
        Assert.Equal(["x"], model.Inputs);
        Assert.Equal(["y"], model.Outputs);
    }

    [Fact]
    public void Unpacked_and_typed_payloads_are_read()
    {
        var unpacked = new Proto().Varint(1, 3).Varint(2, 1).Float(4, 1f).Float(4, 2f).Float(4, 3f).String(8, "f");
        var int32 = new Proto().Varint(1, 2).Varint(2, 6).PackedVarints(5, -7, 9).String(8, "i");
        var half = new Proto().Varint(1, 2).Varint(2, 10).PackedVarints(5, 0x3C00, 0xC100).String(8, "h");
        var doubles = new Proto().Varint(1, 1).Varint(2, 11).Bytes(10, BitConverter.GetBytes(0.25)).String(8, "d");
        var graph = new Proto().Message(5, unpacked).Message(5, int32).Message(5, half).Message(5, doubles);
        var model = OnnxModel.Parse(new Proto().Message(7, graph).ToArray(), Source);
        Assert.Equal([1f, 2f, 3f], model.Initializers["f"].ToFloat32());
        Assert.Equal([-7L, 9], model.Initializers["i"].ToInt64());
        Assert.Equal([1f, -2.5f], model.Initializers["h"].ToFloat32());
        Assert.Equal([0.25f], model.Initializers["d"].ToFloat32());
        LoadingFiles.ThrowsFormat(() => model.Initializers["i"].ToFloat32(), Source, "data_type");
        LoadingFiles.ThrowsFormat(() => model.Initializers["f"].ToInt64(), Source, "data_type");
    }

    public static TheoryData<string, byte[], string> MalformedTensors => new()
    {
        { "negative dims", Tensor(new Proto().Varint(1, -2).Varint(2, 1).String(8, "t")), "initializer[0] 't'" },
        { "raw length mismatch", Tensor(new Proto().Varint(1, 3).Varint(2, 1).String(8, "t").Bytes(9, new byte[8])), "'t'" },
        { "dims overflow", Tensor(new Proto().Varint(1, 1L << 40).Varint(1, 1L << 40).Varint(2, 1).String(8, "t").Bytes(9, new byte[4])), "'t'" },
        { "bytes overflow", Tensor(new Proto().Varint(1, 1L << 62).Varint(2, 7).String(8, "t")), "'t'" },
        { "string tensor", Tensor(new Proto().Varint(1, 1).Varint(2, 8).Bytes(6, [65]).String(8, "t")), "'t'" },
        { "unknown data type", Tensor(new Proto().Varint(1, 1).Varint(2, 99).String(8, "t").Bytes(9, new byte[4])), "'t'" },
        { "undefined data type", Tensor(new Proto().Varint(1, 1).String(8, "t").Bytes(9, new byte[4])), "'t'" },
        { "external data", Tensor(new Proto().Varint(1, 1).Varint(2, 1).String(8, "t").Message(13, new Proto().String(1, "location").String(2, "w.bin")).Varint(14, 1)), "'t'" },
        { "external location", Tensor(new Proto().Varint(1, 1).Varint(2, 1).String(8, "t").Varint(14, 1)), "'t'" },
        { "raw and typed", Tensor(new Proto().Varint(1, 1).Varint(2, 1).String(8, "t").Bytes(9, new byte[4]).Float(4, 1f)), "'t'" },
        { "typed count mismatch", Tensor(new Proto().Varint(1, 3).Varint(2, 1).String(8, "t").Float(4, 1f)), "'t'" },
        { "typed field for the wrong type", Tensor(new Proto().Varint(1, 1).Varint(2, 1).String(8, "t").Varint(7, 1)), "'t'" },
        { "no data", Tensor(new Proto().Varint(1, 2).Varint(2, 1).String(8, "t")), "'t'" },
        { "packed floats not a multiple of 4", Tensor(new Proto().Varint(1, 1).Varint(2, 1).String(8, "t").Bytes(4, new byte[5])), "'t'" },
        { "name with the wrong wire type", Tensor(new Proto().Varint(1, 1).Varint(2, 1).Varint(8, 3)), "initializer[0]" },
        { "segment", Tensor(new Proto().Varint(1, 1).Varint(2, 1).String(8, "t").Message(3, new Proto().Varint(1, 0))), "'t'" },
        { "duplicate initializer", new Proto().Message(7, new Proto().Message(5, Onnx.RawFloat("t", [1], [1f])).Message(5, Onnx.RawFloat("t", [1], [2f]))).ToArray(), "graph" },
        { "node without op_type", new Proto().Message(7, new Proto().Message(1, new Proto().String(1, "x"))).ToArray(), "node[0]" },
        { "no graph", new Proto().Varint(1, 8).ToArray(), "ModelProto" },
        { "empty file", [], "ModelProto" },
        { "two graphs", new Proto().Message(7, new Proto()).Message(7, new Proto()).ToArray(), "ModelProto" },
        { "truncated graph", new Proto().Message(7, new Proto().Message(5, Onnx.RawFloat("t", [4], [1, 2, 3, 4]))).ToArray()[..20], "ModelProto" },
        { "end group without start", [0x0C], "ModelProto" },
        { "invalid wire type", [0x0F], "ModelProto" },
        { "field number zero", [0x00, 0x01], "ModelProto" },
        { "overlong varint", [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], "ModelProto" },
        { "length past the end", [0x3A, 0xFF, 0xFF, 0xFF, 0xFF, 0x07], "ModelProto" },
        { "negative length", [0x3A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F], "ModelProto" },
    };

    [Theory]
    [MemberData(nameof(MalformedTensors))]
    public void Malformed_models_name_file_and_field(string name, byte[] bytes, string field)
    {
        _ = name;
        LoadingFiles.ThrowsFormat(() => OnnxModel.Parse(bytes, Source), Source, field);
    }

    [Fact]
    public void Fuzzed_synthetic_models_parse_or_fail_with_format_errors()
    {
        byte[] bytes = new SyntheticBert(layers: 1).Bytes;
        var random = new Random(20240601);
        int formatErrors = 0;
        int parsed = 0;

        // Truncations at random points, and random 1-4 bit flips; each case under a time limit.
        for (int i = 0; i < 300; i++)
        {
            int cut = random.Next(bytes.Length);
            Classify(bytes[..cut], $"truncated at {cut}", ref formatErrors, ref parsed);
        }

        for (int i = 0; i < 300; i++)
        {
            byte[] flipped = (byte[])bytes.Clone();
            int flips = random.Next(1, 5);
            var where = new List<int>();
            for (int f = 0; f < flips; f++)
            {
                int bit = random.Next(bytes.Length * 8);
                flipped[bit / 8] ^= (byte)(1 << (bit % 8));
                where.Add(bit);
            }

            Classify(flipped, $"bits {string.Join(",", where)} flipped", ref formatErrors, ref parsed);
        }

        Assert.True(formatErrors > 300, $"Only {formatErrors} of 600 corrupted models were rejected ({parsed} parsed).");
    }

    private static void Classify(byte[] bytes, string what, ref int formatErrors, ref int parsed)
    {
        var task = Task.Run(() =>
        {
            // Reading every tensor and importing must fail only with ModelFormatException too.
            var model = OnnxModel.Parse(bytes, Source);
            foreach (var t in model.Initializers.Values)
            {
                _ = t.IsFloatingPoint ? t.ToFloat32().Length : t.ToInt64().Length;
            }

            _ = BertOnnxImport.Import(model);
        });

        bool finished = Task.WhenAny(task, Task.Delay(TimeSpan.FromSeconds(10))).Result == task;
        Assert.True(finished, $"Parsing the model {what} took over 10 s.");
        if (task.IsFaulted)
        {
            var e = task.Exception!.InnerException!;
            Assert.True(e is ModelFormatException, $"The model {what} threw {e.GetType().Name}: {e}");
            Assert.Equal(Source, ((ModelFormatException)e).FilePath);
            formatErrors++;
        }
        else
        {
            parsed++;
        }
    }

    private static byte[] Tensor(Proto tensor) => new Proto().Message(7, new Proto().Message(5, tensor)).ToArray();
}
