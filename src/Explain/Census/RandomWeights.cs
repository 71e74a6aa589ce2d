using Headlight.Kernels;
using Headlight.Models;
using Headlight.Models.Loading;

namespace Headlight.Explain.Census;

/// <summary>
/// Random-weight controls: a model of the same configuration and tokenizer, with weights drawn as the
/// original initialisations draw them — every matrix and embedding table N(0, 0.02²), LayerNorm γ = 1 and
/// β = 0, biases 0; for GPT-2 the two residual projections (attn.c_proj, mlp.c_proj) use 0.02/√(2·layers),
/// as GPT-2's initialisation scales them. Fully determined by the seed.
/// </summary>
internal static class RandomWeights
{
    public const double Std = 0.02;

    // Large tensors are drawn in chunks, each from its own seeded generator, so chunks can run on the CPU
    // device's workers and the values do not depend on how they were scheduled.
    private const int Chunk = 1 << 20;

    /// <summary>A random-weight twin of <paramref name="model"/> on the same device.</summary>
    public static Model Control(Model model, int seed)
    {
        ArgumentNullException.ThrowIfNull(model);
        var weights = Draw(model.Config, seed, model.Device.Backend.HostWorkers);
        return Model.FromWeights($"{model.Name} (random weights, seed {seed})", model.Config, weights, model.Tokenizer, model.Device);
    }

    /// <summary>
    /// The weights of a random model of <paramref name="config"/>, in Hugging Face names; the chunks of
    /// large tensors run on <paramref name="workers"/> when given, else on the calling thread (same values).
    /// </summary>
    public static unsafe WeightSet Draw(ModelConfig config, int seed, CpuWorkers? workers = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        var specs = config.Family switch
        {
            ModelFamily.BertEncoder => Bert(config),
            ModelFamily.Gpt2Decoder => Gpt2(config),
            _ => RotaryDecoder(config),
        };
        var set = new WeightSet($"random-init(seed {seed})");
        var data = new float[specs.Count][];
        for (int i = 0; i < specs.Count; i++)
        {
            var spec = specs[i];
            long count = spec.Shape.Aggregate(1L, (a, b) => a * b);
            data[i] = new float[count];
            if (spec.Fill is Fill.One)
            {
                Array.Fill(data[i], 1f);
            }
            else if (spec.Fill is Fill.Normal && count > 0)
            {
                fixed (float* values = data[i])
                {
                    var job = new NormalJob { Values = values, Length = data[i].Length, Seed = seed, Tensor = i, Std = spec.Std };
                    int chunks = (int)((count + Chunk - 1) / Chunk);
                    if (workers is not null)
                    {
                        workers.Run(ref job, chunks);
                    }
                    else
                    {
                        for (int c = 0; c < chunks; c++)
                        {
                            job.Execute(c);
                        }
                    }
                }
            }
        }

        for (int i = 0; i < specs.Count; i++)
        {
            var s = specs[i];
            set.Add(new Weight(s.Name, s.Shape, data[i], s.Matrix ? TensorLayout.InOut : TensorLayout.None, s.Name));
        }

        return set;
    }

    /// <summary>N(0, Std²) values into one tensor; item = a chunk of <see cref="Chunk"/> values with its own generator.</summary>
    private unsafe struct NormalJob : ICpuJob
    {
        public float* Values;
        public int Length;
        public int Seed;
        public int Tensor;
        public double Std;

        public readonly void Execute(int item)
        {
            int start = item * Chunk;
            int end = (int)Math.Min(Length, (long)start + Chunk);
            var random = new Random(unchecked((Seed * 1_000_003) + (Tensor * 7_919) + (item * 104_729)));
            for (int k = start; k < end; k += 2)
            {
                // Box–Muller: two standard normal values per pair of uniforms.
                double u = 1 - random.NextDouble();
                double v = random.NextDouble();
                double r = Math.Sqrt(-2 * Math.Log(u)) * Std;
                Values[k] = (float)(r * Math.Cos(2 * Math.PI * v));
                if (k + 1 < end)
                {
                    Values[k + 1] = (float)(r * Math.Sin(2 * Math.PI * v));
                }
            }
        }
    }

    private enum Fill
    {
        Zero,
        One,
        Normal,
    }

    private sealed record Spec(string Name, int[] Shape, Fill Fill, double Std = Std, bool Matrix = false);

    private static List<Spec> Bert(ModelConfig c)
    {
        int d = c.Hidden;
        var specs = new List<Spec>
        {
            new("embeddings.word_embeddings.weight", [c.VocabSize, d], Fill.Normal),
            new("embeddings.position_embeddings.weight", [c.MaxPositions, d], Fill.Normal),
        };
        if (c.TypeVocabSize > 0)
        {
            specs.Add(new("embeddings.token_type_embeddings.weight", [c.TypeVocabSize, d], Fill.Normal));
        }

        specs.AddRange(Norm("embeddings.LayerNorm", d));
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"encoder.layer.{l}.";
            specs.AddRange(Linear(p + "attention.self.query", d, d));
            specs.AddRange(Linear(p + "attention.self.key", d, d));
            specs.AddRange(Linear(p + "attention.self.value", d, d));
            specs.AddRange(Linear(p + "attention.output.dense", d, d));
            specs.AddRange(Norm(p + "attention.output.LayerNorm", d));
            specs.AddRange(Linear(p + "intermediate.dense", d, c.Intermediate));
            specs.AddRange(Linear(p + "output.dense", c.Intermediate, d));
            specs.AddRange(Norm(p + "output.LayerNorm", d));
        }

