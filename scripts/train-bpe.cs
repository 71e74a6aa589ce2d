#:project ../src/Models/Headlight.Models.csproj
#:property TreatWarningsAsErrors=false
// Trains a byte-level BPE tokenizer.json on a folder of .txt files (one document per file) and
// prints the time it took.
// usage: dotnet run scripts/train-bpe.cs -- <text folder> <vocabulary size> <out tokenizer.json> [first file] [end file]
// (only files whose names sort in [first, end) are used, e.g. ca01.txt ck01.txt for Brown's A–J).
using System.Diagnostics;
using Headlight.Models.Training;

string folder = args[0];
int size = int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture);
string output = args[2];
string first = args.Length > 3 ? args[3] : "";
string end = args.Length > 4 ? args[4] : "\uffff";
string[] files = Directory.GetFiles(folder, "*.txt")
    .Where(f => string.CompareOrdinal(Path.GetFileName(f), first) >= 0 && string.CompareOrdinal(Path.GetFileName(f), end) < 0)
    .Order(StringComparer.Ordinal).ToArray();
string[] documents = files.Select(File.ReadAllText).ToArray();
var clock = Stopwatch.StartNew();
ByteLevelBpeTrainer.Train(documents, size, output);
Console.WriteLine($"trained {size} entries on {files.Length} files ({documents.Sum(d => (long)d.Length)} chars) in {clock.Elapsed.TotalSeconds:F2} s -> {output}");
