namespace Headlight.Explain;

/// <summary>
/// One word order's curves on one case: the target after removing the first k words of the order (deletion) and
/// with only the first k words present (insertion), at fractions k/M of the M words.
/// </summary>
/// <param name="Fractions">k/M at each point, from 0 to 1.</param>
/// <param name="Deletion">The target with the first k words removed; the first point is F(x).</param>
/// <param name="Insertion">The target with only the first k words present; the last point is F(x).</param>
public sealed record FaithfulnessCurves(IReadOnlyList<double> Fractions, IReadOnlyList<double> Deletion, IReadOnlyList<double> Insertion)
{
    /// <summary>AOPC of deletion: the mean over the points of F(x) − deletion[k] (higher = the order finds what matters sooner).</summary>
    public double DeletionAopc => Deletion.Average(v => Deletion[0] - v);

    /// <summary>AOPC of insertion: the mean over the points of insertion[k] − insertion[0] (higher is better).</summary>
    public double InsertionAopc => Insertion.Average(v => v - Insertion[0]);

    /// <summary>Area under the deletion curve over the fraction removed (trapezoid rule; lower is better).</summary>
    public double DeletionArea => Area(Deletion);

    /// <summary>Area under the insertion curve over the fraction inserted (trapezoid rule; higher is better).</summary>
    public double InsertionArea => Area(Insertion);

    private double Area(IReadOnlyList<double> values)
    {
        double area = 0;
        for (int i = 1; i < values.Count; i++)
        {
            area += (Fractions[i] - Fractions[i - 1]) * (values[i] + values[i - 1]) / 2;
        }

        return area;
    }
}

/// <summary>One method's (or the random baseline's) faithfulness over all cases.</summary>
public sealed class MethodFaithfulness
{
    internal MethodFaithfulness(string method, IReadOnlyList<FaithfulnessCurves> cases, IReadOnlyList<double> grid, TimeSpan attributionTime)
    {
        Method = method;
        Cases = cases;
        DeletionAopc = cases.Average(c => c.DeletionAopc);
        InsertionAopc = cases.Average(c => c.InsertionAopc);
        DeletionArea = cases.Average(c => c.DeletionArea);
        InsertionArea = cases.Average(c => c.InsertionArea);
        MeanDeletion = grid.Select(f => cases.Average(c => Interpolate(c.Fractions, c.Deletion, f))).ToArray();
        MeanInsertion = grid.Select(f => cases.Average(c => Interpolate(c.Fractions, c.Insertion, f))).ToArray();
        AttributionTime = attributionTime;
    }

    /// <summary>The method's name (<c>random</c> for the baseline).</summary>
    public string Method { get; }

    /// <summary>The curves of every case, in case order (for the baseline: averaged over the random orders).</summary>
    public IReadOnlyList<FaithfulnessCurves> Cases { get; }

    /// <summary>Mean deletion AOPC over the cases (higher is better).</summary>
    public double DeletionAopc { get; }

    /// <summary>Mean insertion AOPC over the cases (higher is better).</summary>
    public double InsertionAopc { get; }

    /// <summary>Mean area under the deletion curve (lower is better).</summary>
    public double DeletionArea { get; }

    /// <summary>Mean area under the insertion curve (higher is better).</summary>
    public double InsertionArea { get; }

    /// <summary>The deletion curve averaged over the cases at <see cref="FaithfulnessResult.Grid"/> (each case interpolated linearly).</summary>
    public IReadOnlyList<double> MeanDeletion { get; }

    /// <summary>The insertion curve averaged over the cases at <see cref="FaithfulnessResult.Grid"/>.</summary>
    public IReadOnlyList<double> MeanInsertion { get; }

    /// <summary>Time spent computing the attributions (zero for the baseline).</summary>
    public TimeSpan AttributionTime { get; }

    private static double Interpolate(IReadOnlyList<double> x, IReadOnlyList<double> y, double at)
    {
        for (int i = 1; i < x.Count; i++)
        {
            if (at <= x[i])
            {
                double span = x[i] - x[i - 1];
                return span == 0 ? y[i] : y[i - 1] + ((y[i] - y[i - 1]) * (at - x[i - 1]) / span);
            }
        }

        return y[^1];
    }
}

/// <summary>
/// The faithfulness benchmark's result: per method, deletion and insertion curves and their AOPC and areas, and
/// the same for a random word order (the baseline a method has to beat).
/// </summary>
public sealed class FaithfulnessResult
{
    internal FaithfulnessResult(string model, string device, IReadOnlyDictionary<string, string> options, int cases, IReadOnlyList<MethodFaithfulness> methods, MethodFaithfulness random, IReadOnlyList<double> grid, int passes, TimeSpan elapsed)
    {
        Model = model;
        Device = device;
        Options = options;
        CaseCount = cases;
        Methods = methods;
        Random = random;
        Grid = grid;
        Passes = passes;
        Elapsed = elapsed;
    }

    /// <summary>The model's name.</summary>
    public string Model { get; }

    /// <summary>The device it ran on.</summary>
    public string Device { get; }

    /// <summary>The benchmark's options, as name and value.</summary>
    public IReadOnlyDictionary<string, string> Options { get; }

    /// <summary>Number of cases.</summary>
    public int CaseCount { get; }

    /// <summary>One entry per method, in the order given.</summary>
    public IReadOnlyList<MethodFaithfulness> Methods { get; }

    /// <summary>The random-order baseline.</summary>
    public MethodFaithfulness Random { get; }

    /// <summary>The fractions (0, 0.05, …, 1) at which the mean curves are given.</summary>
    public IReadOnlyList<double> Grid { get; }

    /// <summary>Rows run through the model for the curves (distinct perturbed inputs, padding rows included).</summary>
    public int Passes { get; }

    /// <summary>Wall-clock time of the whole benchmark.</summary>
    public TimeSpan Elapsed { get; }

    /// <summary>Whether <paramref name="method"/> has a higher deletion AOPC and a higher insertion AOPC than the random baseline.</summary>
    public bool BeatsRandom(MethodFaithfulness method)
    {
        ArgumentNullException.ThrowIfNull(method);
        return method.DeletionAopc > Random.DeletionAopc && method.InsertionAopc > Random.InsertionAopc;
    }
}
