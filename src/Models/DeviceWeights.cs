using Headlight.Kernels;
using Headlight.Models.Loading;

namespace Headlight.Models;

/// <summary>One block's weights on the device. Matrices are stored [in, out]; Q, K and V are fused into one [d, 3d] projection.</summary>
internal sealed class LayerWeights : IDisposable
{
    public required Tensor<float> QkvWeight { get; init; }      // [d, 3d]
    public required Tensor<float> QkvBias { get; init; }        // [3d]
    public required Tensor<float> OutWeight { get; init; }      // [d, d]
    public required Tensor<float> OutBias { get; init; }        // [d]
    public required Tensor<float> Norm1Gamma { get; init; }     // [d]  BERT: after attention; GPT-2: before attention
    public required Tensor<float> Norm1Beta { get; init; }      // [d]
    public required Tensor<float> FfnInWeight { get; init; }    // [d, intermediate]
    public required Tensor<float> FfnInBias { get; init; }      // [intermediate]
    public required Tensor<float> FfnOutWeight { get; init; }   // [intermediate, d]
    public required Tensor<float> FfnOutBias { get; init; }     // [d]
    public required Tensor<float> Norm2Gamma { get; init; }     // [d]  BERT: after the MLP; GPT-2: before the MLP
    public required Tensor<float> Norm2Beta { get; init; }      // [d]

    public void Dispose()
    {
        foreach (var t in new[] { QkvWeight, QkvBias, OutWeight, OutBias, Norm1Gamma, Norm1Beta, FfnInWeight, FfnInBias, FfnOutWeight, FfnOutBias, Norm2Gamma, Norm2Beta })
        {
            t.Dispose();
        }
    }
}

/// <summary>
/// Every weight of a model on one device, owned here. Built from a weight source by family-specific
/// name rules (Hugging Face names for BERT and GPT-2); every tensor's shape is checked against the
/// config before it is uploaded.
/// </summary>
internal sealed class DeviceWeights : IDisposable
{
    private readonly List<IDisposable> owned = [];

    private DeviceWeights() { }

    public required Tensor<float> TokenEmbeddings { get; init; }          // [vocab, d]; also the tied LM head of decoders
    public Tensor<float>? UntiedHead { get; init; }                       // [vocab, d] GPT-2 lm_head.weight when tie_word_embeddings is false
    public Tensor<float> OutputEmbeddings => UntiedHead ?? TokenEmbeddings; // [vocab, d] logits = final · OutputEmbeddingsᵀ
    public Tensor<float>? PositionEmbeddings { get; init; }               // [positions, d] learned positions (BERT, GPT-2)
    public Tensor<float>? TokenTypeEmbeddings { get; init; }              // [types, d]
    public Tensor<float>? EmbeddingNormGamma { get; init; }               // [d] BERT
    public Tensor<float>? EmbeddingNormBeta { get; init; }
    public Tensor<float>? FinalNormGamma { get; init; }                   // [d] GPT-2
    public Tensor<float>? FinalNormBeta { get; init; }
    public Tensor<float>? PoolerWeight { get; init; }                     // [d, d]
    public Tensor<float>? PoolerBias { get; init; }                       // [d]
    public Tensor<float>? ClassifierWeight { get; init; }                 // [d, labels]
    public Tensor<float>? ClassifierBias { get; init; }                   // [labels]
    public required IReadOnlyList<LayerWeights> Layers { get; init; }
    public Tensor<float>? RopeTable { get; init; }                        // [positions, rotaryDims] cos | sin per position (rotary decoders)

