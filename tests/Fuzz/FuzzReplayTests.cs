using Headlight.Fuzz;
using Headlight.Tests.Loading;

namespace Headlight.Tests.Fuzz;

/// <summary>
/// Every saved fuzz input (the seed corpora and any findings saved beside them under
/// tools/Fuzz/corpus/TARGET) replayed through the fuzz targets, plus fixed-seed truncations and byte
/// flips of each: all must end normally or in a typed error, never another exception.
/// </summary>
public sealed class FuzzReplayTests
{
    private const int MutationsPerFile = 150;

    // Bytes that change a parse: zero, high bit, digits and signs, JSON punctuation, line ends.
    private static readonly byte[] Interesting = [0, 0xFF, 0x80, 0x7F, (byte)'0', (byte)'9', (byte)'-', (byte)'e', (byte)'"', (byte)'{', (byte)'}', (byte)'[', (byte)']', (byte)',', (byte)':', (byte)'\n', (byte)' '];

    public static TheoryData<string, string> SavedInputs()
    {
        var data = new TheoryData<string, string>();
        string corpus = Path.Combine(LoadingFiles.RepositoryRoot(), "tools", "Fuzz", "corpus");
        foreach (string target in FuzzTargets.Names)
        {
            string folder = Path.Combine(corpus, target);
            Assert.True(Directory.Exists(folder), $"missing seed corpus {folder}");
            foreach (string file in Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            {
                data.Add(target, Path.GetRelativePath(corpus, file));
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(SavedInputs))]
    public void Saved_input_and_its_mutations_end_in_typed_errors_only(string target, string file)
    {
        byte[] input = File.ReadAllBytes(Path.Combine(LoadingFiles.RepositoryRoot(), "tools", "Fuzz", "corpus", file));
        FuzzTargets.Run(target, input);

        var random = new Random(StringComparer.Ordinal.GetHashCode(file) & 0x7FFF);
        for (int i = 0; i < MutationsPerFile && input.Length > 0; i++)
        {
            byte[] mutated = (byte[])input.Clone();
            switch (i % 3)
            {
                case 0:
                    mutated = mutated[..random.Next(mutated.Length)];
                    break;
                case 1:
                    mutated[random.Next(mutated.Length)] ^= (byte)(1 << random.Next(8));
                    break;
                default:
                    mutated[random.Next(mutated.Length)] = Interesting[random.Next(Interesting.Length)];
                    break;
            }

            try
            {
                FuzzTargets.Run(target, mutated);
            }
            catch (Exception e)
            {
                Assert.Fail($"{file}, mutation {i} ({Convert.ToHexString(mutated.AsSpan(0, Math.Min(64, mutated.Length)))}…): {e.GetType().Name}: {e.Message}");
            }
        }
    }
}
