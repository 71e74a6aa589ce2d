#!/usr/bin/env bash
# Fuzzes each target of tools/Fuzz with AFL++ through SharpFuzz for SECONDS (default 60): installs Debian's
# afl++ and the sharpfuzz tool when missing, builds tools/Fuzz (Release), instruments Headlight.Models.dll
# and runs afl-fuzz from the seed corpus tools/Fuzz/corpus/TARGET. Findings go to TestResults/fuzz/TARGET;
# once one is fixed, copy it into the corpus folder so the replay tests (tests/Fuzz) keep it.
# Prints one line per target (runs, crashes, hangs) and exits 1 when any target found a crash or a hang, or never
# ran an input (afl-fuzz failed to start; its log is TestResults/fuzz/TARGET.log).
# usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(safetensors config onnx vocab-txt gpt2-vocab text)
fi

if ! command -v afl-fuzz >/dev/null; then
    sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq afl++ >/dev/null
fi

tools=${HEADLIGHT_CACHE:-$HOME/.cache/headlight}/dotnet-tools
if [ ! -x "$tools/sharpfuzz" ]; then
    dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path "$tools" >/dev/null
fi

results=TestResults/fuzz
bin=$results/bin
mkdir -p "$results"
dotnet build tools/Fuzz/Headlight.Fuzz.csproj -c Release -o "$bin" -v quiet -nologo >/dev/null
"$tools/sharpfuzz" "$bin/Headlight.Models.dll" >/dev/null

# dotnet itself is not instrumented (SharpFuzz instruments the library); no UI, no CPU governor checks.
export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
status=0
for target in "${targets[@]}"; do
    findings=$results/$target
    rm -rf "$findings"
    timeout $((seconds + 60)) afl-fuzz -V "$seconds" -t 10000 -m none -i "tools/Fuzz/corpus/$target" -o "$findings" \
        -- dotnet "$bin/Headlight.Fuzz.dll" "$target" >"$findings.log" 2>&1 || true
    # A run that never started leaves no findings folder: count nothing rather than stop the script.
    crashes=$( (find "$findings" -path '*/crashes/id*' -type f 2>/dev/null || true) | wc -l)
    hangs=$( (find "$findings" -path '*/hangs/id*' -type f 2>/dev/null || true) | wc -l)
    execs=$( (grep -h '^execs_done' "$findings"/*/fuzzer_stats 2>/dev/null || true) | awk '{s+=$3} END {print s+0}')
    echo "fuzz $target: ${seconds} s, $execs runs, $crashes crashes, $hangs hangs ($findings)"
    if [ "$crashes" != 0 ] || [ "$hangs" != 0 ] || [ "$execs" = 0 ]; then
        status=1
        [ "$execs" != 0 ] || tail -n 20 "$findings.log" >&2
    fi
done
exit $status