        if (c.HasPooler)
        {
            specs.AddRange(Linear("pooler.dense", d, d));
        }

        if (c.NumLabels > 0)
        {
            specs.AddRange(Linear("classifier", d, c.NumLabels));
        }

        return specs;
    }

    private static List<Spec> Gpt2(ModelConfig c)
    {
        int d = c.Hidden;
        double residual = Std / Math.Sqrt(2.0 * c.Layers);
        var specs = new List<Spec>
        {
            new("wte.weight", [c.VocabSize, d], Fill.Normal),
            new("wpe.weight", [c.MaxPositions, d], Fill.Normal),
        };
        for (int l = 0; l < c.Layers; l++)
        {
            string p = $"h.{l}.";
            specs.AddRange(Norm(p + "ln_1", d));
            specs.AddRange(Linear(p + "attn.c_attn", d, 3 * d));
            specs.AddRange(Linear(p + "attn.c_proj", d, d, residual));
            specs.AddRange(Norm(p + "ln_2", d));
            specs.AddRange(Linear(p + "mlp.c_fc", d, c.Intermediate));
            specs.AddRange(Linear(p + "mlp.c_proj", c.Intermediate, d, residual));
        }

        specs.AddRange(Norm("ln_f", d));
        return specs;
    }

    // GPT-NeoX, Llama and Qwen2 under their Hugging Face names; biases only where the configuration has them.
    private static List<Spec> RotaryDecoder(ModelConfig c)
    {
        int d = c.Hidden;
        int q = c.Heads * c.HeadDim;
        int kv = c.KeyValueHeads * c.HeadDim;
        int inner = c.Intermediate;
        double residual = Std / Math.Sqrt(2.0 * c.Layers);
        bool neox = c.Family == ModelFamily.GptNeoXDecoder;
        Spec[] Normalisation(string name) => c.Norm == NormKind.RmsNorm ? [new(name + ".weight", [d], Fill.One)] : Norm(name, d);
        var specs = new List<Spec> { new(neox ? "gpt_neox.embed_in.weight" : "model.embed_tokens.weight", [c.VocabSize, d], Fill.Normal) };
        for (int l = 0; l < c.Layers; l++)
        {
            string p = neox ? $"gpt_neox.layers.{l}." : $"model.layers.{l}.";
            specs.AddRange(Normalisation(p + "input_layernorm"));
            specs.AddRange(Normalisation(p + "post_attention_layernorm"));
            if (neox)
            {
                specs.AddRange(Linear(p + "attention.query_key_value", d, 3 * d, bias: c.HasQkvBias));
                specs.AddRange(Linear(p + "attention.dense", d, d, residual, c.HasOutputBias));
                specs.AddRange(Linear(p + "mlp.dense_h_to_4h", d, inner, bias: c.HasMlpBias));
                specs.AddRange(Linear(p + "mlp.dense_4h_to_h", inner, d, residual, c.HasMlpBias));
            }
            else
            {
                specs.AddRange(Linear(p + "self_attn.q_proj", d, q, bias: c.HasQkvBias));
                specs.AddRange(Linear(p + "self_attn.k_proj", d, kv, bias: c.HasQkvBias));
                specs.AddRange(Linear(p + "self_attn.v_proj", d, kv, bias: c.HasQkvBias));
                specs.AddRange(Linear(p + "self_attn.o_proj", q, d, residual, c.HasOutputBias));
                specs.AddRange(Linear(p + "mlp.gate_proj", d, inner, bias: c.HasMlpBias));
                specs.AddRange(Linear(p + "mlp.up_proj", d, inner, bias: c.HasMlpBias));
                specs.AddRange(Linear(p + "mlp.down_proj", inner, d, residual, c.HasMlpBias));
            }
        }

        specs.AddRange(Normalisation(neox ? "gpt_neox.final_layer_norm" : "model.norm"));
        if (c.HasUntiedHead)
        {
            specs.Add(new(neox ? "embed_out.weight" : "lm_head.weight", [c.VocabSize, d], Fill.Normal));
        }

        return specs;
    }

    // [in, out] weight and [out] bias
    private static Spec[] Linear(string name, int inDim, int outDim, double std = Std, bool bias = true) => bias
        ? [new(name + ".weight", [inDim, outDim], Fill.Normal, std, Matrix: true), new(name + ".bias", [outDim], Fill.Zero)]
        : [new(name + ".weight", [inDim, outDim], Fill.Normal, std, Matrix: true)];

    private static Spec[] Norm(string name, int d) =>
    [
        new(name + ".weight", [d], Fill.One),
        new(name + ".bias", [d], Fill.Zero),
    ];
}
