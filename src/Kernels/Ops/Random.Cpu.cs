namespace Headlight.Kernels;

/// <summary>Philox on the managed SIMD backend: blocks of four over the device's workers, one job for words and floats.</summary>
internal sealed partial class CpuBackend
{
    internal override unsafe void PhiloxFill(Tensor<uint> output, ulong seed, ulong stream, ulong firstBlock)
    {
        fixed (uint* py = output.HostSpan)
        {
            Philox.RunHost(Workers, new Philox.FillJob { Words = py, Length = (int)output.Length, Seed = seed, Stream = stream, FirstBlock = firstBlock });
        }
    }

    internal override unsafe void PhiloxUniform(Tensor<float> output, ulong seed, ulong stream, ulong firstBlock)
    {
        fixed (float* py = output.HostSpan)
        {
            Philox.RunHost(Workers, new Philox.FillJob { Units = py, Length = (int)output.Length, Seed = seed, Stream = stream, FirstBlock = firstBlock });
        }
    }
}

/// <summary>Philox's host code.</summary>
public static partial class Philox
{
    private const int ParallelThreshold = 1 << 16;

    // Blocks in one item below the threshold (run on the calling thread), else about four items per thread.
    internal static void RunHost(CpuWorkers workers, FillJob job)
    {
        int blocks = BlockCount(job.Length);
        job.BlocksPerItem = job.Length < ParallelThreshold || workers.Threads == 1 ? blocks : Math.Max(1, (blocks + (4 * workers.Threads) - 1) / (4 * workers.Threads));
        workers.Run(ref job, (blocks + job.BlocksPerItem - 1) / job.BlocksPerItem);
    }

    /// <summary>
    /// Words or unit floats on the host: output [n], written to <see cref="Words"/> or, when that is null, to
    /// <see cref="Units"/>; item = <see cref="BlocksPerItem"/> consecutive blocks of four.
    /// </summary>
    internal unsafe struct FillJob : ICpuJob
    {
        public uint* Words;
        public float* Units;
        public int Length;
        public ulong Seed;
        public ulong Stream;
        public ulong FirstBlock;
        public int BlocksPerItem;

        public readonly void Execute(int item)
        {
            int first = item * BlocksPerItem;
            int last = Math.Min(BlockCount(Length), first + BlocksPerItem);
            for (int block = first; block < last; block++)
            {
                var words = BlockAt(Seed, Stream, FirstBlock + (ulong)block);
                for (int lane = 0; lane < 4 && (4 * block) + lane < Length; lane++)
                {
                    if (Words != null)
                    {
                        Words[(4 * block) + lane] = words[lane];
                    }
                    else
                    {
                        Units[(4 * block) + lane] = ToUnit(words[lane]);
                    }
                }
            }
        }
    }
}