    // release: drop each host weight from `source` once it is read, so a model's float32 copy on the host shrinks as the
    // device copy grows instead of both being held whole (a 1B-parameter model is 4.9 GB each); only for sets the caller
    // does not keep.
    public static DeviceWeights Upload(Device device, ModelConfig config, WeightSet source, bool release = false)
    {
        var loader = new Uploader(device, config, source, release);
        try
        {
            var weights = config.Family switch
            {
                ModelFamily.BertEncoder => loader.Bert(),
                ModelFamily.Gpt2Decoder => loader.Gpt2(),
                _ => loader.Decoder(),
            };

            // The last host arrays are garbage now: collect them before the cpu device packs its copies of the matrices.
            loader.CollectIfLarge();
            return weights;
        }
        catch
        {
            loader.DisposeAll();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var o in owned)
        {
            o.Dispose();
        }

        owned.Clear();
    }

    private sealed class Uploader(Device device, ModelConfig config, WeightSet source, bool release)
    {
        // Released host arrays are large objects the GC collects only on a full collection, which its budget (grown with
        // a heap this large) would put off past the upload: collect every 512 MB released so the device copy reuses them.
        private const long CollectEvery = 512L << 20;
        private readonly List<IDisposable> uploaded = [];
        private long released;
        private long releasedTotal;

        public void CollectIfLarge()
        {
            if (releasedTotal >= CollectEvery)
            {
                GC.Collect();
            }
        }

        public void DisposeAll()
        {
            foreach (var u in uploaded)
            {
                u.Dispose();
            }
        }

        public DeviceWeights Bert()
        {
            int d = config.Hidden;
            var layers = new List<LayerWeights>();
            for (int i = 0; i < config.Layers; i++)
            {
                string p = $"encoder.layer.{i}.";
                layers.Add(new LayerWeights
                {
                    QkvWeight = FusedQkv(p + "attention.self.query.weight", p + "attention.self.key.weight", p + "attention.self.value.weight"),
                    QkvBias = Upload(Concat(Vector(p + "attention.self.query.bias", d), Vector(p + "attention.self.key.bias", d), Vector(p + "attention.self.value.bias", d)), 3 * d),
                    OutWeight = Matrix(p + "attention.output.dense.weight", d, d),
                    OutBias = Upload(Vector(p + "attention.output.dense.bias", d), d),
                    Norm1Gamma = Upload(Vector(p + "attention.output.LayerNorm.weight", d), d),
                    Norm1Beta = Upload(Vector(p + "attention.output.LayerNorm.bias", d), d),
                    FfnInWeight = Matrix(p + "intermediate.dense.weight", d, config.Intermediate),
                    FfnInBias = Upload(Vector(p + "intermediate.dense.bias", config.Intermediate), config.Intermediate),
                    FfnOutWeight = Matrix(p + "output.dense.weight", config.Intermediate, d),
                    FfnOutBias = Upload(Vector(p + "output.dense.bias", d), d),
                    Norm2Gamma = Upload(Vector(p + "output.LayerNorm.weight", d), d),
                    Norm2Beta = Upload(Vector(p + "output.LayerNorm.bias", d), d),
                });
            }

            var weights = new DeviceWeights
            {
                TokenEmbeddings = Table("embeddings.word_embeddings.weight", config.VocabSize, d),
                PositionEmbeddings = Table("embeddings.position_embeddings.weight", config.MaxPositions, d),
                TokenTypeEmbeddings = config.TypeVocabSize > 0 ? Table("embeddings.token_type_embeddings.weight", config.TypeVocabSize, d) : null,
                EmbeddingNormGamma = Upload(Vector("embeddings.LayerNorm.weight", d), d),
                EmbeddingNormBeta = Upload(Vector("embeddings.LayerNorm.bias", d), d),
                PoolerWeight = config.HasPooler ? Matrix("pooler.dense.weight", d, d) : null,
                PoolerBias = config.HasPooler ? Upload(Vector("pooler.dense.bias", d), d) : null,
                ClassifierWeight = config.NumLabels > 0 ? Matrix("classifier.weight", d, config.NumLabels) : null,
                ClassifierBias = config.NumLabels > 0 ? Upload(Vector("classifier.bias", config.NumLabels), config.NumLabels) : null,
                Layers = layers,
            };
            weights.owned.AddRange(uploaded);
            return weights;
        }

