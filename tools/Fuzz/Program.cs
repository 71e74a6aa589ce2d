using Headlight.Fuzz;
using SharpFuzz;

// headlight-fuzz TARGET: AFL++ feeds inputs on stdin; one process serves many inputs (fork server).
if (args.Length != 1 || !FuzzTargets.Names.Contains(args[0]))
{
    Console.Error.WriteLine($"usage: Headlight.Fuzz {string.Join("|", FuzzTargets.Names)}");
    return 2;
}

string target = args[0];
Fuzzer.OutOfProcess.Run(stream =>
{
    using var buffer = new MemoryStream();
    stream.CopyTo(buffer);
    FuzzTargets.Run(target, buffer.ToArray());
});
return 0;
