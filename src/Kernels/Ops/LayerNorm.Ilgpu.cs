using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Headlight.Kernels;

/// <summary>
/// LayerNorm on ILGPU: one warp per row (shuffle reductions) where the backend has warps and rows are at most
/// <see cref="GroupReduce.MaxWarpRow"/> long, else one group per row (shared-memory reductions); one thread per
/// row on ILGPU's CPU accelerator beyond tiny inputs. The parameter gradient keeps its column kernel.
/// </summary>
internal sealed partial class IlgpuBackend
{
    internal override void LayerNormForward(Tensor<float> x, Tensor<float> gamma, Tensor<float> beta, Tensor<float> y, float epsilon,
        Tensor<float>? mean, Tensor<float>? rstd, Tensor<float>? residual, Tensor<float>? sum, bool? perThread, int rows, int d)
    {
        // The LN input lives in sum, else (fused) in y until it is normalised in place, else in x.
        var input = sum ?? (residual is not null ? y : x);
        int flags = (residual is not null ? LayerNorm.FlagResidual : 0) | (mean is not null ? LayerNorm.FlagMean : 0) | (rstd is not null ? LayerNorm.FlagRstd : 0);

        // ILGPU's CPU accelerator synchronises a group's OS threads at every barrier: beyond tiny inputs a
        // thread per row, without barriers, is far faster there.
        if (perThread ?? (IsSimulator && (long)rows * d > LayerNorm.SimulatorGroupWork))
        {
            using var rowKernel = Launch("LayerNorm.ForwardPerThread", static acc => acc.LoadAutoGroupedKernel<
                Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, int, float, int>(LayerNorm.ForwardPerThreadKernel));
            rowKernel.Kernel(rowKernel.Stream, rows,
                x.View, (residual ?? x).View, input.View, gamma.View, beta.View, y.View,
                (mean ?? x).View, (rstd ?? x).View, d, epsilon, flags);
            return;
        }

        if (GroupReduce.UseWarpRows(this, d))
        {
            using var warpKernel = Launch("LayerNorm.ForwardWarp", static acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, int, int, float, int>(LayerNorm.ForwardWarpKernel));
            warpKernel.Kernel(warpKernel.Stream, GroupReduce.WarpRows(this, rows),
                x.View, (residual ?? x).View, input.View, gamma.View, beta.View, y.View,
                (mean ?? x).View, (rstd ?? x).View, rows, d, epsilon, flags);
            return;
        }

        using var launch = Launch("LayerNorm.Forward", static acc => acc.LoadKernel<
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            ArrayView<float>, ArrayView<float>, int, float, int>(LayerNorm.ForwardKernel));
        int group = LayerNorm.RowGroupSize(this, d);
        launch.Kernel(launch.Stream, new KernelConfig(rows, group),
            x.View, (residual ?? x).View, input.View, gamma.View, beta.View, y.View,
            (mean ?? x).View, (rstd ?? x).View, d, epsilon, flags);
    }