        public DeviceWeights Gpt2()
        {
            int d = config.Hidden;
            var layers = new List<LayerWeights>();
            for (int i = 0; i < config.Layers; i++)
            {
                string p = $"h.{i}.";
                layers.Add(new LayerWeights
                {
                    QkvWeight = Matrix(p + "attn.c_attn.weight", d, 3 * d),
                    QkvBias = Upload(Vector(p + "attn.c_attn.bias", 3 * d), 3 * d),
                    OutWeight = Matrix(p + "attn.c_proj.weight", d, d),
                    OutBias = Upload(Vector(p + "attn.c_proj.bias", d), d),
                    Norm1Gamma = Upload(Vector(p + "ln_1.weight", d), d),
                    Norm1Beta = Upload(Vector(p + "ln_1.bias", d), d),
                    FfnInWeight = Matrix(p + "mlp.c_fc.weight", d, config.Intermediate),
                    FfnInBias = Upload(Vector(p + "mlp.c_fc.bias", config.Intermediate), config.Intermediate),
                    FfnOutWeight = Matrix(p + "mlp.c_proj.weight", config.Intermediate, d),
                    FfnOutBias = Upload(Vector(p + "mlp.c_proj.bias", d), d),
                    Norm2Gamma = Upload(Vector(p + "ln_2.weight", d), d),
                    Norm2Beta = Upload(Vector(p + "ln_2.bias", d), d),
                });
            }

            var weights = new DeviceWeights
            {
                TokenEmbeddings = Table("wte.weight", config.VocabSize, d),
                UntiedHead = source.Contains("lm_head.weight") ? Table("lm_head.weight", config.VocabSize, d) : null,
                PositionEmbeddings = Table("wpe.weight", config.MaxPositions, d),
                FinalNormGamma = Upload(Vector("ln_f.weight", d), d),
                FinalNormBeta = Upload(Vector("ln_f.bias", d), d),
                Layers = layers,
            };
            weights.owned.AddRange(uploaded);
            return weights;
        }

