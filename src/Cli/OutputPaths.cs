namespace Headlight.Cli;

/// <summary>
/// Checks output paths before a command starts its work, so that a report asked for at a
/// directory, in a missing folder or where nothing may be written fails at once with a usage
/// error rather than after minutes of computing (or with an unhandled I/O exception).
/// </summary>
internal static class OutputPaths
{
    /// <summary>Checks that <paramref name="path"/>, given as <c>--<paramref name="option"/></c>, can be written as a file.</summary>
    public static void CheckFile(string option, string? path)
    {
        if (path is null)
        {
            return;
        }

        string full = FullPath(option, path, "FILE");
        if (Directory.Exists(full))
        {
            throw new UsageException($"--{option} '{path}' is a directory: give a file name.");
        }

        string? parent = Path.GetDirectoryName(full);
        if (parent is not null && !Directory.Exists(parent))
        {
            throw new UsageException($"--{option} '{path}': the folder '{parent}' does not exist.");
        }

        try
        {
            if (File.Exists(full))
            {
                // Opened for writing and closed again: the old contents stay until the report replaces them.
                using var existing = new FileStream(full, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
            }
            else
            {
                using var probe = new FileStream(full, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose);
            }
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            throw new UsageException($"--{option} '{path}' cannot be written: {e.Message}");
        }
    }

    /// <summary>Checks (creating it if need be) that <paramref name="path"/>, given as <c>--<paramref name="option"/></c>, is a folder files can be written in.</summary>
    public static void CheckDirectory(string option, string? path)
    {
        if (path is null)
        {
            return;
        }

        string full = FullPath(option, path, "DIR");
        if (File.Exists(full))
        {
            throw new UsageException($"--{option} '{path}' is a file: give a folder.");
        }

        try
        {
            Directory.CreateDirectory(full);
            using var probe = new FileStream(Path.Combine(full, $".headlight-{Environment.ProcessId}.tmp"), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose);
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            throw new UsageException($"--{option} '{path}' is not a folder that can be written: {e.Message}");
        }
    }

    private static string FullPath(string option, string path, string what)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            throw new UsageException($"--{option} needs a {what}, got an empty value.");
        }

        try
        {
            return Path.GetFullPath(path);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw new UsageException($"--{option} '{path}' is not a valid path: {e.Message}");
        }
    }
}
