using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Headlight.Models.Loading;

/// <summary>
/// Rejects weights holding NaN or ±∞ when they are loaded: such a weight otherwise runs silently
/// and turns every output it touches into NaN. Set <see cref="EnvironmentVariable"/> to 1 to load
/// them anyway (for inspecting a broken checkpoint).
/// </summary>
internal static class NonFiniteWeights
{
    /// <summary>The environment variable that turns the check off when set to 1.</summary>
    public const string EnvironmentVariable = "HEADLIGHT_ALLOW_NONFINITE_WEIGHTS";

    private const int ExponentBits = 0x7F800000;

    // Set for the duration of one load that asked to skip the check (flows into tasks that load started).
    private static readonly AsyncLocal<bool> Allowed = new();

    /// <summary>Whether the check is on: not inside <see cref="Allow"/>, and the environment variable not set (read per load).</summary>
    public static bool Enabled => !Allowed.Value && Environment.GetEnvironmentVariable(EnvironmentVariable) != "1";

    /// <summary>Turns the check off on this flow of execution until the result is disposed, when <paramref name="allow"/> is true.</summary>
    public static Scope Allow(bool allow)
    {
        bool previous = Allowed.Value;
        Allowed.Value = previous || allow;
        return new Scope(previous);
    }

    /// <summary>Restores the previous setting.</summary>
    public readonly struct Scope(bool previous) : IDisposable
    {
        public void Dispose() => Allowed.Value = previous;
    }

    /// <summary>Throws naming the file, the tensor and the first bad flat index.</summary>
    public static void Check(string file, string tensor, ReadOnlySpan<float> values)
    {
        int bad = FirstNonFinite(values);
        if (bad >= 0)
        {
            throw new ModelFormatException(file, tensor, $"finite values (set {EnvironmentVariable}=1 to load it anyway)",
                string.Create(CultureInfo.InvariantCulture, $"{values[bad]} at flat index {bad}"));
        }
    }

    /// <summary>The index of the first NaN or infinity, or −1: a float is not finite when its exponent bits are all ones.</summary>
    public static int FirstNonFinite(ReadOnlySpan<float> values)
    {
        ReadOnlySpan<int> bits = MemoryMarshal.Cast<float, int>(values);
        ref int start = ref MemoryMarshal.GetReference(bits);
        int i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var mask = Vector512.Create(ExponentBits);
            for (; i <= bits.Length - Vector512<int>.Count; i += Vector512<int>.Count)
            {
                if (Vector512.EqualsAny(Vector512.LoadUnsafe(ref start, (nuint)i) & mask, mask))
                {
                    break;
                }
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var mask = Vector256.Create(ExponentBits);
            for (; i <= bits.Length - Vector256<int>.Count; i += Vector256<int>.Count)
            {
                if (Vector256.EqualsAny(Vector256.LoadUnsafe(ref start, (nuint)i) & mask, mask))
                {
                    break;
                }
            }
        }

        // The rest, or the vector that held a bad value.
        for (; i < bits.Length; i++)
        {
            if ((bits[i] & ExponentBits) == ExponentBits)
            {
                return i;
            }
        }

        return -1;
    }
}