        // GPT-NeoX, Llama and Qwen2 under their Hugging Face names. Q, K and V are fused [d, (heads + 2·kv)·hd] with all
        // query heads first, then the key heads, then the value heads; absent biases are zeros.
        public DeviceWeights Decoder()
        {
            int d = config.Hidden;
            int hd = config.HeadDim;
            int q = config.Heads * hd;
            int kv = config.KeyValueHeads * hd;
            int inner = config.Intermediate;
            bool neox = config.Family == ModelFamily.GptNeoXDecoder;
            bool rms = config.Norm == NormKind.RmsNorm;
            var layers = new List<LayerWeights>();
            for (int i = 0; i < config.Layers; i++)
            {
                string p = neox ? $"gpt_neox.layers.{i}." : $"model.layers.{i}.";
                float[] qkvWeight;
                float[] qkvBias;
                if (neox)
                {
                    (qkvWeight, qkvBias) = NeoXQkv(p + "attention.query_key_value");
                }
                else
                {
                    qkvWeight = SideBySide(d, MatrixInOut(p + "self_attn.q_proj.weight", d, q), MatrixInOut(p + "self_attn.k_proj.weight", d, kv), MatrixInOut(p + "self_attn.v_proj.weight", d, kv));
                    qkvBias = Concat(OptionalVector(p + "self_attn.q_proj.bias", q), OptionalVector(p + "self_attn.k_proj.bias", kv), OptionalVector(p + "self_attn.v_proj.bias", kv));
                }

                string norm1 = p + "input_layernorm.";
                string norm2 = p + "post_attention_layernorm.";
                layers.Add(new LayerWeights
                {
                    QkvWeight = Upload(qkvWeight, d, config.QkvWidth),
                    QkvBias = Upload(qkvBias, config.QkvWidth),
                    OutWeight = neox ? Matrix(p + "attention.dense.weight", d, d) : Matrix(p + "self_attn.o_proj.weight", q, d),
                    OutBias = Upload(OptionalVector(neox ? p + "attention.dense.bias" : p + "self_attn.o_proj.bias", d), d),
                    Norm1Gamma = Upload(Vector(norm1 + "weight", d), d),
                    Norm1Beta = Upload(rms ? new float[d] : Vector(norm1 + "bias", d), d),
                    FfnInWeight = neox
                        ? Matrix(p + "mlp.dense_h_to_4h.weight", d, inner)
                        : Upload(SideBySide(d, MatrixInOut(p + "mlp.gate_proj.weight", d, inner), MatrixInOut(p + "mlp.up_proj.weight", d, inner)), d, 2 * inner),
                    FfnInBias = neox
                        ? Upload(Vector(p + "mlp.dense_h_to_4h.bias", inner), inner)
                        : Upload(Concat(OptionalVector(p + "mlp.gate_proj.bias", inner), OptionalVector(p + "mlp.up_proj.bias", inner)), 2 * inner),
                    FfnOutWeight = Matrix(neox ? p + "mlp.dense_4h_to_h.weight" : p + "mlp.down_proj.weight", inner, d),
                    FfnOutBias = Upload(OptionalVector(neox ? p + "mlp.dense_4h_to_h.bias" : p + "mlp.down_proj.bias", d), d),
                    Norm2Gamma = Upload(Vector(norm2 + "weight", d), d),
                    Norm2Beta = Upload(rms ? new float[d] : Vector(norm2 + "bias", d), d),
                });
            }

            string embed = neox ? "gpt_neox.embed_in.weight" : "model.embed_tokens.weight";
            string head = neox ? "embed_out.weight" : "lm_head.weight";
            string final = neox ? "gpt_neox.final_layer_norm." : "model.norm.";
            var weights = new DeviceWeights
            {
                TokenEmbeddings = Table(embed, config.VocabSize, d),
                UntiedHead = config.HasUntiedHead ? Table(head, config.VocabSize, d) : null,
                FinalNormGamma = Upload(Vector(final + "weight", d), d),
                FinalNormBeta = Upload(rms ? new float[d] : Vector(final + "bias", d), d),
                RopeTable = config.RotaryDims > 0
                    ? Upload(Rope.Table(RotaryFrequencies.Inverse(config), config.MaxPositions), config.MaxPositions, config.RotaryDims)
                    : null,
                Layers = layers,
            };
            weights.owned.AddRange(uploaded);
            return weights;
        }

        // GPT-NeoX's query_key_value [3d, d] is grouped per head (q | k | v of head 0, then of head 1, …); brought to
        // [d, 3d] with the query heads first, then the key heads, then the value heads, as the attention kernel reads them.
        private (float[] Weight, float[] Bias) NeoXQkv(string prefix)
        {
            int d = config.Hidden;
            int hd = config.HeadDim;
            int heads = config.Heads;
            var stored = MatrixInOut(prefix + ".weight", d, 3 * d);   // [d, 3d] columns in stored (per-head) order
            var storedBias = OptionalVector(prefix + ".bias", 3 * d);
            var weight = new float[stored.Length];
            var bias = new float[3 * d];
            for (int h = 0; h < heads; h++)
            {
                for (int part = 0; part < 3; part++)
                {
                    int from = (h * 3 * hd) + (part * hd);
                    int to = (part * d) + (h * hd);
                    for (int row = 0; row < d; row++)
                    {
                        stored.AsSpan((row * 3 * d) + from, hd).CopyTo(weight.AsSpan((row * 3 * d) + to, hd));
                    }

                    storedBias.AsSpan(from, hd).CopyTo(bias.AsSpan(to, hd));
                }
            }

            return (weight, bias);
        }

        // [rows, a] and [rows, b] … side by side: [rows, a + b + …].
        private static float[] SideBySide(int rows, params float[][] parts)
        {
            int width = parts.Sum(p => p.Length / rows);
            var fused = new float[rows * width];
            for (int row = 0; row < rows; row++)
            {
                int column = 0;
                foreach (var part in parts)
                {
                    int w = part.Length / rows;
                    part.AsSpan(row * w, w).CopyTo(fused.AsSpan((row * width) + column, w));
                    column += w;
                }
            }

            return fused;
        }

