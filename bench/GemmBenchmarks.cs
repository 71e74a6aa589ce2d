using System.Globalization;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Filters;
using Google.Protobuf;
using Headlight.Kernels;
using Microsoft.ML.OnnxRuntime;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Headlight.Bench;

/// <summary>
/// <c>c [m, n] = a [m, k] · b [k, n]</c> at 512³ and the products of a BERT-small layer (hidden 384,
/// intermediate 1536; 128 and 1024 tokens), Headlight against its peers in the same run:
/// a Parallel.For of TensorPrimitives dot products (the baseline), and ONNX Runtime's MatMul (MLAS) on a
/// one-node graph, once with b as a constant initializer (ORT packs it once at load, as it does for model
/// weights) and once with b as an input. The peers run on the CPU only; the <c>Device</c> column adds
/// <c>cuda</c> when a CUDA device is present.
/// <code>dotnet run -c Release --project bench -- --filter '*GemmBenchmarks*'</code>
/// </summary>
[Config(typeof(GemmConfig))]
public class GemmBenchmarks
{
    private Device? device;
    private Tensor<float>? a;
    private Tensor<float>? b;
    private Tensor<float>? c;
    private PackedWeight? packedB;
    private float[] hostA = [];
    private float[] hostBt = [];
    private float[] hostC = [];
    private ParallelOptions parallel = new();
    private int m;
    private int k;
    private int n;
    private InferenceSession? ortConstant;
    private InferenceSession? ortInput;
    private OrtValue? ortA;
    private OrtValue? ortB;
    private OrtValue? ortC;
    private RunOptions? runOptions;

    /// <summary>Where Headlight runs: <c>cpu</c>, and <c>cuda</c> when present.</summary>
    [ParamsSource(nameof(Devices))]
    public string Device { get; set; } = "cpu";

    /// <summary>The product, <c>MxKxN</c>.</summary>
    [Params("512x512x512", "128x384x1536", "1024x384x1536", "1024x1536x384", "128x384x384", "1024x384x384", "128x1536x384")]
    public string Shape { get; set; } = "512x512x512";

    /// <summary>The devices this machine has for the <see cref="Device"/> column.</summary>
    public static IEnumerable<string> Devices()
    {
        yield return "cpu";
        if (Kernels.Device.List().Any(d => d.Kind == DeviceKind.Cuda))
        {
            yield return "cuda";
        }

        // PoCL's CPU OpenCL where present (the trixie root of scripts/opencl-root.sh): the ILGPU kernels' speed off a GPU.
        if (Kernels.Device.List().Any(d => d.Kind == DeviceKind.OpenCL))
        {
            yield return "opencl";
        }
    }

    /// <summary>
    /// Allocates and fills the operands. ONNX Runtime is loaded only for its own rows: its idle intra-op
    /// threads spin for a while and would take CPU from the other methods.
    /// </summary>
    [GlobalSetup(Targets = [nameof(Headlight), nameof(HeadlightPackedB), nameof(TensorPrimitivesDot)])]
    public void Setup() => Setup(withOnnxRuntime: false);

    /// <summary>Allocates and fills the operands and builds the ONNX Runtime sessions.</summary>
    [GlobalSetup(Targets = [nameof(OnnxRuntimeConstantB), nameof(OnnxRuntimeInputB)])]
    public void SetupOnnxRuntime() => Setup(withOnnxRuntime: true);

    private void Setup(bool withOnnxRuntime)
    {
        int[] dims = Shape.Split('x').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        (m, k, n) = (dims[0], dims[1], dims[2]);
        var random = new Random(1);
        hostA = Enumerable.Range(0, m * k).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        float[] hostB = Enumerable.Range(0, k * n).Select(_ => (float)(random.NextDouble() - 0.5)).ToArray();
        hostC = new float[m * n];

        device = Kernels.Device.Open(Device);
        a = device.FromHost<float>(hostA, m, k);
        b = device.FromHost<float>(hostB, k, n);
        c = device.Allocate(m, n);
        packedB = Gemm.Prepack(b);
        if (device is not CpuDevice cpu)
        {
            return;
        }

        parallel = cpu.ParallelOptions;
        hostBt = new float[n * k];
        for (int p = 0; p < k; p++)
        {
            for (int j = 0; j < n; j++)
            {
                hostBt[(j * k) + p] = hostB[(p * n) + j];
            }
        }

        if (!withOnnxRuntime)
        {
            return;
        }

        runOptions = new RunOptions();
        ortConstant = new InferenceSession(MatMulModel(m, k, n, hostB));
        ortInput = new InferenceSession(MatMulModel(m, k, n, null));
        ortA = OrtValue.CreateTensorValueFromMemory(hostA, [m, k]);
        ortB = OrtValue.CreateTensorValueFromMemory(hostB, [k, n]);
        ortC = OrtValue.CreateTensorValueFromMemory(hostC, [m, n]);
    }

