using Headlight.Kernels;

namespace Headlight.Tests.Ops;

/// <summary>
/// Matrix cases for <see cref="Gelu.Relevance"/>, the identity rule: the relevance at the input equals the relevance at
/// the output, <c>R_x = R_y = gelu(x)·dy</c>, with inputs over [-8, 8] and exact zeros.
/// </summary>
public sealed class GeluLrpCases : IOpCaseSource
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
                    yield return new OpCase("Gelu.Relevance", $"{form} [{rows}, {columns}]", tiny, d => Identity(d, rows, columns, form));
                }
            }
        }

        foreach (var form in new[] { GeluForm.Erf, GeluForm.Tanh })
        {
            yield return new OpCase("Gelu.Relevance", $"{form} [300, 130] (several host chunks)", false, d => Identity(d, 300, 130, form));
            yield return new OpCase("Gelu.Relevance", $"{form} x = 0 passes half the signal", true, d => AtZero(d, form));
        }
    }

    private static void Identity(Device device, int rows, int columns, GeluForm form)
    {
        float[] x = TestData.Uniform(831, rows * columns, 8f);
        float[] dy = TestData.Normal(832, rows * columns);
        using var tx = device.FromHost<float>(x, rows, columns);
        using var tdy = device.FromHost<float>(dy, rows, columns);
        using var tdx = TestData.Poisoned(device, rows, columns);
        Gelu.Relevance(tx, tdy, tdx, form);
        Func<double, double> f = form == GeluForm.Erf ? ReferenceMath.GeluErf : ReferenceMath.GeluTanh;
        var expected = x.Select((v, i) => f(v) * dy[i]).ToArray();
        Compare.Close(ElementwiseLrpCases.Relevance(x, tdx.ToArray()), expected, Tolerances.Gelu, "R_x = x ⊙ dx vs R_y");
    }

    // At x = 0 the relevance is 0, and the signal is the limit of gelu(x)/x there: one half, for both forms.
    private static void AtZero(Device device, GeluForm form)
    {
        using var tx = device.FromHost<float>([0f, 0f], 2);
        using var tdy = device.FromHost<float>([2f, -4f], 2);
        using var tdx = TestData.Poisoned(device, 2);
        Gelu.Relevance(tx, tdy, tdx, form);
        Compare.Close(tdx.ToArray(), [1.0, -2.0], Tolerances.Gelu, "dx at 0");
    }
}
