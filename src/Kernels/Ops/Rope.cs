namespace Headlight.Kernels;

/// <summary>
/// Rotary position embedding (rotate_half layout, as Hugging Face Llama/GPT-NeoX): within each head, the first
/// <c>rotaryDims</c> dims rotate in pairs <c>(j, j + rotaryDims/2)</c>, <c>j &lt; rotaryDims/2</c>; the rest of the head
/// is copied unchanged. The angles come from a table <c>[P, rotaryDims]</c> (see <see cref="Table"/>) indexed by a
/// position per token, so a decoder with a cache passes positions offset by the cache length.
/// </summary>
/// <remarks>
/// On the cpu backend a position outside <c>[0, P)</c> is an <see cref="ArgumentException"/>. On accelerators the
/// positions are not downloaded; a position outside the table is clamped to <c>[0, P − 1]</c>, so nothing is read
/// out of bounds.
/// </remarks>
public static partial class Rope
{
    /// <summary>
    /// The angle table <c>[positions, rotaryDims]</c>: row <c>t</c> holds <c>cos(t·invFreq[j])</c> at column <c>j</c> and
    /// <c>sin(t·invFreq[j])</c> at column <c>rotaryDims/2 + j</c>, <c>j &lt; rotaryDims/2 = invFreq.Length</c>;
    /// computed in float64 and rounded to float32.
    /// </summary>
    /// <param name="inverseFrequencies">The inverse frequencies, e.g. <c>θ^(−2j/rotaryDims)</c>.</param>
    /// <param name="positions">Rows of the table; not negative.</param>
    /// <returns>The row-major table, <c>positions · 2 · invFreq.Length</c> values.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="positions"/> is negative.</exception>
    public static float[] Table(ReadOnlySpan<double> inverseFrequencies, int positions)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(positions);
        int half = inverseFrequencies.Length;
        var table = new float[checked(positions * 2 * half)];
        for (int t = 0; t < positions; t++)
        {
            for (int j = 0; j < half; j++)
            {
                double angle = t * inverseFrequencies[j];
                table[(t * 2 * half) + j] = (float)Math.Cos(angle);
                table[(t * 2 * half) + half + j] = (float)Math.Sin(angle);
            }
        }

