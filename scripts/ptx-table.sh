#!/usr/bin/env bash
# Regenerates the section "## CUDA kernels: ptxas resources (sm_90)" of bench/RESULTS.md: every ILGPU
# kernel compiled to PTX and assembled by ptxas for sm_90 (tests/Kernels/PtxAssemblyTests.cs writes the
# table), plus two SASS counts from cuobjdump: the FFMA share of Gemm's tiled inner loop and the
# local-memory instructions (LDL/STL) of the attention kernels. No GPU is needed.
#
# usage: scripts/ptx-table.sh             build the tests (Release), then regenerate
#        scripts/ptx-table.sh --no-build  reuse the Release build of the tests
#
# Only the text between the section's marker comments is replaced; the rest of the file is kept.
# When the markers are missing, the section is appended at the end.
set -Eeuo pipefail
trap 'echo "ptx-table: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

cd "$(dirname "${BASH_SOURCE[0]}")/.."
readonly RESULTS=bench/RESULTS.md
readonly HEADING='## CUDA kernels: ptxas resources (sm_90)'
readonly BEGIN='<!-- ptx-table:begin (scripts/ptx-table.sh writes this part) -->'
readonly END='<!-- ptx-table:end -->'

build=()
[[ ${1:-} == --no-build ]] && build=(--no-build)

bin=$(scripts/install-ptxas.sh --bin)
export HEADLIGHT_PTXAS=$bin/ptxas
work=$(mktemp -d /tmp/headlight-ptx-table.XXXXXX)
trap 'rm -rf "$work"' EXIT
export HEADLIGHT_PTX_TABLE=$work/table.md HEADLIGHT_PTX_DUMP=$work/dump
mkdir -p "$HEADLIGHT_PTX_DUMP"

export DOTNET_NOLOGO=1 DOTNET_CLI_TELEMETRY_OPTOUT=1 MSBUILDDISABLENODEREUSE=1 DOTNET_CLI_USE_MSBUILD_SERVER=0
dotnet test tests/Headlight.Tests.csproj -c Release "${build[@]}" \
    --filter "FullyQualifiedName~Headlight.Tests.Kernels.PtxAssemblyTests" --logger "console;verbosity=normal" \
    >"$work/test.log" 2>&1 || { tail -n 60 "$work/test.log" >&2; echo "ptx-table: the PTX tests failed" >&2; exit 1; }
[[ -s $HEADLIGHT_PTX_TABLE ]] || { tail -n 60 "$work/test.log" >&2; echo "ptx-table: no table was written (did the test skip?)" >&2; exit 1; }

# SASS of one cubin, one instruction per line: "<address> <opcode>" (addresses in hex, no 0x).
sass() {
    "$bin/cuobjdump" -sass "$1" | awk '
        match($0, /\/\*[0-9a-f]+\*\//) {
            addr = substr($0, RSTART + 2, RLENGTH - 4)
            rest = substr($0, RSTART + RLENGTH)
            sub(/^[[:space:]]+/, "", rest)
            if (rest ~ /^@!?U?P[0-9T]+/) { sub(/^@!?U?P[0-9T]+[[:space:]]+/, "", rest) }
            split(rest, w, /[[:space:]]+/)
            op = w[1]; sub(/\..*/, "", op); sub(/;$/, "", op)
            target = ""
            if (op == "BRA" && match(rest, /0x[0-9a-f]+/)) target = substr(rest, RSTART + 2, RLENGTH - 2)
            if (op != "") print addr, op, target
        }'
}

# Of the loops (backward branches) with the most FFMA, the shortest: "ffma total lds integer", where
# integer counts the address arithmetic (IADD3, LEA, IMAD, SHF).
inner_loop() {
    sass "$1" | awk '
        function hex(s,   i, c, v) { v = 0; s = tolower(s); for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)) - 1; v = v * 16 + c } return v }
        { a[NR] = hex($1); op[NR] = $2; if ($3 != "") t[NR] = hex($3); n = NR }
        END {
            best_f = 0; best_n = 0; best_l = 0; best_i = 0
            for (j = 1; j <= n; j++) {
                if (!(j in t) || t[j] >= a[j]) continue
                f = 0; m = 0; l = 0; x = 0
                for (k = 1; k <= j; k++) if (a[k] >= t[j]) {
                    m++
                    if (op[k] == "FFMA") f++
                    else if (op[k] == "LDS") l++
                    else if (op[k] ~ /^(IADD3|LEA|IMAD|SHF)$/) x++
                }
                if (f > best_f || (f == best_f && f > 0 && m < best_n)) { best_f = f; best_n = m; best_l = l; best_i = x }
            }
            print best_f, best_n, best_l, best_i
        }'
}

