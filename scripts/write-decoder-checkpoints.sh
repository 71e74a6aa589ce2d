#!/usr/bin/env bash
# Writes random real-size decoder checkpoints in Hugging Face layout into DIR (outside the repo; 2.9 GB):
#   DIR/llama-3.2-1b  Llama-3.2-1B's config, 1,235,814,400 parameters, BF16, two shards + index
#   DIR/pythia-160m   Pythia-160M's config, 162,322,944 parameters, F16, with Pythia's attention buffers
# then loads the 1B one on cpu and prints its parameter count, load time, peak memory and a short generation.
# Usage: scripts/write-decoder-checkpoints.sh [DIR]   (default /tmp/headlight-decoders)
set -euo pipefail
dir="${1:-/tmp/headlight-decoders}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dotnet build "$root/bench" -c Release -v q -nologo >/dev/null
dll="$root/bench/bin/Release/net10.0/Headlight.Bench.dll"
dotnet "$dll" write-decoders "$dir"
dotnet "$dll" load-decoder "$dir/llama-3.2-1b"
dotnet "$dll" load-decoder "$dir/pythia-160m"
