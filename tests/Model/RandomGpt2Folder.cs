using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;

namespace Headlight.Tests.Model;

/// <summary>
/// A random model of GPT-2 small's size as a Hugging Face folder (config.json, model.safetensors). Shared by the
/// tests and the benchmarks (bench links this file).
/// </summary>
internal static class RandomGpt2Folder
{
    public const int Layers = 12, Hidden = 768, Heads = 12, Vocab = 50257, Positions = 1024;

    /// <summary>Writes config.json and model.safetensors, streaming each tensor (GPT-2's initialisation: N(0, 0.02)-like uniform weights, unit LayerNorm gains, zero biases).</summary>
    public static void Write(string path, int seed)
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("GPT2LMHeadModel"),
            ["model_type"] = "gpt2",
            ["n_layer"] = Layers,
            ["n_head"] = Heads,
            ["n_embd"] = Hidden,
            ["n_positions"] = Positions,
            ["n_ctx"] = Positions,
            ["vocab_size"] = Vocab,
            ["activation_function"] = "gelu_new",
            ["layer_norm_epsilon"] = 1e-5,
        };
        File.WriteAllText(Path.Combine(path, "config.json"), config.ToJsonString());

        var tensors = new List<(string Name, long[] Shape, float Scale, float Offset)>
        {
            ("wte.weight", [Vocab, Hidden], 0.035f, 0),
            ("wpe.weight", [Positions, Hidden], 0.02f, 0),
        };
        for (int l = 0; l < Layers; l++)
        {
            string p = $"h.{l}.";
            tensors.AddRange(
            [
                (p + "ln_1.weight", [Hidden], 0, 1), (p + "ln_1.bias", [Hidden], 0, 0),
                (p + "attn.c_attn.weight", [Hidden, 3 * Hidden], 0.035f, 0), (p + "attn.c_attn.bias", [3 * Hidden], 0, 0),
                (p + "attn.c_proj.weight", [Hidden, Hidden], 0.01f, 0), (p + "attn.c_proj.bias", [Hidden], 0, 0),
                (p + "ln_2.weight", [Hidden], 0, 1), (p + "ln_2.bias", [Hidden], 0, 0),
                (p + "mlp.c_fc.weight", [Hidden, 4 * Hidden], 0.035f, 0), (p + "mlp.c_fc.bias", [4 * Hidden], 0, 0),
                (p + "mlp.c_proj.weight", [4 * Hidden, Hidden], 0.01f, 0), (p + "mlp.c_proj.bias", [Hidden], 0, 0),
            ]);
        }

        tensors.Add(("ln_f.weight", [Hidden], 0, 1));
        tensors.Add(("ln_f.bias", [Hidden], 0, 0));

        var header = new StringBuilder("{");
        long offset = 0;
        foreach (var (name, shape, _, _) in tensors)
        {
            long bytes = 4 * shape.Aggregate(1L, (a, b) => a * b);
            header.Append($"\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(",", shape)}],\"data_offsets\":[{offset},{offset + bytes}]}},");
            offset += bytes;
        }

        header.Length--;
        header.Append('}');
        byte[] headerBytes = Encoding.UTF8.GetBytes(header.ToString());
        using var file = File.Create(Path.Combine(path, "model.safetensors"));
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)headerBytes.Length);
        file.Write(length);
        file.Write(headerBytes);

        var random = new Random(seed);
        var chunk = new float[1 << 16];
        foreach (var (_, shape, scale, bias) in tensors)
        {
            for (long left = shape.Aggregate(1L, (a, b) => a * b); left > 0; left -= chunk.Length)
            {
                int n = (int)Math.Min(left, chunk.Length);
                for (int i = 0; i < n; i++)
                {
                    chunk[i] = bias + (scale * (2 * random.NextSingle() - 1));
                }

                file.Write(MemoryMarshal.AsBytes(chunk.AsSpan(0, n)));
            }
        }
    }
}
