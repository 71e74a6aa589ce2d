using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace Headlight.Models.Loading;

/// <summary>Typed, validated reads from small JSON configuration files; every failure names the file and key.</summary>
internal static class Json
{
    /// <summary>The largest configuration file read (configs are a few kilobytes).</summary>
    private const long MaxLength = 64 << 20;

    /// <summary>Parses a JSON file.</summary>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    /// <exception cref="ModelFormatException">The file is not valid JSON.</exception>
    public static JsonDocument Parse(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"File not found: {path}", path);
        }

        long length = new FileInfo(path).Length;
        if (length > MaxLength)
        {
            throw new ModelFormatException(path, "(file)", $"a JSON configuration of at most {MaxLength} bytes", $"{length} bytes");
        }

        var bytes = new ReadOnlyMemory<byte>(File.ReadAllBytes(path));
        if (bytes.Span.StartsWith(Encoding.UTF8.Preamble))
        {
            bytes = bytes[Encoding.UTF8.Preamble.Length..];
        }

        if (!Utf8.IsValid(bytes.Span))
        {
            throw new ModelFormatException(path, "(file)", "UTF-8 JSON", "bytes that are not valid UTF-8");
        }

        try
        {
            return JsonDocument.Parse(bytes, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(path, "(file)", "valid JSON", $"invalid JSON ({e.Message})", e);
        }
    }

    /// <summary>A required string property.</summary>
    public static string RequiredString(string path, JsonElement parent, string key, string? context = null)
    {
        string field = context is null ? key : $"{context}.{key}";
        if (parent.ValueKind != JsonValueKind.Object || !parent.TryGetProperty(key, out var value))
        {
            throw new ModelFormatException(path, field, "a string", "nothing");
        }

        if (value.ValueKind != JsonValueKind.String)
        {
            throw new ModelFormatException(path, field, "a string", value.GetRawText());
        }

        return value.GetString()!;
    }

    /// <summary>A required positive integer property.</summary>
    public static int RequiredPositiveInt(string path, JsonElement parent, string key)
    {
        if (!parent.TryGetProperty(key, out var value))
        {
            throw new ModelFormatException(path, key, "a positive integer", "nothing");
        }

        return PositiveInt(path, value, key);
    }

    /// <summary>A positive 32-bit integer.</summary>
    public static int PositiveInt(string path, JsonElement value, string key)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int result) || result <= 0)
        {
            throw new ModelFormatException(path, key, "a positive integer", value.GetRawText());
        }

        return result;
    }

    /// <summary>A required positive, finite number property.</summary>
    public static double RequiredPositiveNumber(string path, JsonElement parent, string key)
    {
        if (!parent.TryGetProperty(key, out var value))
        {
            throw new ModelFormatException(path, key, "a positive number", "nothing");
        }

        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double result) || !double.IsFinite(result) || result <= 0)
        {
            throw new ModelFormatException(path, key, "a positive number", value.GetRawText());
        }

        return result;
    }

    /// <summary>An optional array of strings (empty when absent).</summary>
    public static string[] OptionalStrings(string path, JsonElement parent, string key)
    {
        if (!parent.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return [];
        }

        if (value.ValueKind != JsonValueKind.Array || value.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
        {
            throw new ModelFormatException(path, key, "an array of strings", value.GetRawText());
        }

        return value.EnumerateArray().Select(e => e.GetString()!).ToArray();
    }

    /// <summary>An optional string (null when absent or null).</summary>
    public static string? OptionalString(string path, JsonElement parent, string key)
    {
        if (!parent.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.String)
        {
            throw new ModelFormatException(path, key, "a string", value.GetRawText());
        }

        return value.GetString();
    }
}
