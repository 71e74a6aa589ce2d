using System.Text;
using Headlight.Models;
using Headlight.Models.Loading;
using Headlight.Models.Tokenization;

namespace Headlight.Fuzz;

/// <summary>
/// What each fuzz target does with one input: parse it as that file format (or tokenise it as text)
/// and use the result. A malformed input must end in one of the library's typed errors; any other
/// exception escapes and is a finding. The replay tests run these same methods on the saved inputs.
/// </summary>
internal static class FuzzTargets
{
    /// <summary>The target names, as the corpus folders are named.</summary>
    public static IReadOnlyList<string> Names { get; } = ["safetensors", "config", "onnx", "vocab-txt", "gpt2-vocab", "text"];

    // A small WordPiece vocabulary for the text target.
    private static readonly Lazy<BertWordPieceTokenizer> Bert = new(() => BertWordPieceTokenizer.FromStream(
        new MemoryStream(Encoding.UTF8.GetBytes(string.Join('\n', "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "##s", "a", "é", "日", ",", ".") + "\n"))));

    private static readonly Lazy<Gpt2Tokenizer> Gpt2 = new(() => Gpt2Tokenizer.CreateDefault());

    private static readonly string Scratch = Path.Combine(Path.GetTempPath(), $"headlight-fuzz-{Environment.ProcessId}");

    /// <summary>Runs <paramref name="target"/> on <paramref name="input"/>; returns normally for a valid input or a typed error.</summary>
    public static void Run(string target, byte[] input)
    {
        try
        {
            switch (target)
            {
                case "safetensors":
                    SafeTensors(input);
                    break;
                case "config":
                    HfConfig.Read(Write("config.json", input)).Validate("config.json");
                    break;
                case "onnx":
                    BertOnnxImport.Import(OnnxModel.Load(Write("model.onnx", input)));
                    break;
                case "vocab-txt":
                    BertWordPieceTokenizer.FromStream(new MemoryStream(input)).Encode("the cats sat, unaffable 日本");
                    break;
                case "gpt2-vocab":
                    Gpt2Vocab(input);
                    break;
                case "text":
                    Text(Encoding.UTF8.GetString(input));
                    break;
                default:
                    throw new ArgumentException($"Unknown fuzz target '{target}': one of {string.Join(", ", Names)}.", nameof(target));
            }
        }
        catch (Exception e) when (e is ModelFormatException or VocabularyFormatException or InputTooLongException)
        {
            // The typed errors malformed input is meant to end in.
        }
    }

    private static void SafeTensors(byte[] input)
    {
        using var file = SafeTensorsFile.Open(Write("model.safetensors", input));
        foreach (string name in file.Names)
        {
            var info = file.Tensors[name];
            if ((info.DType is SafeTensorsDType.F32 or SafeTensorsDType.F16 or SafeTensorsDType.BF16 or SafeTensorsDType.F64) && info.ElementCount <= 1 << 20)
            {
                NonFiniteWeights.FirstNonFinite(file.ReadFloat32(name));
            }
        }
    }

    // vocab.json, a zero byte, then merges.txt.
    private static void Gpt2Vocab(byte[] input)
    {
        int split = Array.IndexOf(input, (byte)0);
        byte[] vocab = split < 0 ? input : input[..split];
        byte[] merges = split < 0 ? [] : input[(split + 1)..];
        var tokenizer = Gpt2Tokenizer.FromStreams(new MemoryStream(vocab), new MemoryStream(merges));
        var text = tokenizer.Encode("Hello, world! 日本 🍕");
        tokenizer.Decode(text.Ids.ToArray());
    }

    // Both tokenizers; every span must lie inside the text.
    private static void Text(string text)
    {
        foreach (var encoded in new[] { Bert.Value.Encode(text), Gpt2.Value.Encode(text) })
        {
            foreach (var span in encoded.Spans)
            {
                if (span.Start < 0 || span.End > text.Length || span.Start > span.End)
                {
                    throw new InvalidOperationException($"span [{span.Start}, {span.End}) outside a text of {text.Length} characters");
                }
            }
        }
    }

    private static string Write(string name, byte[] input)
    {
        Directory.CreateDirectory(Scratch);
        string path = Path.Combine(Scratch, name);
        File.WriteAllBytes(path, input);
        return path;
    }
}
