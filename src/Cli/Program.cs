using Headlight.Kernels;

namespace Headlight.Cli;

/// <summary>The <c>headlight</c> command.</summary>
internal static class Program
{
    private static readonly HashSet<string> FlagNames = new(StringComparer.Ordinal) { "json", "help", "truncate", "keep-special", "compare", "no-importance" };

    private static int Main(string[] args)
    {
        try
        {
            var cli = CliArgs.Parse(args, FlagNames);
            return cli.Command switch
            {
                "devices" => DevicesCommand.Run(cli, Console.Out),
                "embed" => EmbedCommand.Run(cli, Console.Out),
                "attend" => AttendCommand.Run(cli, Console.Out),
                "logits" => LogitsCommand.Run(cli, Console.Out),
                "generate" => GenerateCommand.Run(cli, Console.Out),
                "explain" => ExplainCommand.Run(cli, Console.Out),
                "heads" => HeadsCommand.Run(cli, Console.Out),
                "help" or "--help" or "-h" => Help(Console.Out),
                _ => throw new UsageException($"Unknown command '{cli.Command}'. Run 'headlight help'."),
            };
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"headlight: {e.Message}");
            return 2;
        }
        catch (Exception e) when (e is ArgumentException or DeviceNotFoundException or IOException or InvalidDataException or FormatException
            or InvalidOperationException or Headlight.Models.ModelFormatException or Headlight.Models.Tokenization.VocabularyFormatException)
        {
            Console.Error.WriteLine($"headlight: {Message(e)}");
            return 1;
        }
    }

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
              logits TEXT [--top K]      a decoder's top-k next tokens at every position (--json: all logits)
              generate TEXT [-n N]       greedy continuation by a decoder
              explain TEXT --target T    which tokens and words the target depends on (gradients, integrated gradients)
              heads [--compare A B ...]  the head census: what every attention head does, against random-weight controls
              devices                    list the devices Headlight can run on

            Common options:
              --model NAME|PATH                         minilm (default), arcticxs, a Hugging Face folder or an .onnx file
              --ids 1,2,3[;4,5]                         token ids instead of text (rows separated by ';')
              --truncate                                cut texts longer than the model's positions instead of failing
              --device auto|cpu|ilgpu-cpu|opencl|cuda   where to run (default: $HEADLIGHT_DEVICE or auto)
              --json                                    machine-readable output on stdout
            """ + "\n\n" + ExplainCommand.TargetHelp + "\n" + HeadsCommand.Help);
        return 0;
    }
}
