using Headlight.Kernels;

namespace Headlight.Tests.Kernels;

/// <summary>Opening devices by name, listing them, and the errors for absent backends.</summary>
public sealed class DeviceTests
{
    [Fact]
    public void Cpu_opens_by_name_and_allocates()
    {
        using var device = Device.Open("cpu");
        Assert.Equal(DeviceKind.Cpu, device.Kind);
        using var t = device.FromHost<float>([1f, 2f, 3f, 4f, 5f, 6f], 2, 3);
        Assert.Equal(new[] { 2, 3 }, t.Shape.Dims.ToArray());
        Assert.Equal(new[] { 1f, 2f, 3f, 4f, 5f, 6f }, t.ToArray());
    }

    [Fact]
    public void Ilgpu_cpu_opens_with_room_for_256_thread_groups()
    {
        using var device = Device.Open("ilgpu-cpu");
        var ilgpu = Assert.IsType<IlgpuDevice>(device);
        Assert.True(ilgpu.MaxGroupSize >= 256, $"group size {ilgpu.MaxGroupSize}");
    }

    [Fact]
    public void Unknown_name_is_an_argument_error_listing_the_names()
    {
        var e = Assert.Throws<ArgumentException>(() => Device.Open("tpu"));
        Assert.Contains("tpu", e.Message, StringComparison.Ordinal);
        Assert.Contains("ilgpu-cpu", e.Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Absent_backend_says_what_was_found()
    {
        Skip.If(Device.List().Any(d => d.Kind == DeviceKind.Cuda), "a CUDA device is present");
        var e = Assert.Throws<DeviceNotFoundException>(() => Device.Open("cuda"));
        Assert.Contains("No cuda device", e.Message, StringComparison.Ordinal);
        Assert.Contains("cpu (", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Device_index_beyond_the_count_is_reported()
    {
        var e = Assert.Throws<DeviceNotFoundException>(() => Device.Open("ilgpu-cpu:99"));
        Assert.Contains("index 99", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Environment_variable_selects_the_device_when_no_name_is_given()
    {
        string? before = Environment.GetEnvironmentVariable(Device.EnvironmentVariable);
        try
        {
            Environment.SetEnvironmentVariable(Device.EnvironmentVariable, "ilgpu-cpu");
            using var device = Device.Open();
            Assert.Equal(DeviceKind.IlgpuCpu, device.Kind);
        }
        finally
        {
            Environment.SetEnvironmentVariable(Device.EnvironmentVariable, before);
        }
    }

    [Fact]
    public void Auto_without_gpus_is_the_managed_cpu()
    {
        bool gpu = Device.List().Any(d => d.Kind == DeviceKind.Cuda || (d.Kind == DeviceKind.OpenCL && d.Properties["type"] == "GPU"));
        using var device = Device.Open("auto");
        Assert.Equal(gpu ? device.Kind : DeviceKind.Cpu, device.Kind);
    }

    [Fact]
    public void List_always_contains_cpu_with_properties()
    {
        var cpu = Assert.Single(Device.List(), d => d.Name == "cpu");
        Assert.True(cpu.MemoryBytes > 0);
        Assert.Contains("simd_bits", cpu.Properties.Keys);
    }

    [Fact]
    public void Views_share_memory_and_do_not_own_it()
    {
        using var device = Device.Open("cpu");
        using var t = device.FromHost<float>([1f, 2f, 3f, 4f, 5f, 6f], 6);
        var view = t.Slice(2, 2, 2);
        Assert.False(view.IsOwner);
        Assert.Equal(new[] { 3f, 4f, 5f, 6f }, view.ToArray());
        view.Dispose();
        Assert.False(t.IsDisposed);
        t.Dispose();
        Assert.True(view.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => view.ToArray());
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("ilgpu-cpu")]
    public void Copy_length_mismatch_and_bad_views_are_argument_errors(string backend)
    {
        var device = Backends.Require(backend);
        using var t = device.Allocate<float>(2, 3);
        Assert.Throws<ArgumentException>(() => t.CopyFrom(new float[5]));
        Assert.Throws<ArgumentException>(() => t.CopyTo(new float[7]));
        Assert.Throws<ArgumentException>(() => t.Reshape(4, 2));
        Assert.Throws<ArgumentException>(() => t.Slice(4, 3));
        Assert.Throws<ArgumentException>(() => device.Allocate<float>(-1, 2));
    }
}
