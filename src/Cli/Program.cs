using System.Globalization;
using Headlight.Kernels;

namespace Headlight.Cli;

/// <summary>The <c>headlight</c> command.</summary>
internal static class Program
{
    private static readonly HashSet<string> FlagNames = new(StringComparer.Ordinal) { "json", "help", "truncate", "keep-special", "exact", "compare", "no-importance", "census", "no-stop", "no-cache", "force" };

    /// <summary>Whether <paramref name="name"/> is a switch without a value.</summary>
    internal static bool IsFlag(string name) => FlagNames.Contains(name);

    private static int Main(string[] args) => Run(args, Console.Out, Console.Error);

    /// <summary>
    /// Runs one command line; returns the exit code: 0 ok, 1 a runtime failure (bad model files,
    /// device errors, out of memory), 2 a usage error (unknown command or option, a value out of
    /// range, an output path that cannot be written). Every failure is one line on
    /// <paramref name="error"/>, never a stack trace.
    /// </summary>
    internal static int Run(string[] args, TextWriter output, TextWriter error)
    {
        try
        {
            var cli = CliArgs.Parse(args, FlagNames);
            return cli.Command switch
            {
                "devices" => DevicesCommand.Run(cli, output),
                "embed" => EmbedCommand.Run(cli, output),
                "attend" => AttendCommand.Run(cli, output),
                "logits" => LogitsCommand.Run(cli, output),
                "generate" => GenerateCommand.Run(cli, output),
                "explain" => ExplainReportCommand.Run(cli, output, error),
                "faithfulness" => FaithfulnessCommand.Run(cli, output, error),
                "heads" => HeadsCommand.Run(cli, output, error),
                "train" => TrainCommand.Run(cli, output, error),
                "bench" => BenchCommand.Run(cli, output),
                "help" or "--help" or "-h" => Help(output),
                _ => throw new UsageException($"Unknown command '{cli.Command}'. Run 'headlight help'."),
            };
        }
        catch (UsageException e)
        {
            error.WriteLine($"headlight: {OneLine(e.Message)}");
            return 2;
        }
        catch (OutOfMemoryException)
        {
            error.WriteLine("headlight: out of memory: try a smaller input, batch or model, or another --device.");
            return 1;
        }
        catch (Exception caught)
        {
            // Every other failure: one line, no stack trace (a bug shows its exception type too).
            // An AggregateException (parallel work) is reported by its first inner failure.
            var e = caught;
            while (e is AggregateException { InnerExceptions.Count: > 0 } aggregate)
            {
                e = aggregate.InnerExceptions[0];
            }

            bool expected = e is ArgumentException or DeviceNotFoundException or IOException or InvalidDataException or FormatException
                or InvalidOperationException or UnauthorizedAccessException or NotSupportedException or OperationCanceledException or OutOfMemoryException
                or Headlight.Models.ModelFormatException or Headlight.Models.Tokenization.VocabularyFormatException;
            string message = OneLine(Message(e));
            error.WriteLine(expected ? $"headlight: {message}" : $"headlight: {message} ({e.GetType().Name})");
            return 1;
        }
    }

    // Multi-line messages (inner exceptions, aggregated failures) become one line.
    private static string OneLine(string message) =>
        string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    // ArgumentException appends " (Parameter 'x')"; a command-line user needs only the sentence.
    private static string Message(Exception e)
    {
        string message = e.Message;
        if (e is ArgumentException { ParamName: { } name })
        {
            string suffix = $" (Parameter '{name}')";
            if (message.EndsWith(suffix, StringComparison.Ordinal))
            {
                message = message[..^suffix.Length];
            }
        }

        return message;
    }

    private static int Help(TextWriter output)
    {
        output.WriteLine("""
            headlight — run transformer models as GPU kernels and explain what they do.

            Commands:
              attend TEXT [--top K]      for each layer and head, where it attends most (--json: all probabilities)
              embed TEXT...              sentence embeddings; with two or more texts, their cosine similarities
                                         (--pooling mean|cls|max|lasttoken [--normalize] for a plain encoder folder)
              logits TEXT [--top K]      a decoder's top-k next tokens at every position (--json: all logits)
              generate TEXT [-n N]       continuation by a decoder: greedy, or sampled (--temperature, --top-k, --top-p,
                                         --seed); stops at end-of-sequence; --explain-step K explains generated token K
              explain TEXT --target T    which tokens and words the target depends on, several methods side by side
                                         (integrated gradients, LRP, SHAP, rollout, ...); --query Q --doc D: why a
                                         document matches a query; --html FILE: a report; --png DIR: heat maps
              faithfulness               deletion/insertion benchmark of the methods against random word orders
              heads [--compare A B ...]  the head census: what every attention head does, against random-weight controls
              train --corpus P --out D   train a Llama- or GPT-2-style decoder from scratch on text files
              devices                    list the devices Headlight can run on
              bench forward|gemm         time the forward pass (or one block's GEMMs, or --shape MxKxN) on a device:
                                         --batch B --seq T --runs N --warmup SECONDS; median, min/max, IQR, GFLOP/s

            Common options:
              --model NAME|PATH                         minilm (default), arcticxs, a Hugging Face folder or an .onnx file
              --ids 1,2,3[;4,5]                         token ids instead of text (rows separated by ';')
              --truncate                                cut texts longer than the model's positions instead of failing
              --device auto|cpu|ilgpu-cpu|opencl|cuda   where to run (default: $HEADLIGHT_DEVICE or auto)
              --json                                    machine-readable output on stdout

            Exit codes: 0 ok, 1 runtime failure (model files, device, memory), 2 usage error (options, output paths).
            """ + "\n\n" + ExplainCommand.TargetHelp + "\n" + string.Format(CultureInfo.InvariantCulture, ExplainReportCommand.Help, string.Join(",", ExplainMethods.DefaultSet))
            + "\n" + FaithfulnessCommand.Help + "\n" + HeadsCommand.Help + "\n" + GenerateCommand.Help + "\n" + TrainCommand.Help);
        return 0;
    }
}
