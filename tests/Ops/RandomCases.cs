using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="Philox"/>: Random123's known-answer vectors for Philox4x32-10, and every
/// word and uniform float against a reference written here, bit for bit, at the matrix sizes and one size
/// large enough for the host path's workers.
/// </summary>
public sealed class RandomCases : IOpCaseSource
{
    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        // Random123's kat_vectors: counter, key -> block.
        yield return new OpCase("Philox.Fill", "known answer: zeros", true, d => KnownAnswer(d, 0, 0, 0, [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]));
        yield return new OpCase("Philox.Fill", "known answer: ones", true, d => KnownAnswer(d, ulong.MaxValue, ulong.MaxValue, ulong.MaxValue, [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]));
        yield return new OpCase("Philox.Fill", "known answer: pi", true, d => KnownAnswer(
            d, 0x299f31d0_a4093822, 0x03707344_13198a2e, 0x85a308d3_243f6a88, [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]));

        foreach (int n in TestData.Sizes.Append(70_001))
        {
            bool tiny = n <= 17;
            yield return new OpCase("Philox.Fill", $"[{n}]", tiny, d => Fill(d, n, 0x0123_4567_89ab_cdef, 3, 0));
            yield return new OpCase("Philox.Fill", $"[{n}] block 2^32 - 1", tiny, d => Fill(d, n, 42, 0, uint.MaxValue));
            yield return new OpCase("Philox.Uniform", $"[{n}]", tiny, d => Uniform(d, n, 7, 1, 5));
        }

        yield return new OpCase("Philox.Fill", "[3, 5, 2]", true, d => Fill(d, 30, 9, 9, 9, [3, 5, 2]));
    }

    /// <summary>
    /// Philox4x32-10 written out plainly: ten rounds of two 32×32→64-bit products, the counter words
    /// permuted and xored with the key, the key bumped by the Weyl constants between rounds.
    /// </summary>
    public static uint[] Reference(uint[] counter, uint[] key)
    {
        uint[] x = (uint[])counter.Clone();
        uint[] k = (uint[])key.Clone();
        for (int round = 0; round < 10; round++)
        {
            ulong a = Math.BigMul(0xD2511F53u, x[0]);
            ulong b = Math.BigMul(0xCD9E8D57u, x[2]);
            x = [(uint)(b >> 32) ^ x[1] ^ k[0], (uint)b, (uint)(a >> 32) ^ x[3] ^ k[1], (uint)a];
            k = [unchecked(k[0] + 0x9E3779B9u), unchecked(k[1] + 0xBB67AE85u)];
        }

        return x;
    }

    /// <summary>Word <paramref name="index"/> of the sequence <see cref="Philox.Fill"/> writes.</summary>
    public static uint ReferenceWord(ulong seed, ulong stream, ulong firstBlock, long index)
    {
        ulong block = unchecked(firstBlock + (ulong)(index / 4));
        uint[] words = Reference([(uint)block, (uint)(block >> 32), (uint)stream, (uint)(stream >> 32)], [(uint)seed, (uint)(seed >> 32)]);
        return words[index % 4];
    }

    private static void KnownAnswer(Device device, ulong seed, ulong stream, ulong block, uint[] expected)
    {
        Assert.Equal(expected, Reference([(uint)block, (uint)(block >> 32), (uint)stream, (uint)(stream >> 32)], [(uint)seed, (uint)(seed >> 32)]));
        using var y = device.Allocate<uint>(4);
        y.Fill(0xDEADBEEF);
        Philox.Fill(y, seed, stream, block);
        Assert.Equal(expected, y.ToArray());
    }

    private static void Fill(Device device, int n, ulong seed, ulong stream, ulong firstBlock, int[]? shape = null)
    {
        using var y = device.Allocate<uint>(shape ?? [n]);
        y.Fill(0xDEADBEEF);
        Philox.Fill(y, seed, stream, firstBlock);
        uint[] actual = y.ToArray();
        for (int i = 0; i < n; i++)
        {
            uint expected = ReferenceWord(seed, stream, firstBlock, i);
            if (actual[i] != expected)
            {
                Assert.Fail($"word {i} is {actual[i]:x8}, expected {expected:x8}.");
            }
        }
    }

    private static void Uniform(Device device, int n, ulong seed, ulong stream, ulong firstBlock)
    {
        using var y = TestData.Poisoned(device, n);
        Philox.Uniform(y, seed, stream, firstBlock);
        float[] actual = y.ToArray();
        var expected = new float[n];
        double sum = 0;
        for (int i = 0; i < n; i++)
        {
            expected[i] = (float)((ReferenceWord(seed, stream, firstBlock, i) >> 8) / 16777216.0);
            Assert.InRange(actual[i], 0f, 0.99999995f);
            sum += actual[i];
        }

        Compare.Exact(actual, expected, "uniform");
        if (n > 10_000)
        {
            // The mean of n uniforms has standard deviation 0.29/√n (0.001 here).
            Assert.InRange(sum / n, 0.495, 0.505);
        }
    }
}