        return table;
    }

    /// <summary>
    /// Rotates every head of every token: with <c>r = rotaryDims</c>, <c>c, s</c> the table's cos and sin at the token's
    /// position, <c>y[j] = x[j]·c − x[j + r/2]·s</c>, <c>y[j + r/2] = x[j + r/2]·c + x[j]·s</c> for <c>j &lt; r/2</c>
    /// and <c>y[j] = x[j]</c> for <c>j ≥ r</c>.
    /// </summary>
    /// <param name="input">The heads, <c>[batch, seq, width]</c> viewed as in <see cref="AttentionOperand"/>.</param>
    /// <param name="output">The rotated heads, <c>[batch, seq, width′]</c> (its width may differ); may be exactly the region of <paramref name="input"/> (in place), no other overlap.</param>
    /// <param name="heads">Heads per token.</param>
    /// <param name="headDim">Dimensions per head.</param>
    /// <param name="rotaryDims">Rotated dimensions per head: even, 0 to <paramref name="headDim"/> (0 copies).</param>
    /// <param name="positions">The table row of each token, <c>[batch, seq]</c>.</param>
    /// <param name="table">The angle table <c>[P, rotaryDims]</c> (any <c>[P, c]</c> when <paramref name="rotaryDims"/> is 0).</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, misshaped or overlapping, or (cpu) a position is outside the table.</exception>
    public static void Forward(AttentionOperand input, AttentionOperand output, int heads, int headDim, int rotaryDims,
        Tensor<int> positions, Tensor<float> table)
    {
        var args = new OpArgs("Rope.Forward").Add("input", input.Tensor).Add("output", output.Tensor).Add("positions", positions).Add("table", table);
        var layout = Check(ref args, input, "input", output, "output", heads, headDim, rotaryDims, positions, table);
        CheckWritten(args, layout, output, "output", [(input, "input")]);
        if (layout.Rows == 0 || layout.Heads == 0 || layout.HeadDim == 0)
        {
            return;
        }

        args.Backend.RopeCheckPositions(args, positions, layout.Positions);
        args.Backend.RopeApply(input.Tensor, output.Tensor, null, positions, table, layout, RopeMode.Forward, 0f, accumulate: false);
    }

    /// <summary>
    /// The transpose of <see cref="Forward"/> (rotation by −angle): <c>dInput = Rᵀ·dOutput</c>, with the same layout rules;
    /// overwrites <paramref name="dInput"/>, or adds to it with <paramref name="accumulate"/>.
    /// </summary>
    /// <param name="dOutput">The gradient of the output, <c>[batch, seq, width]</c>.</param>
    /// <param name="dInput">The gradient of the input, <c>[batch, seq, width′]</c>; may be exactly the region of <paramref name="dOutput"/>.</param>
    /// <param name="heads">Heads per token.</param>
    /// <param name="headDim">Dimensions per head.</param>
    /// <param name="rotaryDims">Rotated dimensions per head: even, 0 to <paramref name="headDim"/>.</param>
    /// <param name="positions">The table row of each token, <c>[batch, seq]</c>.</param>
    /// <param name="table">The angle table <c>[P, rotaryDims]</c>.</param>
    /// <param name="accumulate">Add to <paramref name="dInput"/> instead of overwriting it.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, misshaped or overlapping, or (cpu) a position is outside the table.</exception>
    public static void Backward(AttentionOperand dOutput, AttentionOperand dInput, int heads, int headDim, int rotaryDims,
        Tensor<int> positions, Tensor<float> table, bool accumulate = false)
    {
        var args = new OpArgs("Rope.Backward").Add("dOutput", dOutput.Tensor).Add("dInput", dInput.Tensor).Add("positions", positions).Add("table", table);
        var layout = Check(ref args, dOutput, "dOutput", dInput, "dInput", heads, headDim, rotaryDims, positions, table);
        CheckWritten(args, layout, dInput, "dInput", [(dOutput, "dOutput")]);
        if (layout.Rows == 0 || layout.Heads == 0 || layout.HeadDim == 0)
        {
            return;
        }

        args.Backend.RopeCheckPositions(args, positions, layout.Positions);
        args.Backend.RopeApply(dOutput.Tensor, dInput.Tensor, null, positions, table, layout, RopeMode.Transpose, 0f, accumulate);
    }

    #region LRP

    /// <summary>
    /// The LRP ε-rule of this linear map in signal form (relevance = tensor ⊙ signal):
    /// <c>dInput = Rᵀ·(dOutput ⊙ z/(z + ε·sign z))</c> with <c>z = output</c>, the forward's rotated values (sign 0 counts
    /// as +; where <c>z + ε·sign z</c> is 0, i.e. z = 0 with ε = 0, the ratio is 1, so ε = 0 is exactly <see cref="Backward"/>).
    /// Relevance is conserved up to the ε absorption: <c>Σ input ⊙ dInput = Σ output ⊙ dOutput · z/(z + ε·sign z)</c>.
    /// </summary>
    /// <param name="output">The forward's output <c>z</c>, <c>[batch, seq, width]</c>.</param>
    /// <param name="dOutput">The signal at the output, laid out like <paramref name="output"/> (its own width and first column).</param>
    /// <param name="dInput">The signal at the input; may be exactly the region of <paramref name="dOutput"/>, must not overlap <paramref name="output"/>.</param>
    /// <param name="heads">Heads per token.</param>
    /// <param name="headDim">Dimensions per head.</param>
    /// <param name="rotaryDims">Rotated dimensions per head: even, 0 to <paramref name="headDim"/>.</param>
    /// <param name="positions">The table row of each token, <c>[batch, seq]</c>.</param>
    /// <param name="table">The angle table <c>[P, rotaryDims]</c>.</param>
    /// <param name="epsilon">The stabiliser ε ≥ 0.</param>
    /// <param name="accumulate">Add to <paramref name="dInput"/> instead of overwriting it.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device, misshaped or overlapping, ε is negative or not finite, or (cpu) a position is outside the table.</exception>
    public static void Relevance(AttentionOperand output, AttentionOperand dOutput, AttentionOperand dInput, int heads,
        int headDim, int rotaryDims, Tensor<int> positions, Tensor<float> table, float epsilon, bool accumulate = false)
    {
        var args = new OpArgs("Rope.Relevance").Add("output", output.Tensor).Add("dOutput", dOutput.Tensor).Add("dInput", dInput.Tensor)
            .Add("positions", positions).Add("table", table)
            .Require(float.IsFinite(epsilon) && epsilon >= 0, $"epsilon must be finite and not negative (got {epsilon})");
        var layout = Check(ref args, dOutput, "dOutput", dInput, "dInput", heads, headDim, rotaryDims, positions, table);
        var z = Operand(args, output, "output", layout, dOutput.Tensor.Shape[0], dOutput.Tensor.Shape[1]);
        layout.ZStride = z.Stride;
        layout.ZColumn = z.Column;
        CheckWritten(args, layout, dInput, "dInput", [(dOutput, "dOutput"), (output, "output")]);
        if (layout.Rows == 0 || layout.Heads == 0 || layout.HeadDim == 0)
        {
            return;
        }

        args.Backend.RopeCheckPositions(args, positions, layout.Positions);
        args.Backend.RopeApply(dOutput.Tensor, dInput.Tensor, output.Tensor, positions, table, layout, RopeMode.Relevance, epsilon, accumulate);
    }

    #endregion

    #region Validation

    // Checks sizes, the read and written operands and positions/table; returns the layout the backends index with.
    private static RopeLayout Check(ref OpArgs args, AttentionOperand read, string readName, AttentionOperand written, string writtenName,
        int heads, int headDim, int rotaryDims, Tensor<int> positions, Tensor<float> table)
    {
        args.Require(heads >= 0 && headDim >= 0, $"heads ({heads}) and headDim ({headDim}) must not be negative")
            .Require(rotaryDims >= 0 && rotaryDims <= headDim && rotaryDims % 2 == 0, $"rotaryDims ({rotaryDims}) must be even and in [0, headDim = {headDim}]")
            .Require(read.Tensor.Shape.Rank == 3, $"'{readName}' must be [batch, seq, width]");
        int batch = read.Tensor.Shape[0];
        int seq = read.Tensor.Shape[1];
        args.Require(positions.Shape.Rank == 2 && positions.Shape[0] == batch && positions.Shape[1] == seq, $"'positions' must be [batch, seq] = [{batch}, {seq}]")
            .Require(table.Shape.Rank == 2 && (rotaryDims == 0 || table.Shape[1] == rotaryDims), $"'table' must be [P, rotaryDims] = [P, {rotaryDims}]")
            .Require(table.Shape[0] >= 1 || batch * seq == 0 || rotaryDims == 0, "'table' must have at least one row");
        var layout = new RopeLayout
        {
            Rows = args.ToInt32((long)batch * seq, "batch·seq"),
            Heads = heads,
            HeadDim = headDim,
            Half = rotaryDims / 2,
            Positions = table.Shape[0],
            Columns = args.ToInt32((long)heads * headDim, "heads·headDim"),
        };
        (layout.InStride, layout.InColumn) = Operand(args, read, readName, layout, batch, seq);
        (layout.OutStride, layout.OutColumn) = Operand(args, written, writtenName, layout, batch, seq);
        return layout;
    }

    private static (int Stride, int Column) Operand(OpArgs args, AttentionOperand operand, string name, RopeLayout layout, int batch, int seq)
    {
        var dims = operand.Tensor.Shape;
        long end = (long)operand.FirstColumn + layout.Columns;
        if (!(dims.Rank == 3 && dims[0] == batch && dims[1] == seq && operand.FirstColumn >= 0 && end <= dims[2]))
        {
            args.Fail($"'{name}' must be [batch, seq, width] = [{batch}, {seq}, width] with FirstColumn {operand.FirstColumn} ≥ 0 and FirstColumn + heads·headDim = {end} ≤ width");
        }

        return (dims[2], operand.FirstColumn);
    }

    // The written operand may be exactly the region of the first read one (in place); any other shared memory is an error.
    private static void CheckWritten(OpArgs args, RopeLayout layout, AttentionOperand written, string name, ReadOnlySpan<(AttentionOperand Operand, string Name)> read)
    {
        for (int i = 0; i < read.Length; i++)
        {
            var other = read[i].Operand;
            if (written.Tensor.Length == 0 || other.Tensor.Length == 0 || !args.Backend.AttentionSharesMemory(written.Tensor, other.Tensor))
            {
                continue;
            }

            bool sameView = written.Tensor.Offset == other.Tensor.Offset && written.Tensor.Shape == other.Tensor.Shape;
            if (sameView && written.FirstColumn == other.FirstColumn && i == 0)
            {
                continue;
            }

            if (sameView && (written.FirstColumn >= other.FirstColumn + layout.Columns || other.FirstColumn >= written.FirstColumn + layout.Columns))
            {
                continue;
            }

            args.Fail($"'{name}' overlaps '{read[i].Name}' in memory; it may only be exactly the same region as '{read[0].Name}'");
        }
    }

    #endregion
}