        // A bias the family may omit (Llama has none): zeros when absent, so every block runs one code path.
        private float[] OptionalVector(string name, int length) => source.Contains(name) ? Vector(name, length) : new float[length];

        private Weight Read(string name)
        {
            var weight = source.TryGet(name)
                ?? throw new ModelFormatException(source.SourcePath, name, $"a tensor named '{name}', which a {config.Family} with this config needs", "no such tensor");
            if (release)
            {
                source.Release(name);
                released += 4L * weight.Data.Length;
                releasedTotal += 4L * weight.Data.Length;
                if (released >= CollectEvery)
                {
                    released = 0;
                    GC.Collect();
                }
            }

            return weight;
        }

        private float[] Vector(string name, int length)
        {
            var t = Read(name);
            if (t.Shape.Length != 1 || t.Shape[0] != length)
            {
                throw ShapeError(name, $"[{length}]", t.Shape);
            }

            return t.Data.ToArray();
        }

        // A [rows, columns] table (embeddings), never transposed.
        private Tensor<float> Table(string name, int rows, int columns)
        {
            var t = Read(name);
            if (t.Shape.Length != 2 || t.Shape[0] != rows || t.Shape[1] != columns)
            {
                throw ShapeError(name, $"[{rows}, {columns}]", t.Shape);
            }

            return Upload(t.Data.ToArray(), rows, columns);
        }

        // A weight matrix brought to [in, out] whatever its stored layout.
        private Tensor<float> Matrix(string name, int inDim, int outDim) => Upload(MatrixInOut(name, inDim, outDim), inDim, outDim);

        private float[] MatrixInOut(string name, int inDim, int outDim)
        {
            var t = Read(name);
            bool outIn = t.Layout == TensorLayout.OutIn;
            int[] expected = outIn ? [outDim, inDim] : [inDim, outDim];
            if (t.Shape.Length != 2 || t.Shape[0] != expected[0] || t.Shape[1] != expected[1])
            {
                throw ShapeError(name, TensorShape.Format(expected) + (outIn ? " ([out, in])" : " ([in, out])"), t.Shape);
            }

            return outIn ? Transpose(t.Data.Span, outDim, inDim) : t.Data.ToArray();
        }

        // Q, K and V side by side: [d, 3d], so one GEMM projects all three.
        private Tensor<float> FusedQkv(string q, string k, string v)
        {
            int d = config.Hidden;
            var parts = new[] { MatrixInOut(q, d, d), MatrixInOut(k, d, d), MatrixInOut(v, d, d) };
            var fused = new float[d * 3 * d];
            for (int row = 0; row < d; row++)
            {
                for (int p = 0; p < 3; p++)
                {
                    parts[p].AsSpan(row * d, d).CopyTo(fused.AsSpan((row * 3 * d) + (p * d), d));
                }
            }

            return Upload(fused, d, 3 * d);
        }

        private static float[] Concat(params float[][] parts) => parts.SelectMany(p => p).ToArray();

        private static float[] Transpose(ReadOnlySpan<float> data, int rows, int columns)
        {
            var result = new float[data.Length];
            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < columns; c++)
                {
                    result[(c * rows) + r] = data[(r * columns) + c];
                }
            }

            return result;
        }

        private Tensor<float> Upload(float[] data, params int[] shape)
        {
            var t = device.FromHost<float>(data, shape);
            uploaded.Add(t);
            return t;
        }

        private ModelFormatException ShapeError(string name, string expected, int[] found)
            => new(source.SourcePath, name, $"shape {expected} (from the config: hidden {config.Hidden}, intermediate {config.Intermediate}, vocab {config.VocabSize}, positions {config.MaxPositions})", TensorShape.Format(found));
    }
}
