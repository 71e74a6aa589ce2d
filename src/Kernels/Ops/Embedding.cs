namespace Headlight.Kernels;

/// <summary>
/// Embedding lookup: rows of a table gathered by id, and the backward scatter-add of their
/// gradients. A bad id is an <see cref="ArgumentException"/> rather than a read outside the table,
/// and the op writes nothing. On the <c>cpu</c> device the ids are checked before anything runs; on an
/// ILGPU device they are checked by a kernel (no download inside a pass), and the exception comes from the
/// next download (<see cref="Tensor{T}.CopyTo(Span{T})"/>, <c>ToArray</c>) or <see cref="Device.Synchronize"/>.
/// </summary>
public static partial class Embedding
{
    /// <summary>
    /// <c>y[i, :] = table[ids[i], :]</c>, or <c>y[i, :] += table[ids[i], :]</c> when <paramref name="accumulate"/>
    /// is set (to add position or token-type embeddings onto word embeddings).
    /// </summary>
    /// <param name="table">The embedding table <c>[vocab, d]</c>.</param>
    /// <param name="ids">Ids of any shape, each in <c>[0, vocab)</c>.</param>
    /// <param name="y">The output <c>[ids dims..., d]</c>.</param>
    /// <param name="accumulate">Add to <paramref name="y"/> instead of overwriting it.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, or an id is outside the table (on an ILGPU device, raised by the next download or synchronisation).</exception>
    public static void Gather(Tensor<float> table, Tensor<int> ids, Tensor<float> y, bool accumulate = false)
    {
        var args = new OpArgs("Embedding.Gather").Add("table", table).Add("ids", ids).Add("y", y);
        int d = Validate(args, table, "table", ids, y, "y");
        int n = (int)ids.Length;
        if (n == 0 || d == 0)
        {
            return;
        }

        args.Backend.EmbeddingGather(table, ids, y, d, accumulate);
    }

    /// <summary>
    /// Backward of <see cref="Gather"/>: <c>dTable[ids[i], :] += dy[i, :]</c>. It always accumulates (clear
    /// <paramref name="dTable"/> first for a fresh gradient); repeated ids add up.
    /// </summary>
    /// <param name="dy">The gradient of the gathered rows <c>[ids dims..., d]</c>.</param>
    /// <param name="ids">The ids the forward gathered, each in <c>[0, vocab)</c>.</param>
    /// <param name="dTable">The table gradient <c>[vocab, d]</c>, added to.</param>
    /// <exception cref="ArgumentException">An operand is missing, freed, on another device or misshaped, or an id is outside the table (on an ILGPU device, raised by the next download or synchronisation).</exception>
    public static void ScatterAdd(Tensor<float> dy, Tensor<int> ids, Tensor<float> dTable)
    {
        var args = new OpArgs("Embedding.ScatterAdd").Add("dy", dy).Add("ids", ids).Add("dTable", dTable);
        int d = Validate(args, dTable, "dTable", ids, dy, "dy");
        int n = (int)ids.Length;
        if (n == 0 || d == 0)
        {
            return;
        }

        args.Backend.EmbeddingScatterAdd(dy, ids, dTable, d);
    }

    // Shapes, then every id against [0, vocab): all before anything is written. Returns d.
    private static int Validate(OpArgs args, Tensor<float> table, string tableName, Tensor<int> ids, Tensor<float> rows, string rowsName)
    {
        args.Require(table.Shape.Rank == 2, $"'{tableName}' must be [vocab, d]");
        int vocab = table.Shape[0];
        int d = table.Shape[1];
        var rowDims = rows.Shape.Dims;
        if (rowDims.Length != ids.Shape.Rank + 1 || !rowDims[..^1].SequenceEqual(ids.Shape.Dims) || rowDims[^1] != d)
        {
            var expected = new int[ids.Shape.Rank + 1];
            ids.Shape.Dims.CopyTo(expected);
            expected[^1] = d;
            args.RequireShape(rowsName, rows, expected);
        }

        int n = (int)ids.Length;
        if (n == 0)
        {
            return d;
        }

        args.Backend.EmbeddingCheckIds(args, ids, vocab);
        return d;
    }

    internal static void CheckIds(in OpArgs args, TensorShape shape, ReadOnlySpan<int> ids, int vocab)
    {
        for (int i = 0; i < ids.Length; i++)
        {
            if ((uint)ids[i] >= (uint)vocab)
            {
                args.Fail(IdOutsideTable(shape, i, ids[i], vocab));
            }
        }
    }

    /// <summary>The failure for id <paramref name="value"/> at flat <paramref name="flat"/> of ids shaped <paramref name="shape"/>.</summary>
    internal static string IdOutsideTable(TensorShape shape, int flat, int value, int vocab) => $"ids{Position(shape, flat)} = {value} is outside the table's rows [0, {vocab})";

    // A flat index as the position in the ids' own dimensions: [1, 4] for flat 9 of [2, 5].
    private static string Position(TensorShape shape, int flat)
    {
        var index = new int[Math.Max(shape.Rank, 1)];
        for (int axis = shape.Rank - 1; axis >= 0; axis--)
        {
            index[axis] = flat % shape[axis];
            flat /= shape[axis];
        }

        return TensorShape.Format(index);
    }
}

/// <summary>The embedding ops' entry points on each backend (Embedding.Cpu.cs, Embedding.Ilgpu.cs).</summary>
internal abstract partial class Backend
{
    /// <summary><c>y[i, :] = table[ids[i], :]</c> (or <c>+=</c>); operands and ids validated, none empty.</summary>
    internal abstract void EmbeddingGather(Tensor<float> table, Tensor<int> ids, Tensor<float> y, int d, bool accumulate);

    /// <summary><c>dTable[ids[i], :] += dy[i, :]</c>; operands and ids validated, none empty.</summary>
    internal abstract void EmbeddingScatterAdd(Tensor<float> dy, Tensor<int> ids, Tensor<float> dTable, int d);

    /// <summary>
    /// Fails <paramref name="args"/> unless every id lies in <c>[0, vocab)</c>, now or (on a device that checks
    /// in a kernel) at the next download or synchronisation; <paramref name="ids"/> is not empty.
    /// </summary>
    internal abstract void EmbeddingCheckIds(in OpArgs args, Tensor<int> ids, int vocab);
}