/// <summary>What a <see cref="Rope"/> launch computes.</summary>
internal enum RopeMode
{
    /// <summary>Rotation by +angle.</summary>
    Forward = 0,

    /// <summary>Rotation by −angle (the transpose).</summary>
    Transpose = 1,

    /// <summary>The ε-rule: the transpose of <c>g ⊙ z/(z + ε·sign z)</c>.</summary>
    Relevance = 2,
}

/// <summary>The sizes and strides of one <see cref="Rope"/> call, passed by value to kernels.</summary>
internal struct RopeLayout
{
    public int Rows;      // batch·seq tokens
    public int Heads;
    public int HeadDim;
    public int Half;      // rotaryDims / 2
    public int Positions; // table rows P
    public int Columns;   // heads·headDim
    public int InStride;
    public int InColumn;
    public int OutStride;
    public int OutColumn;
    public int ZStride;
    public int ZColumn;

    // Work items per head: one per rotated pair, one per copied dimension.
    public readonly int ItemsPerHead => HeadDim - Half;
}

/// <summary>Rope's entry points on each backend (Rope.Cpu.cs, Rope.Ilgpu.cs).</summary>
internal abstract partial class Backend
{
    /// <summary>Checks that every position indexes the table where that costs no device round trip (the cpu); devices clamp instead.</summary>
    internal abstract void RopeCheckPositions(in OpArgs args, Tensor<int> positions, int tableRows);

    /// <summary>
    /// <c>dst = R·src</c>, <c>Rᵀ·src</c> or <c>Rᵀ·(src ⊙ z/(z + ε·sign z))</c> as <paramref name="mode"/> says, overwriting or adding;
    /// operands validated, none empty. <paramref name="z"/> is given only for <see cref="RopeMode.Relevance"/>.
    /// </summary>
    internal abstract void RopeApply(Tensor<float> src, Tensor<float> dst, Tensor<float>? z, Tensor<int> positions, Tensor<float> table,
        RopeLayout layout, RopeMode mode, float epsilon, bool accumulate);
}

/// <summary>Rope's scalar rule shared by the backends.</summary>
public static partial class Rope
{
    /// <summary><c>z/(z + ε·sign z)</c> with sign 0 counted as +, and 1 where that denominator is 0; usable inside ILGPU kernels.</summary>
    internal static float Ratio(float z, float epsilon)
    {
        float den = z + (z >= 0f ? epsilon : -epsilon);
        return den == 0f ? 1f : z / den;
    }
}