    internal override void LayerNormBackward(Tensor<float> dy, Tensor<float> input, Tensor<float> gamma, Tensor<float> mean, Tensor<float> rstd,
        Tensor<float> dx, Tensor<float>? dgamma, Tensor<float>? dbeta, bool accumulate, bool accumulateInput, int rows, int d)
    {
        // The column sums run first: they read dy, which dx may overwrite.
        if (dgamma is not null || dbeta is not null)
        {
            if (rows == 0)
            {
                LayerNorm.ClearUnlessAccumulating(dgamma, dbeta, accumulate);
            }
            else
            {
                using var columns = Launch("LayerNorm.BackwardParameters", static acc => acc.LoadKernel<
                    ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                    int, int, int, int>(LayerNorm.ParameterGradientKernel));
                // Up to 32 columns by up to 8 row lanes; fewer for tiny shapes.
                int max = GroupReduce.GroupSizeFor(this);
                int perGroup = Math.Min(Math.Min(LayerNorm.ColumnsPerGroup, LayerNorm.PowerOfTwoAtLeast(d)), max);
                int group = perGroup * Math.Min(max / perGroup, LayerNorm.PowerOfTwoAtLeast(rows));
                int flags = (dgamma is not null ? LayerNorm.FlagGamma : 0) | (dbeta is not null ? LayerNorm.FlagBeta : 0) | (accumulate ? LayerNorm.FlagAccumulate : 0);
                columns.Kernel(columns.Stream, new KernelConfig((d + perGroup - 1) / perGroup, group),
                    dy.View, input.View, mean.View, rstd.View, (dgamma ?? gamma).View, (dbeta ?? gamma).View,
                    rows, d, perGroup, flags);
            }
        }

        if (rows == 0)
        {
            return;
        }

        if (GroupReduce.UseWarpRows(this, d))
        {
            using var warpKernel = Launch("LayerNorm.BackwardWarp", static acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
                int, int, int>(LayerNorm.BackwardWarpKernel));
            warpKernel.Kernel(warpKernel.Stream, GroupReduce.WarpRows(this, rows),
                dy.View, input.View, gamma.View, mean.View, rstd.View, dx.View, rows, d, accumulateInput ? 1 : 0);
            return;
        }

        using var launch = Launch("LayerNorm.Backward", static acc => acc.LoadKernel<
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
            int, int>(LayerNorm.BackwardKernel));
        launch.Kernel(launch.Stream, new KernelConfig(rows, LayerNorm.RowGroupSize(this, d)),
            dy.View, input.View, gamma.View, mean.View, rstd.View, dx.View, d, accumulateInput ? 1 : 0);
    }

    internal override void LayerNormRelevance(Tensor<float> dy, Tensor<float> gamma, Tensor<float> rstd, Tensor<float> dx, bool accumulateInput, int rows, int d)
    {
        if (GroupReduce.UseWarpRows(this, d))
        {
            using var warpKernel = Launch("LayerNorm.RelevanceWarp", static acc => acc.LoadKernel<
                ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int>(LayerNorm.RelevanceWarpKernel));
            warpKernel.Kernel(warpKernel.Stream, GroupReduce.WarpRows(this, rows),
                dy.View, gamma.View, rstd.View, dx.View, rows, d, accumulateInput ? 1 : 0);
            return;
        }

        using var launch = Launch("LayerNorm.Relevance", static acc => acc.LoadKernel<
            ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(LayerNorm.RelevanceKernel));
        launch.Kernel(launch.Stream, new KernelConfig(rows, LayerNorm.RowGroupSize(this, d)),
            dy.View, gamma.View, rstd.View, dx.View, d, accumulateInput ? 1 : 0);
    }
}

/// <summary>LayerNorm's ILGPU kernels and their launch shapes.</summary>
public static partial class LayerNorm
{
    // On ILGPU's CPU accelerator, inputs up to this many elements keep the group-per-row kernel (so tests of tiny
    // shapes still run it there); larger ones take the barrier-free thread-per-row kernel.
    internal const long SimulatorGroupWork = 1 << 10;

    // Kernel flags.
    internal const int FlagResidual = 1;
    internal const int FlagMean = 2;
    internal const int FlagRstd = 4;
    internal const int FlagGamma = 1;
    internal const int FlagBeta = 2;
    internal const int FlagAccumulate = 4;

    // Columns one group of the dgamma/dbeta kernel covers: a warp reads 32 neighbouring floats per row.
    internal const int ColumnsPerGroup = 32;

    /// <summary>
    /// The power-of-two group size for a kernel that gives one group to each row of <paramref name="length"/>
    /// elements: the smallest that covers the row, at most <see cref="GroupReduce.GroupSizeFor(IlgpuBackend)"/>. Short rows
    /// then do not keep a 256-thread group waiting at every barrier (which ILGPU's CPU simulator pays for dearly).
    /// </summary>
    internal static int RowGroupSize(IlgpuBackend backend, int length) => Math.Min(PowerOfTwoAtLeast(length), GroupReduce.GroupSizeFor(backend));