    /// <summary>Frees everything <see cref="Setup"/> made.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        ortA?.Dispose();
        ortB?.Dispose();
        ortC?.Dispose();
        ortConstant?.Dispose();
        ortInput?.Dispose();
        runOptions?.Dispose();
        packedB?.Dispose();
        a?.Dispose();
        b?.Dispose();
        c?.Dispose();
        device?.Dispose();
    }

    /// <summary>Headlight's GEMM on the device of the <see cref="Device"/> column.</summary>
    [Benchmark]
    public void Headlight()
    {
        Gemm.Forward(a!, b!, c!);
        device!.Synchronize();
    }

    /// <summary>Headlight's GEMM with b packed once beforehand (<see cref="Gemm.Prepack"/>), as model weights are: the peer of <see cref="OnnxRuntimeConstantB"/>.</summary>
    [Benchmark]
    public void HeadlightPackedB()
    {
        Gemm.ForwardPacked(a!, packedB!, c!);
        device!.Synchronize();
    }

    /// <summary>The baseline: rows in parallel, each output a TensorPrimitives dot product with a pre-transposed b.</summary>
    [Benchmark(Baseline = true)]
    public void TensorPrimitivesDot()
    {
        Parallel.For(0, m, parallel, i =>
        {
            var row = hostA.AsSpan(i * k, k);
            var output = hostC.AsSpan(i * n, n);
            for (int j = 0; j < output.Length; j++)
            {
                output[j] = TensorPrimitives.Dot(row, hostBt.AsSpan(j * k, k));
            }
        });
    }

    /// <summary>ONNX Runtime MatMul with b a constant of the graph, as model weights are.</summary>
    [Benchmark]
    public void OnnxRuntimeConstantB()
    {
        ortConstant!.Run(runOptions!, ["a"], [ortA!], ["c"], [ortC!]);
    }

    /// <summary>ONNX Runtime MatMul with b an input, packed on every run.</summary>
    [Benchmark]
    public void OnnxRuntimeInputB()
    {
        ortInput!.Run(runOptions!, ["a", "b"], [ortA!, ortB!], ["c"], [ortC!]);
    }

    /// <summary>
    /// A one-node ONNX model <c>c = MatMul(a, b)</c>, written field by field: <c>b</c> is an initializer when
    /// <paramref name="constantB"/> is given, else a graph input.
    /// </summary>
    internal static byte[] MatMulModel(int m, int k, int n, float[]? constantB)
    {
        byte[] graph = Message(g =>
        {
            // GraphProto: node (1), name (2), initializer (5), input (11), output (12)
            g.WriteTag(1, WireFormat.WireType.LengthDelimited);
            g.WriteBytes(ByteString.CopyFrom(Message(node =>
            {
                // NodeProto: input (1), output (2), op_type (4)
                node.WriteTag(1, WireFormat.WireType.LengthDelimited);
                node.WriteString("a");
                node.WriteTag(1, WireFormat.WireType.LengthDelimited);
                node.WriteString("b");
                node.WriteTag(2, WireFormat.WireType.LengthDelimited);
                node.WriteString("c");
                node.WriteTag(4, WireFormat.WireType.LengthDelimited);
                node.WriteString("MatMul");
            })));
            g.WriteTag(2, WireFormat.WireType.LengthDelimited);
            g.WriteString("gemm");
            if (constantB is not null)
            {
                g.WriteTag(5, WireFormat.WireType.LengthDelimited);
                g.WriteBytes(ByteString.CopyFrom(Message(t =>
                {
                    // TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian floats)
                    t.WriteTag(1, WireFormat.WireType.Varint);
                    t.WriteInt64(k);
                    t.WriteTag(1, WireFormat.WireType.Varint);
                    t.WriteInt64(n);
                    t.WriteTag(2, WireFormat.WireType.Varint);
                    t.WriteInt32(1);
                    t.WriteTag(8, WireFormat.WireType.LengthDelimited);
                    t.WriteString("b");
                    t.WriteTag(9, WireFormat.WireType.LengthDelimited);
                    t.WriteBytes(ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(constantB.AsSpan())));
                })));
            }

            g.WriteTag(11, WireFormat.WireType.LengthDelimited);
            g.WriteBytes(ByteString.CopyFrom(ValueInfo("a", m, k)));
            if (constantB is null)
            {
                g.WriteTag(11, WireFormat.WireType.LengthDelimited);
                g.WriteBytes(ByteString.CopyFrom(ValueInfo("b", k, n)));
            }

            g.WriteTag(12, WireFormat.WireType.LengthDelimited);
            g.WriteBytes(ByteString.CopyFrom(ValueInfo("c", m, n)));
        });

        return Message(model =>
        {
            // ModelProto: ir_version (1), graph (7), opset_import (8) with version (2)
            model.WriteTag(1, WireFormat.WireType.Varint);
            model.WriteInt64(8);
            model.WriteTag(7, WireFormat.WireType.LengthDelimited);
            model.WriteBytes(ByteString.CopyFrom(graph));
            model.WriteTag(8, WireFormat.WireType.LengthDelimited);
            model.WriteBytes(ByteString.CopyFrom(Message(opset =>
            {
                opset.WriteTag(2, WireFormat.WireType.Varint);
                opset.WriteInt64(13);
            })));
        });
    }

    // ValueInfoProto name (1), type (2) -> TypeProto tensor_type (1) -> elem_type (1) FLOAT, shape (2) -> dim (1) -> dim_value (1)
    private static byte[] ValueInfo(string name, int rows, int columns)
    {
        byte[] shape = Message(s =>
        {
            foreach (int d in new[] { rows, columns })
            {
                s.WriteTag(1, WireFormat.WireType.LengthDelimited);
                s.WriteBytes(ByteString.CopyFrom(Message(dim =>
                {
                    dim.WriteTag(1, WireFormat.WireType.Varint);
                    dim.WriteInt64(d);
                })));
            }
        });
        byte[] tensorType = Message(t =>
        {
            t.WriteTag(1, WireFormat.WireType.Varint);
            t.WriteInt32(1);
            t.WriteTag(2, WireFormat.WireType.LengthDelimited);
            t.WriteBytes(ByteString.CopyFrom(shape));
        });
        return Message(v =>
        {
            v.WriteTag(1, WireFormat.WireType.LengthDelimited);
            v.WriteString(name);
            v.WriteTag(2, WireFormat.WireType.LengthDelimited);
            v.WriteBytes(ByteString.CopyFrom(Message(type =>
            {
                type.WriteTag(1, WireFormat.WireType.LengthDelimited);
                type.WriteBytes(ByteString.CopyFrom(tensorType));
            })));
        });
    }

    private static byte[] Message(Action<CodedOutputStream> write)
    {
        using var stream = new MemoryStream();
        using (var output = new CodedOutputStream(stream, leaveOpen: true))
        {
            write(output);
            output.Flush();
        }

        return stream.ToArray();
    }

    /// <summary>Adds the GFLOP/s and allocation columns, and runs the CPU-only peers on the <c>cpu</c> row only.</summary>
    private sealed class GemmConfig : ManualConfig
    {
        public GemmConfig()
        {
            AddColumn(new GflopsColumn());
            AddDiagnoser(MemoryDiagnoser.Default);
            AddFilter(new SimpleFilter(bc =>
                bc.Descriptor.WorkloadMethod.Name is nameof(Headlight) or nameof(HeadlightPackedB)
                || bc.Parameters.Items.Any(p => p.Name == nameof(Device) && (string?)p.Value == "cpu")));
        }
    }
}
