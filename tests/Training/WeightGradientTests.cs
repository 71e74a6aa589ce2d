using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Loading;
using Headlight.Models.Training;
using Xunit.Abstractions;

namespace Headlight.Tests.Training;

/// <summary>
/// The training gradient of every parameter against central finite differences of an independent float64 decoder
/// (<see cref="ReferenceDecoder"/>): for each stored tensor, a random direction u in its Hugging Face layout, ⟨∇θ, u⟩ from the
/// device (u brought to the device layout by the same loader) against (L(θ + hu) − L(θ − hu)) / 2h in float64, relative to
/// the larger of the two and the gradient's norm over that tensor.
/// </summary>
public sealed class WeightGradientTests(ITestOutputHelper output)
{
    public const double Tolerance = 1e-4;

    public static TheoryData<string, string> Cases
    {
        get
        {
            var data = new TheoryData<string, string>();
            foreach (string family in new[] { "llama", "qwen2", "gpt_neox", "gpt2" })
            {
                data.Add(family, "cpu");
                data.Add(family, "ilgpu-cpu");
            }

            return data;
        }
    }

    public static TheoryData<string> Families => new() { "llama", "qwen2", "gpt_neox", "gpt2" };

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Every_parameter_gradient_matches_float64_finite_differences(string family, string backend) => Check(family, backend);

    [SkippableTheory]
    [MemberData(nameof(Families))]
    [Trait("Category", "OpenCL")]
    public void OpenCL_parameter_gradients_match_float64_finite_differences(string family) => Check(family, "opencl");

    private void Check(string family, string backend)
    {
        var device = Backends.Require(backend);
        var tiny = TinyDecoder.Make(family, seed: 5);
        using var model = Headlight.Models.Model.FromWeights(family, tiny.Config, tiny.Set(), null, device);
        int t = 5, batch = 2;
        var random = new Random(17);
        var inputs = Enumerable.Range(0, batch * t).Select(_ => random.Next(tiny.Config.VocabSize)).ToArray();
        var targets = Enumerable.Range(0, batch * t).Select(i => i % 4 == 3 ? -1 : random.Next(tiny.Config.VocabSize)).ToArray();
        int counted = targets.Count(x => x >= 0);
        using var pass = new DecoderGradient(model, batch, t);
        double loss;
        lock (model.Gate)
        {
            loss = pass.Accumulate(inputs, targets, 1f / counted) / counted;
        }

        var reference = tiny.Reference();
        var weights = tiny.Weights.ToDictionary(kv => kv.Key, kv => kv.Value.Select(v => (double)v).ToArray());
        double referenceLoss = reference.Loss(weights, inputs, targets, t);
        Assert.True(Math.Abs(loss - referenceLoss) <= 1e-5 * Math.Abs(referenceLoss), $"{family} on {backend}: loss {loss} vs float64 {referenceLoss}.");

        var gradients = pass.Gradients.Parameters.Select(p => p.Gradient.ToArray()).ToArray();
        double worst = 0;
        foreach (string name in tiny.Weights.Keys)
        {
            // u on this tensor only, through the loader into the device layout; zeros everywhere else.
            var direction = new Dictionary<string, float[]>();
            foreach (var (other, values) in tiny.Weights)
            {
                direction[other] = other == name ? values.Select(_ => (float)Normal(random)).ToArray() : new float[values.Length];
            }

            using var directionModel = Headlight.Models.Model.FromWeights("direction", tiny.Config, tiny.Set(direction), null, device);
            using var directionParameters = new ParameterGradients(device, tiny.Config, directionModel.Weights);
            double analytic = 0;
            double norm = 0;    // ‖∇‖ over this tensor's entries (where u lands), the typical size of ⟨∇, u⟩ for u ~ N(0, I)
            for (int p = 0; p < gradients.Length; p++)
            {
                var u = directionParameters.Parameters[p].Weight.ToArray();
                for (int i = 0; i < u.Length; i++)
                {
                    analytic += gradients[p][i] * (double)u[i];
                    norm += u[i] != 0 ? (double)gradients[p][i] * gradients[p][i] : 0;
                }
            }

            norm = Math.Sqrt(norm);

            const double h = 1e-5;
            var plus = Shifted(weights, name, direction[name], h);
            var minus = Shifted(weights, name, direction[name], -h);
            double numeric = (reference.Loss(plus, inputs, targets, t) - reference.Loss(minus, inputs, targets, t)) / (2 * h);
            // Relative to the directional derivative, or to the gradient's norm when the random direction happens to be nearly
            // orthogonal to it (a small ⟨∇, u⟩ would otherwise turn float32 rounding into a large ratio).
            double error = Math.Abs(analytic - numeric) / Math.Max(Math.Max(Math.Abs(numeric), norm), 1e-6);
            worst = Math.Max(worst, error);
            output.WriteLine($"{family} {backend} {name}: analytic {analytic:E6} numeric {numeric:E6} ‖∇‖ {norm:E3} relative error {error:E2}");
            Assert.True(error <= Tolerance, $"{family} on {backend}, {name}: ⟨∇, u⟩ = {analytic:E6}, finite differences {numeric:E6} (relative error {error:E2}).");
        }

        output.WriteLine($"{family} {backend}: worst relative error {worst:E2} over {tiny.Weights.Count} tensors");
    }