gemm=$HEADLIGHT_PTX_DUMP/Gemm.TiledKernel.sm_90.cubin
[[ -f $gemm ]] || { echo "ptx-table: no cubin for Gemm.TiledKernel in $HEADLIGHT_PTX_DUMP" >&2; exit 1; }
read -r ffma loop_len lds integer < <(inner_loop "$gemm")
gemm_line="Gemm.TiledKernel's inner loop (SASS, sm_90): $ffma FFMA of $loop_len instructions ($((100 * ffma / (loop_len > 0 ? loop_len : 1)))%), with $lds scalar shared loads (LDS) and $integer integer address instructions (IADD3, LEA, IMAD, SHF)."
local_lines=()
for cubin in "$HEADLIGHT_PTX_DUMP"/Attention.*.sm_90.cubin; do
    name=$(basename "$cubin" .sm_90.cubin)
    read -r ldl stl total < <(sass "$cubin" | awk '$2 == "LDL" { l++ } $2 == "STL" { s++ } END { print l + 0, s + 0, NR }')
    local_lines+=("| $name | $ldl | $stl | $total |")
done

version=$("$bin/ptxas" --version | awk '/release/ { sub(/,.*/, "", $NF); print $0 }' | sed -E 's/.*release ([0-9.]+).*/\1/')
ilgpu=$(sed -n -E 's/.*PackageVersion Include="ILGPU" Version="([^"]+)".*/\1/p' Directory.Packages.props)
count=$(($(grep -c '^| ' "$HEADLIGHT_PTX_TABLE") - 2))

section=$work/section.md
{
    echo "$BEGIN"
    echo
    echo "Every ILGPU kernel of Headlight.Kernels ($count, found in the IL as the methods handed to ILGPU's"
    echo "loaders) compiled to PTX by ILGPU $ilgpu's PTX backend (ISA 7.8, \`.target sm_80\`) and assembled by"
    echo "\`ptxas -v -arch=sm_90\` (CUDA $version) without a GPU; \`tests/Kernels/PtxAssemblyTests.cs\` fails on any"
    echo "assembler error or spill, and on a hot kernel (bold) over 128 registers or 48 KB of shared memory."
    echo "Occupancy is theoretical, for one sm_90 SM (64 warps, 32 blocks, 65,536 registers, 228 KB shared"
    echo "memory at the largest carve-out, 1 KB reserved per block) at the launch group size: explicit kernels"
    echo "at the size their launch uses (row kernels at 256, i.e. rows of 256 or more), auto-grouped ones at the"
    echo "size of highest occupancy, which ILGPU asks the CUDA driver for. The driver JIT-compiles the sm_80 PTX"
    echo "for sm_90 itself, so its register counts may differ a little from these. Regenerate with"
    echo "\`scripts/ptx-table.sh\`."
    echo
    cat "$HEADLIGHT_PTX_TABLE"
    echo
    echo "$gemm_line"
    echo
    echo "Local memory in the attention kernels (SASS instruction counts, sm_90; the stack frame above holds"
    echo "per-thread arrays, not spills):"
    echo
    echo "| Kernel | LDL | STL | Instructions |"
    echo "| --- | ---: | ---: | ---: |"
    printf '%s\n' "${local_lines[@]}"
    echo
    echo "$END"
} >"$section"

if grep -qF "$BEGIN" "$RESULTS" && grep -qF "$END" "$RESULTS"; then
    awk -v begin="$BEGIN" -v end="$END" -v file="$section" '
        $0 == begin { while ((getline line < file) > 0) print line; skipping = 1; next }
        $0 == end { skipping = 0; next }
        !skipping { print }' "$RESULTS" >"$work/results.md"
else
    { cat "$RESULTS"; echo; echo "$HEADING"; echo; cat "$section"; } >"$work/results.md"
fi
cp "$work/results.md" "$RESULTS"
echo "ptx-table: $RESULTS updated ($count kernels); $gemm_line"
