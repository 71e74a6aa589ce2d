using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>Matrix cases for <see cref="Gelu"/>, both forms, inputs spread over [-8, 8] to reach both tails.</summary>
public sealed class GeluCases : IOpCaseSource
{
    /// <inheritdoc />
    public IEnumerable<OpCase> Cases()
    {
        foreach (int rows in TestData.Sizes)
        {
            foreach (int columns in new[] { 1, 33, 130 })
            {
                bool tiny = rows <= 17 && columns <= 33;
                foreach (var form in new[] { GeluForm.Erf, GeluForm.Tanh })
                {
                    string shape = $"{form} [{rows}, {columns}]";
                    yield return new OpCase("Gelu.Forward", shape, tiny, d => Forward(d, rows, columns, form));
                    yield return new OpCase("Gelu.Backward", shape, tiny, d => Backward(d, rows, columns, form));
                }
            }
        }

        // More than one host chunk (2^15 elements), with a ragged last chunk.
        foreach (var form in new[] { GeluForm.Erf, GeluForm.Tanh })
        {
            yield return new OpCase("Gelu.Backward", $"{form} [300, 130]", false, d => Backward(d, 300, 130, form));
        }
    }

    private static void Forward(Device device, int rows, int columns, GeluForm form)
    {
        float[] x = TestData.Uniform(21, rows * columns, 8f);
        using var tx = device.FromHost<float>(x, rows, columns);
        using var ty = TestData.Poisoned(device, rows, columns);
        Gelu.Forward(tx, ty, form);
        Func<double, double> f = form == GeluForm.Erf ? ReferenceMath.GeluErf : ReferenceMath.GeluTanh;
        Compare.Close(ty.ToArray(), x.Select(v => f(v)).ToArray(), Tolerances.Gelu, "y");
    }

    private static void Backward(Device device, int rows, int columns, GeluForm form)
    {
        float[] x = TestData.Uniform(22, rows * columns, 8f);
        float[] dy = TestData.Normal(23, rows * columns);
        using var tx = device.FromHost<float>(x, rows, columns);
        using var tdy = device.FromHost<float>(dy, rows, columns);
        using var tdx = TestData.Poisoned(device, rows, columns);
        Gelu.Backward(tx, tdy, tdx, form);
        Func<double, double> f = form == GeluForm.Erf ? ReferenceMath.GeluErfDerivative : ReferenceMath.GeluTanhDerivative;
        Compare.Close(tdx.ToArray(), x.Select((v, i) => dy[i] * f(v)).ToArray(), Tolerances.Gelu, "dx");
    }
}
