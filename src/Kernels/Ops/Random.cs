namespace Headlight.Kernels;

/// <summary>
/// Philox4x32-10 (Salmon, Moraes, Dror and Shaw, 2011), a counter-based random generator: each 128-bit
/// counter and 64-bit key give one block of four 32-bit words, with no state carried between blocks. It
/// uses integer multiplication, xor and addition only, so every backend produces the same bits for the
/// same seed, and any element can be computed without computing the ones before it.
/// </summary>
/// <remarks>
/// Element <c>i</c> of an output is word <c>i mod 4</c> of block <c>firstBlock + i / 4</c>, where block
/// <c>n</c> is Philox of the counter <c>(n mod 2³², n / 2³², stream mod 2³², stream / 2³²)</c> under the key
/// <c>(seed mod 2³², seed / 2³²)</c>. Different streams of one seed are independent sequences.
/// </remarks>
public static partial class Philox
{
    /// <summary>Fills <paramref name="output"/> (any shape) with uniformly distributed 32-bit words.</summary>
    /// <param name="output">The words, in row-major order.</param>
    /// <param name="seed">The key.</param>
    /// <param name="stream">Selects an independent sequence of the same seed.</param>
    /// <param name="firstBlock">The block the first element comes from.</param>
    /// <exception cref="ArgumentException">The output is missing, freed or too large for 32-bit indexing.</exception>
    public static void Fill(Tensor<uint> output, ulong seed, ulong stream = 0, ulong firstBlock = 0)
        => Target("Philox.Fill", output)?.PhiloxFill(output, seed, stream, firstBlock);

    /// <summary>
    /// Fills <paramref name="output"/> with floats uniform on [0, 1): the top 24 bits of each word of
    /// <see cref="Fill"/> times 2⁻²⁴, so every value is exact and the same on every backend.
    /// </summary>
    /// <exception cref="ArgumentException">The output is missing, freed or too large for 32-bit indexing.</exception>
    public static void Uniform(Tensor<float> output, ulong seed, ulong stream = 0, ulong firstBlock = 0)
        => Target("Philox.Uniform", output)?.PhiloxUniform(output, seed, stream, firstBlock);

    // Fill and Uniform differ only in what a word becomes: one validation, and no backend call for an empty output.
    private static Backend? Target<T>(string op, Tensor<T> output)
        where T : unmanaged
    {
        var args = new OpArgs(op).Add("output", output);
        return output.Length == 0 ? null : args.Backend;
    }

    /// <summary>Blocks of four words that cover <paramref name="n"/> elements.</summary>
    internal static int BlockCount(int n) => (n + 3) / 4;

    /// <summary>The 32-bit words of block <paramref name="block"/> of <paramref name="stream"/> under <paramref name="seed"/>.</summary>
    internal static PhiloxBlock BlockAt(ulong seed, ulong stream, ulong block)
        => Block((uint)block, (uint)(block >> 32), (uint)stream, (uint)(stream >> 32), (uint)seed, (uint)(seed >> 32));

    /// <summary>Philox4x32 with 10 rounds of counter <c>(c0, c1, c2, c3)</c> under key <c>(k0, k1)</c>; callable from kernels.</summary>
    internal static PhiloxBlock Block(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int round = 0; round < 10; round++)
        {
            if (round > 0)
            {
                // The key schedule adds the Weyl constants (golden ratio and √3 − 1, as 32-bit fractions).
                k0 += 0x9E3779B9u;
                k1 += 0xBB67AE85u;
            }

            ulong p0 = (ulong)0xD2511F53u * c0;
            ulong p1 = (ulong)0xCD9E8D57u * c2;
            uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0;
            uint n2 = (uint)(p0 >> 32) ^ c3 ^ k1;
            c1 = (uint)p1;
            c3 = (uint)p0;
            c0 = n0;
            c2 = n2;
        }

        return new PhiloxBlock(c0, c1, c2, c3);
    }

    /// <summary>The top 24 bits of <paramref name="word"/> as a float in [0, 1), exact.</summary>
    internal static float ToUnit(uint word) => (int)(word >> 8) * (1f / 16777216f);

    /// <summary>A uniform integer in <c>[0, bound)</c> from one word: <c>⌊word · bound / 2³²⌋</c> (bias below bound / 2³²).</summary>
    internal static int Below(uint word, int bound) => (int)(((ulong)word * (uint)bound) >> 32);
}

/// <summary>One Philox block: four 32-bit words.</summary>
internal readonly struct PhiloxBlock(uint x0, uint x1, uint x2, uint x3)
{
    public uint X0 { get; } = x0;

    public uint X1 { get; } = x1;

    public uint X2 { get; } = x2;

    public uint X3 { get; } = x3;

    /// <summary>Word <paramref name="lane"/> (0 to 3).</summary>
    public uint this[int lane] => lane switch
    {
        0 => X0,
        1 => X1,
        2 => X2,
        _ => X3,
    };
}

/// <summary>Philox's entry points on each backend (Random.Cpu.cs, Random.Ilgpu.cs); the output is validated and not empty.</summary>
internal abstract partial class Backend
{
    /// <summary>Element <c>i</c> of <paramref name="output"/> = word <c>i mod 4</c> of block <c>firstBlock + i / 4</c>.</summary>
    internal abstract void PhiloxFill(Tensor<uint> output, ulong seed, ulong stream, ulong firstBlock);

    /// <summary>As <see cref="PhiloxFill"/>, each word mapped to [0, 1) by <see cref="Philox.ToUnit"/>.</summary>
    internal abstract void PhiloxUniform(Tensor<float> output, ulong seed, ulong stream, ulong firstBlock);
}
