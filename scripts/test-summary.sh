#!/usr/bin/env bash
# Summarises dotnet test results (TRX files) per backend column.
#
# usage: scripts/test-summary.sh HOST.trx... [--root ROOT.trx...]
#
# A test's column is its method name when that names a backend (OpMatrix.Cpu -> cpu, IlgpuCpu ->
# ilgpu-cpu, OpenCL -> opencl, Cuda -> cuda), else "other". Every test in a ROOT file (the run in
# the trixie root, scripts/opencl-root.sh) counts in the opencl column and replaces the host's
# result of the same test, which skipped there for want of an OpenCL device.
#
# Prints one line per column (ran, passed, failed, skipped and the first skip reason), then the
# closing line "tests: N passed, N failed, N skipped". A missing file is an error (exit 2).
set -euo pipefail

operands=()
hosts=0
in_root=0
for arg in "$@"; do
    if [[ $arg == --root ]]; then
        # awk reads the assignment between files: the files after it are the root's.
        in_root=1
        operands+=(root=1)
        continue
    fi
    [[ -f $arg ]] || { echo "test-summary: no such file: $arg" >&2; exit 2; }
    operands+=("$arg")
    [[ $in_root -eq 1 ]] || hosts=$((hosts + 1))
done
if [[ $hosts -eq 0 ]]; then
    echo "usage: $0 HOST.trx... [--root ROOT.trx...]" >&2
    exit 2
fi

# POSIX awk (Debian's default is mawk): one record per <UnitTestResult>, its message from the lines after it.
awk '
    function attr(line, name,    start, rest) {
        if (!match(line, name "=\"[^\"]*\"")) return ""
        rest = substr(line, RSTART + length(name) + 2, RLENGTH - length(name) - 3)
        return unescape(rest)
    }
    function unescape(s) {
        gsub(/&quot;/, "\"", s); gsub(/&apos;/, "\047", s); gsub(/&lt;/, "<", s); gsub(/&gt;/, ">", s); gsub(/&amp;/, "\\&", s)
        return s
    }
    function column(name,    method) {
        method = name
        sub(/\(.*/, "", method)
        sub(/.*\./, "", method)
        if (method == "Cpu") return "cpu"
        if (method == "IlgpuCpu") return "ilgpu-cpu"
        if (method == "OpenCL") return "opencl"
        if (method == "Cuda") return "cuda"
        return "other"
    }
    FNR == 1 { side = root ? "root" : "host" }
    /<UnitTestResult / {
        name = attr($0, "testName")
        outcome = attr($0, "outcome")
        # The same display name may occur more than once; keep each occurrence.
        key = name SUBSEP (++seen[side, name])
        if (!(key in col)) order[++n] = key
        col[key] = root ? "opencl" : column(name)
        result[key] = outcome
        message[key] = ""
        current = key
        next
    }
    current != "" && /<Message>/ {
        text = $0
        sub(/.*<Message>/, "", text)
        sub(/<\/Message>.*/, "", text)
        message[current] = unescape(text)
    }
    /<\/UnitTestResult>/ { current = "" }
    END {
        split("cpu ilgpu-cpu opencl cuda other", columns, " ")
        for (i = 1; i <= n; i++) {
            key = order[i]; c = col[key]; o = result[key]
            total[c]++
            if (o == "Passed") passed[c]++
            else if (o == "NotExecuted" || o == "Inconclusive") {
                skipped[c]++
                if (!(c in reason)) reason[c] = message[key]
            } else failed[c]++
        }
        printf "%-10s %6s %7s %7s %8s\n", "column", "ran", "passed", "failed", "skipped"
        for (i = 1; i <= 5; i++) {
            c = columns[i]
            if (!(c in total)) continue
            line = sprintf("%-10s %6d %7d %7d %8d", c, passed[c] + failed[c], passed[c], failed[c], skipped[c])
            if (c in reason) {
                r = reason[c]
                if (length(r) > 140) r = substr(r, 1, 137) "..."
                line = line "   skipped: " r
            }
            print line
            p += passed[c]; f += failed[c]; s += skipped[c]
        }
        printf "tests: %d passed, %d failed, %d skipped\n", p, f, s
    }
' "${operands[@]}"