    internal static int PowerOfTwoAtLeast(int value)
    {
        int size = 1;
        while (size < value && size < GroupReduce.MaxGroupSize)
        {
            size *= 2;
        }

        return size;
    }

    internal static void ClearUnlessAccumulating(Tensor<float>? dgamma, Tensor<float>? dbeta, bool accumulate)
    {
        if (!accumulate)
        {
            dgamma?.Fill(0f);
            dbeta?.Fill(0f);
        }
    }

    // One group per row. x, residual [rows, d] -> input [rows, d] (x + residual, when fused), y [rows, d]; mean, rstd [rows]
    internal static void ForwardKernel(ArrayView<float> x, ArrayView<float> residual, ArrayView<float> input,
        ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd,
        int d, float epsilon, int flags)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int row = Grid.IdxX;
        long start = (long)row * d;

        // Pass 1: the first mean, writing the fused sum on the way (each thread rereads only what it wrote).
        float acc = 0f;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            float v = x[start + c];
            if ((flags & FlagResidual) != 0)
            {
                v += residual[start + c];
                input[start + c] = v;
            }

            acc += v;
        }

        float m0 = GroupReduce.Sum(scratch, acc) / d;

        // Pass 2: deviations from m0, without cancellation.
        float s1 = 0f;
        float s2 = 0f;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            float dv = input[start + c] - m0;
            s1 += dv;
            s2 += dv * dv;
        }

        s1 = GroupReduce.Sum(scratch, s1);
        s2 = GroupReduce.Sum(scratch, s2);
        float shift = s1 / d;
        float rs = 1f / XMath.Sqrt(XMath.Max((s2 / d) - (shift * shift), 0f) + epsilon);

        // Pass 3: normalise; y may be x or input, read and written by the same thread.
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            y[start + c] = ((input[start + c] - m0 - shift) * rs * gamma[c]) + beta[c];
        }

        if (Group.IdxX == 0)
        {
            if ((flags & FlagMean) != 0)
            {
                mean[row] = m0 + shift;
            }

            if ((flags & FlagRstd) != 0)
            {
                rstd[row] = rs;
            }
        }
    }

    // One thread per row, no shared memory or barriers (for ILGPU's CPU accelerator); the same three passes
    // as ForwardKernel. x, residual [rows, d] -> input [rows, d], y [rows, d]; mean, rstd [rows]
    internal static void ForwardPerThreadKernel(Index1D row, ArrayView<float> x, ArrayView<float> residual, ArrayView<float> input,
        ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd,
        int d, float epsilon, int flags)
    {
        long start = (long)row.X * d;
        float acc = 0f;
        for (int c = 0; c < d; c++)
        {
            float v = x[start + c];
            if ((flags & FlagResidual) != 0)
            {
                v += residual[start + c];
                input[start + c] = v;
            }

            acc += v;
        }

        float m0 = acc / d;
        float s1 = 0f;
        float s2 = 0f;
        for (int c = 0; c < d; c++)
        {
            float dv = input[start + c] - m0;
            s1 += dv;
            s2 += dv * dv;
        }

        float shift = s1 / d;
        float rs = 1f / XMath.Sqrt(XMath.Max((s2 / d) - (shift * shift), 0f) + epsilon);
        for (int c = 0; c < d; c++)
        {
            y[start + c] = ((input[start + c] - m0 - shift) * rs * gamma[c]) + beta[c];
        }

        if ((flags & FlagMean) != 0)
        {
            mean[row] = m0 + shift;
        }

        if ((flags & FlagRstd) != 0)
        {
            rstd[row] = rs;
        }
    }

    // One group per row. dy, input [rows, d], gamma [d], mean, rstd [rows] -> dx [rows, d]
    internal static void BackwardKernel(ArrayView<float> dy, ArrayView<float> input, ArrayView<float> gamma,
        ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> dx, int d, int accumulate)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int row = Grid.IdxX;
        long start = (long)row * d;
        float m = mean[row];
        float rs = rstd[row];
        float a = 0f;
        float b = 0f;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            float gw = dy[start + c] * gamma[c];
            a += gw;
            b += gw * ((input[start + c] - m) * rs);
        }

        a = GroupReduce.Sum(scratch, a) / d;
        b = GroupReduce.Sum(scratch, b) / d;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            float xhat = (input[start + c] - m) * rs;
            float value = ((dy[start + c] * gamma[c]) - a - (xhat * b)) * rs;
            dx[start + c] = accumulate != 0 ? dx[start + c] + value : value;
        }
    }

    // Column sums without atomics: a group covers perGroup columns with Group.DimX / perGroup row lanes, then
    // adds the lanes in shared memory. dy, input [rows, d], mean, rstd [rows] -> dgamma, dbeta [d]
    internal static void ParameterGradientKernel(ArrayView<float> dy, ArrayView<float> input, ArrayView<float> mean,
        ArrayView<float> rstd, ArrayView<float> dgamma, ArrayView<float> dbeta, int rows, int d, int perGroup, int flags)
    {
        var gammaScratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        var betaScratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int tid = Group.IdxX;
        int lane = tid / perGroup;
        int lanes = Group.DimX / perGroup;
        int column = (Grid.IdxX * perGroup) + (tid - (lane * perGroup));
        float sg = 0f;
        float sb = 0f;
        if (column < d)
        {
            for (int r = lane; r < rows; r += lanes)
            {
                long i = ((long)r * d) + column;
                float g = dy[i];
                sg += g * ((input[i] - mean[r]) * rstd[r]);
                sb += g;
            }
        }

        gammaScratch[tid] = sg;
        betaScratch[tid] = sb;
        Group.Barrier();
        for (int stride = lanes / 2; stride > 0; stride /= 2)
        {
            if (lane < stride)
            {
                gammaScratch[tid] += gammaScratch[tid + (stride * perGroup)];
                betaScratch[tid] += betaScratch[tid + (stride * perGroup)];
            }

            Group.Barrier();
        }

        if (lane == 0 && column < d)
        {
            bool add = (flags & FlagAccumulate) != 0;
            if ((flags & FlagGamma) != 0)
            {
                dgamma[column] = add ? dgamma[column] + gammaScratch[tid] : gammaScratch[tid];
            }

            if ((flags & FlagBeta) != 0)
            {
                dbeta[column] = add ? dbeta[column] + betaScratch[tid] : betaScratch[tid];
            }
        }
    }

    // One group per row. dy [rows, d], gamma [d], rstd [rows] -> dx [rows, d]
    internal static void RelevanceKernel(ArrayView<float> dy, ArrayView<float> gamma, ArrayView<float> rstd, ArrayView<float> dx, int d, int accumulate)
    {
        var scratch = SharedMemory.Allocate<float>(GroupReduce.MaxGroupSize);
        int row = Grid.IdxX;
        long start = (long)row * d;
        float rs = rstd[row];
        float a = 0f;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            a += dy[start + c] * gamma[c];
        }

        a = GroupReduce.Sum(scratch, a) / d;
        for (int c = Group.IdxX; c < d; c += Group.DimX)
        {
            float value = ((dy[start + c] * gamma[c]) - a) * rs;
            dx[start + c] = accumulate != 0 ? dx[start + c] + value : value;
        }
    }

    // One warp per row, several rows per group; the row's sums meet in shuffles, with no shared memory or
    // barrier. A warp past the last row runs the same steps on an empty row and writes nothing.
    // x, residual [rows, d] -> input [rows, d] (x + residual, when fused), y [rows, d]; mean, rstd [rows]
    internal static void ForwardWarpKernel(ArrayView<float> x, ArrayView<float> residual, ArrayView<float> input,
        ArrayView<float> gamma, ArrayView<float> beta, ArrayView<float> y, ArrayView<float> mean, ArrayView<float> rstd,
        int rows, int d, float epsilon, int flags)
    {
        int row = GroupReduce.WarpRow();
        int width = row < rows ? d : 0;
        int lane = Warp.LaneIdx;
        int lanes = Warp.WarpSize;
        long start = (long)row * d;

        // The same three passes as ForwardKernel; each lane rereads only the columns it wrote.
        float acc = 0f;
        for (int c = lane; c < width; c += lanes)
        {
            float v = x[start + c];
            if ((flags & FlagResidual) != 0)
            {
                v += residual[start + c];
                input[start + c] = v;
            }

            acc += v;
        }

        float m0 = GroupReduce.WarpSum(acc) / d;
        float s1 = 0f;
        float s2 = 0f;
        for (int c = lane; c < width; c += lanes)
        {
            float dv = input[start + c] - m0;
            s1 += dv;
            s2 += dv * dv;
        }

        s1 = GroupReduce.WarpSum(s1);
        s2 = GroupReduce.WarpSum(s2);
        float shift = s1 / d;
        float rs = 1f / XMath.Sqrt(XMath.Max((s2 / d) - (shift * shift), 0f) + epsilon);
        for (int c = lane; c < width; c += lanes)
        {
            y[start + c] = ((input[start + c] - m0 - shift) * rs * gamma[c]) + beta[c];
        }

        if (lane == 0 && row < rows)
        {
            if ((flags & FlagMean) != 0)
            {
                mean[row] = m0 + shift;
            }

            if ((flags & FlagRstd) != 0)
            {
                rstd[row] = rs;
            }
        }
    }

    // One warp per row, as ForwardWarpKernel. dy, input [rows, d], gamma [d], mean, rstd [rows] -> dx [rows, d]
    internal static void BackwardWarpKernel(ArrayView<float> dy, ArrayView<float> input, ArrayView<float> gamma,
        ArrayView<float> mean, ArrayView<float> rstd, ArrayView<float> dx, int rows, int d, int accumulate)
    {
        int row = GroupReduce.WarpRow();
        bool active = row < rows;
        int width = active ? d : 0;
        int lane = Warp.LaneIdx;
        int lanes = Warp.WarpSize;
        long start = (long)row * d;
        float m = active ? mean[row] : 0f;
        float rs = active ? rstd[row] : 0f;
        float a = 0f;
        float b = 0f;
        for (int c = lane; c < width; c += lanes)
        {
            float gw = dy[start + c] * gamma[c];
            a += gw;
            b += gw * ((input[start + c] - m) * rs);
        }

        a = GroupReduce.WarpSum(a) / d;
        b = GroupReduce.WarpSum(b) / d;
        for (int c = lane; c < width; c += lanes)
        {
            float xhat = (input[start + c] - m) * rs;
            float value = ((dy[start + c] * gamma[c]) - a - (xhat * b)) * rs;
            dx[start + c] = accumulate != 0 ? dx[start + c] + value : value;
        }
    }

    // One warp per row, as ForwardWarpKernel. dy [rows, d], gamma [d], rstd [rows] -> dx [rows, d]
    internal static void RelevanceWarpKernel(ArrayView<float> dy, ArrayView<float> gamma, ArrayView<float> rstd, ArrayView<float> dx, int rows, int d, int accumulate)
    {
        int row = GroupReduce.WarpRow();
        bool active = row < rows;
        int width = active ? d : 0;
        int lane = Warp.LaneIdx;
        int lanes = Warp.WarpSize;
        long start = (long)row * d;
        float rs = active ? rstd[row] : 0f;
        float a = 0f;
        for (int c = lane; c < width; c += lanes)
        {
            a += dy[start + c] * gamma[c];
        }

        a = GroupReduce.WarpSum(a) / d;
        for (int c = lane; c < width; c += lanes)
        {
            float value = ((dy[start + c] * gamma[c]) - a) * rs;
            dx[start + c] = accumulate != 0 ? dx[start + c] + value : value;
        }
    }
}
