namespace Headlight.Kernels;

/// <summary>The hyperparameters of one AdamW update.</summary>
/// <param name="LearningRate">The step size <c>lr</c>.</param>
/// <param name="Beta1">The decay of the first-moment average, in <c>[0, 1)</c>.</param>
/// <param name="Beta2">The decay of the second-moment average, in <c>[0, 1)</c>.</param>
/// <param name="Epsilon">Added to the bias-corrected root of the second moment; positive.</param>
/// <param name="WeightDecay">The decoupled decay: parameters are multiplied by <c>1 − lr·WeightDecay</c> first.</param>
public readonly record struct AdamWSettings(float LearningRate, float Beta1 = 0.9f, float Beta2 = 0.999f, float Epsilon = 1e-8f, float WeightDecay = 0f);

/// <summary>Decoupled-weight-decay Adam (Loshchilov &amp; Hutter; PyTorch's AdamW order) on one flat parameter buffer, in place.</summary>
public static partial class AdamW
{
    /// <summary>
    /// With <c>g = gradient·gradientScale[0]</c>: <c>p ← p·(1 − lr·weightDecay)</c>; <c>m ← β1·m + (1−β1)·g</c>;
    /// <c>v ← β2·v + (1−β2)·g²</c>; <c>p ← p − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + ε)</c>, element-wise.
    /// </summary>
    /// <param name="parameter">The parameters, updated in place.</param>
    /// <param name="gradient">Their gradient, same shape.</param>
    /// <param name="m">The first-moment average, same shape, updated in place (zeros before step 1).</param>
    /// <param name="v">The second-moment average, same shape, updated in place (zeros before step 1).</param>
    /// <param name="settings">The hyperparameters.</param>
    /// <param name="step">The step number <c>t ≥ 1</c> (for the bias corrections).</param>
    /// <param name="gradientScale">Optional <c>[1]</c> device scalar multiplying the gradient (e.g. the clipping factor of
    /// <see cref="GradientNorm.ClipFactor"/>); null = 1.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, misshaped or sharing memory with
    /// another, the step is below 1, or a setting is out of range.</exception>
    public static void Step(Tensor<float> parameter, Tensor<float> gradient, Tensor<float> m, Tensor<float> v,
        AdamWSettings settings, int step, Tensor<float>? gradientScale = null)
    {
        var args = new OpArgs("AdamW.Step").Add("parameter", parameter).Add("gradient", gradient).Add("m", m).Add("v", v)
            .AddOptional("gradientScale", gradientScale)
            .Require(gradient.Shape == parameter.Shape && m.Shape == parameter.Shape && v.Shape == parameter.Shape,
                "parameter, gradient, m and v must have the same shape")
            .RequireShape("gradientScale", gradientScale, 1)
            .Require(step >= 1, $"step must be 1 or more (got {step})")
            .Require(float.IsFinite(settings.LearningRate), $"LearningRate must be finite (got {settings.LearningRate})")
            .Require(settings.Beta1 is >= 0f and < 1f, $"Beta1 must be in [0, 1) (got {settings.Beta1})")
            .Require(settings.Beta2 is >= 0f and < 1f, $"Beta2 must be in [0, 1) (got {settings.Beta2})")
            .Require(settings.Epsilon > 0f && float.IsFinite(settings.Epsilon), $"Epsilon must be positive and finite (got {settings.Epsilon})")
            .Require(float.IsFinite(settings.WeightDecay) && settings.WeightDecay >= 0f, $"WeightDecay must be finite and not negative (got {settings.WeightDecay})");
        if (parameter.Length == 0)
        {
            return;
        }

        (string Name, Tensor<float>? Tensor)[] operands = [("parameter", parameter), ("gradient", gradient), ("m", m), ("v", v), ("gradientScale", gradientScale)];
        for (int i = 0; i < 4; i++)
        {
            for (int j = i + 1; j < operands.Length; j++)
            {
                if (operands[j].Tensor is { } other && args.Backend.AttentionSharesMemory(operands[i].Tensor!, other))
                {
                    args.Fail($"'{operands[i].Name}' overlaps '{operands[j].Name}' in memory; each operand needs its own memory");
                }
            }
        }

        // Bias corrections in double on the host: β^t for t in the thousands loses nothing there.
        var p = new Parameters
        {
            Decay = (float)(1.0 - ((double)settings.LearningRate * settings.WeightDecay)),
            Beta1 = settings.Beta1,
            Beta2 = settings.Beta2,
            StepSize = (float)(settings.LearningRate / (1.0 - Math.Pow(settings.Beta1, step))),
            InverseRootCorrection = (float)(1.0 / Math.Sqrt(1.0 - Math.Pow(settings.Beta2, step))),
            Epsilon = settings.Epsilon,
        };
        args.Backend.AdamWStep(parameter, gradient, m, v, gradientScale, p);
    }

    /// <summary>One update's constants: <c>p ← p·Decay − StepSize·m / (√v·InverseRootCorrection + Epsilon)</c>.</summary>
    internal struct Parameters
    {
        public float Decay;
        public float Beta1;
        public float Beta2;
        public float StepSize;
        public float InverseRootCorrection;
        public float Epsilon;
    }
}

/// <summary>AdamW's entry point on each backend (AdamW.Cpu.cs, AdamW.Ilgpu.cs).</summary>
internal abstract partial class Backend
{
    /// <summary>One AdamW update of every element; operands validated, none empty, none sharing memory.</summary>
    internal abstract void AdamWStep(Tensor<float> parameter, Tensor<float> gradient, Tensor<float> m, Tensor<float> v,
        Tensor<float>? gradientScale, AdamW.Parameters p);
}