    private static Dictionary<string, double[]> Shifted(Dictionary<string, double[]> weights, string name, float[] direction, double h)
    {
        var result = new Dictionary<string, double[]>(weights);
        result[name] = weights[name].Select((v, i) => v + (h * direction[i])).ToArray();
        return result;
    }

    private static double Normal(Random random) => Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}

/// <summary>A tiny random decoder of one family: its config, its weights under Hugging Face names, and the matching float64 reference.</summary>
public sealed class TinyDecoder
{
    private TinyDecoder(string family, ModelConfig config, Dictionary<string, float[]> weights, Dictionary<string, int[]> shapes, Dictionary<string, TensorLayout> layouts)
    {
        Family = family;
        Config = config;
        Weights = weights;
        Shapes = shapes;
        Layouts = layouts;
    }

    public string Family { get; }

    public ModelConfig Config { get; }

    public Dictionary<string, float[]> Weights { get; }

    public Dictionary<string, int[]> Shapes { get; }

    public Dictionary<string, TensorLayout> Layouts { get; }

    /// <summary>Odd sizes: hidden 24, 6 heads of 4 (llama, qwen2: 2 kv heads), NeoX rotary 2 of 4; vocab 19; 2 layers.</summary>
    public static TinyDecoder Make(string family, int seed)
    {
        const int d = 24, heads = 6, vocab = 19, inner = 20, positions = 16, layers = 2;
        int kv = family is "llama" or "qwen2" ? 2 : heads;
        int hd = d / heads;
        var random = new Random(seed);
        var weights = new Dictionary<string, float[]>();
        var shapes = new Dictionary<string, int[]>();
        var layouts = new Dictionary<string, TensorLayout>();
        void Add(string name, int[] shape, double std, double mean = 0, TensorLayout layout = TensorLayout.None)
        {
            int n = shape.Aggregate(1, (a, b) => a * b);
            weights[name] = Enumerable.Range(0, n).Select(_ => (float)(mean + (std * Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble())))).ToArray();
            shapes[name] = shape;
            layouts[name] = layout;
        }

