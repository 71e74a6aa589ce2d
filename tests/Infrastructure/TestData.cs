using Headlight.Kernels;

namespace Headlight.Tests;

/// <summary>Deterministic random inputs and NaN-poisoned outputs for op tests.</summary>
public static class TestData
{
    /// <summary>The sizes every op is tested at: 1, 3, 17, 33, 65, 130, and 67 (not a multiple of any tile size used).</summary>
    public static readonly int[] Sizes = [1, 3, 17, 33, 65, 130, 67];

    /// <summary>Sizes small enough for ILGPU's CPU simulator.</summary>
    public static readonly int[] TinySizes = [1, 3, 17];

    /// <summary>Uniform values in [-scale, scale), reproducible from <paramref name="seed"/>.</summary>
    public static float[] Uniform(int seed, long count, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (long i = 0; i < count; i++)
        {
            values[i] = (float)((random.NextDouble() * 2 - 1) * scale);
        }

        return values;
    }

    /// <summary>Standard normal values times <paramref name="scale"/>, reproducible from <paramref name="seed"/>.</summary>
    public static float[] Normal(int seed, long count, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (long i = 0; i < count; i++)
        {
            double u1 = 1.0 - random.NextDouble();
            double u2 = random.NextDouble();
            values[i] = (float)(Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2) * scale);
        }

        return values;
    }

    /// <summary>Allocates a tensor on <paramref name="device"/> filled with NaN, so an element an op forgets to write fails the comparison.</summary>
    public static Tensor<float> Poisoned(Device device, params int[] shape)
    {
        var tensor = device.Allocate<float>(shape);
        tensor.Fill(float.NaN);
        return tensor;
    }

    /// <summary>Widens floats to doubles for a float64 reference.</summary>
    public static double[] ToDouble(ReadOnlySpan<float> values)
    {
        var result = new double[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            result[i] = values[i];
        }

        return result;
    }
}
