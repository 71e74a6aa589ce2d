namespace Headlight.Models;

/// <summary>The rotary inverse frequencies of a configuration, in float64 (Hugging Face's rope initialisation).</summary>
internal static class RotaryFrequencies
{
    /// <summary>
    /// invFreq[j] = θ^(−2j/r), j &lt; r/2 (r = rotary dims), rescaled as Llama 3 does when <see cref="ModelConfig.RopeScaling"/>
    /// is set: wavelengths 2π/invFreq below original/high_freq_factor keep their frequency, those above original/low_freq_factor
    /// divide it by factor, and those between blend the two with smooth = (original/wavelength − low)/(high − low).
    /// </summary>
    public static double[] Inverse(ModelConfig config)
    {
        int r = config.RotaryDims;
        var inverse = new double[r / 2];
        for (int j = 0; j < inverse.Length; j++)
        {
            inverse[j] = 1.0 / Math.Pow(config.RopeTheta, 2.0 * j / r);
        }

        if (config.RopeScaling is { } s)
        {
            double lowWavelength = s.OriginalMaxPositions / s.LowFrequencyFactor;
            double highWavelength = s.OriginalMaxPositions / s.HighFrequencyFactor;
            for (int j = 0; j < inverse.Length; j++)
            {
                double wavelength = 2 * Math.PI / inverse[j];
                if (wavelength > lowWavelength)
                {
                    inverse[j] /= s.Factor;
                }
                else if (wavelength >= highWavelength)
                {
                    double smooth = ((s.OriginalMaxPositions / wavelength) - s.LowFrequencyFactor) / (s.HighFrequencyFactor - s.LowFrequencyFactor);
                    inverse[j] = ((1 - smooth) * inverse[j] / s.Factor) + (smooth * inverse[j]);
                }
            }
        }

        return inverse;
    }
}