        double s = 0.35;
        ModelConfig config;
        switch (family)
        {
            case "gpt2":
                Add("wte.weight", [vocab, d], 0.5);
                Add("wpe.weight", [positions, d], 0.2);
                for (int l = 0; l < layers; l++)
                {
                    string p = $"h.{l}.";
                    Add(p + "ln_1.weight", [d], 0.1, 1);
                    Add(p + "ln_1.bias", [d], 0.1);
                    Add(p + "attn.c_attn.weight", [d, 3 * d], s, layout: TensorLayout.InOut);
                    Add(p + "attn.c_attn.bias", [3 * d], 0.1);
                    Add(p + "attn.c_proj.weight", [d, d], s, layout: TensorLayout.InOut);
                    Add(p + "attn.c_proj.bias", [d], 0.1);
                    Add(p + "ln_2.weight", [d], 0.1, 1);
                    Add(p + "ln_2.bias", [d], 0.1);
                    Add(p + "mlp.c_fc.weight", [d, inner], s, layout: TensorLayout.InOut);
                    Add(p + "mlp.c_fc.bias", [inner], 0.1);
                    Add(p + "mlp.c_proj.weight", [inner, d], s, layout: TensorLayout.InOut);
                    Add(p + "mlp.c_proj.bias", [d], 0.1);
                }

                Add("ln_f.weight", [d], 0.1, 1);
                Add("ln_f.bias", [d], 0.1);
                config = Base(ModelFamily.Gpt2Decoder) with { Activation = GeluForm.Tanh };
                break;
            case "gpt_neox":
                Add("gpt_neox.embed_in.weight", [vocab, d], 0.5);
                for (int l = 0; l < layers; l++)
                {
                    string p = $"gpt_neox.layers.{l}.";
                    Add(p + "input_layernorm.weight", [d], 0.1, 1);
                    Add(p + "input_layernorm.bias", [d], 0.1);
                    Add(p + "post_attention_layernorm.weight", [d], 0.1, 1);
                    Add(p + "post_attention_layernorm.bias", [d], 0.1);
                    Add(p + "attention.query_key_value.weight", [3 * d, d], s, layout: TensorLayout.OutIn);
                    Add(p + "attention.query_key_value.bias", [3 * d], 0.1);
                    Add(p + "attention.dense.weight", [d, d], s, layout: TensorLayout.OutIn);
                    Add(p + "attention.dense.bias", [d], 0.1);
                    Add(p + "mlp.dense_h_to_4h.weight", [inner, d], s, layout: TensorLayout.OutIn);
                    Add(p + "mlp.dense_h_to_4h.bias", [inner], 0.1);
                    Add(p + "mlp.dense_4h_to_h.weight", [d, inner], s, layout: TensorLayout.OutIn);
                    Add(p + "mlp.dense_4h_to_h.bias", [d], 0.1);
                }

                Add("gpt_neox.final_layer_norm.weight", [d], 0.1, 1);
                Add("gpt_neox.final_layer_norm.bias", [d], 0.1);
                Add("embed_out.weight", [vocab, d], 0.5);
                config = Base(ModelFamily.GptNeoXDecoder) with { RotaryDims = 2, ParallelResidual = true, HasUntiedHead = true };
                break;
            default:
                bool qwen = family == "qwen2";
                Add("model.embed_tokens.weight", [vocab, d], 0.5);
                for (int l = 0; l < layers; l++)
                {
                    string p = $"model.layers.{l}.";
                    Add(p + "input_layernorm.weight", [d], 0.1, 1);
                    Add(p + "post_attention_layernorm.weight", [d], 0.1, 1);
                    Add(p + "self_attn.q_proj.weight", [heads * hd, d], s, layout: TensorLayout.OutIn);
                    Add(p + "self_attn.k_proj.weight", [kv * hd, d], s, layout: TensorLayout.OutIn);
                    Add(p + "self_attn.v_proj.weight", [kv * hd, d], s, layout: TensorLayout.OutIn);
                    if (qwen)
                    {
                        Add(p + "self_attn.q_proj.bias", [heads * hd], 0.1);
                        Add(p + "self_attn.k_proj.bias", [kv * hd], 0.1);
                        Add(p + "self_attn.v_proj.bias", [kv * hd], 0.1);
                    }

                    Add(p + "self_attn.o_proj.weight", [d, heads * hd], s, layout: TensorLayout.OutIn);
                    Add(p + "mlp.gate_proj.weight", [inner, d], s, layout: TensorLayout.OutIn);
                    Add(p + "mlp.up_proj.weight", [inner, d], s, layout: TensorLayout.OutIn);
                    Add(p + "mlp.down_proj.weight", [d, inner], s, layout: TensorLayout.OutIn);
                }

                Add("model.norm.weight", [d], 0.1, 1);
                if (!qwen)
                {
                    Add("lm_head.weight", [vocab, d], 0.5);
                }

                config = Base(qwen ? ModelFamily.Qwen2Decoder : ModelFamily.LlamaDecoder) with
                {
                    KvHeads = kv, Norm = NormKind.RmsNorm, Mlp = MlpKind.SwiGlu, RotaryDims = hd, RopeTheta = 1000,
                    HasQkvBias = qwen, HasOutputBias = false, HasMlpBias = false, HasUntiedHead = !qwen,
                };
                break;
        }

        return new TinyDecoder(family, config, weights, shapes, layouts);

        ModelConfig Base(ModelFamily f) => new()
        {
            Family = f, Layers = layers, Hidden = d, Heads = heads, Intermediate = inner, VocabSize = vocab, MaxPositions = positions,
            LayerNormEpsilon = 1e-5f, Activation = GeluForm.Erf, RopeTheta = 10000,
        };
    }

    /// <summary>The float64 reference with this model's shape.</summary>
    public ReferenceDecoder Reference() => new(Family, Config.Layers, Config.Hidden, Config.Heads, Config.KeyValueHeads, Config.RotaryDims, Config.RopeTheta,
        Config.LayerNormEpsilon, tied: !Config.HasUntiedHead);

    /// <summary>A weight set of these names, shapes and layouts holding <paramref name="values"/> (the model's own weights when null).</summary>
    public WeightSet Set(Dictionary<string, float[]>? values = null)
    {
        var set = new WeightSet(Family + " (random)");
        foreach (var (name, data) in values ?? Weights)
        {
            set.Add(new Weight(name, Shapes[name], data, Layouts[name], name));
        }

        return set;
    }
}
