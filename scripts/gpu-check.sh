#!/usr/bin/env bash
# Runs Headlight's checks and timings on a machine with no .NET: the op matrix and the fixture and
# gradient checks, the timings, then the PyTorch peer at the same shapes. Needs gpu-bundle/ from
# scripts/gpu-bundle.sh beside the scripts; writes to $OUT (default gpu-check-out/):
#   gpu-check.log  everything printed     ops.json, ops.md    op matrix and fixture checks
#   bench.json, bench.md  timings         peer.json           PyTorch peer
#   summary.md, summary.json  the combined tables
# Every step writes as it goes and the next one runs whatever the last did; the steps' time caps
# keep the whole run within about six minutes.
#
# usage: scripts/gpu-check.sh [DEVICE]   (default cuda; cpu or ilgpu-cpu rehearse the same path)
# environment: OUT (output folder), HEADLIGHT_BUNDLE (default gpu-bundle/), HEADLIGHT_OPS_BUDGET
#              (seconds of op cases, default 110)
set -uo pipefail

device="${1:-cuda}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bundle="${HEADLIGHT_BUNDLE:-$root/gpu-bundle}"
out="${OUT:-$root/gpu-check-out}"
work="$(mktemp -d "${TMPDIR:-/tmp}/headlight-gpu.XXXXXX")"
mkdir -p "$out"
exec > >(tee -a "$out/gpu-check.log") 2>&1
tee_pid=$!
begin=$SECONDS
step() { printf '\n=== %s (%ds in) ===\n' "$*" $((SECONDS - begin)); }

step "machine"
date -u; uname -a
nproc; free -g | head -2
if command -v nvidia-smi >/dev/null; then
    nvidia-smi
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
else
    echo "no nvidia-smi"
fi
ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libnvidia-ptxjitcompiler' || echo "no libcuda in the loader cache"
python3 - <<'PY' || true
import ctypes
try:
    cuda = ctypes.CDLL("libcuda.so.1")
    v = ctypes.c_int()
    print("cuInit:", cuda.cuInit(0), "cuDriverGetVersion:", cuda.cuDriverGetVersion(ctypes.byref(v)), v.value)
except OSError as e:
    print("libcuda.so.1 does not load:", e)
PY

step "unpack the .NET runtime and the runner into $work"
# A minimal image may lack xz; Python's tarfile reads .tar.xz by itself.
unpack() {
    if command -v xz >/dev/null; then
        xz -dc "$1" | tar -x -C "$2"
    else
        python3 -c 'import sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    t.extractall(sys.argv[2], **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))' "$1" "$2"
    fi
}
mkdir -p "$work/dotnet"
unpack "$bundle/runtime.tar.xz" "$work/dotnet" && unpack "$bundle/app.tar.xz" "$work"
export DOTNET_ROOT="$work/dotnet" PATH="$work/dotnet:$PATH"
# No ICU is needed (invariant globalization) and no diagnostics socket in a sandboxed /tmp.
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_EnableDiagnostics=0
# The runner finds the fixtures beside the marker hl/Kernels.sln, as the tests find ../shared.
run=(dotnet "$work/hl/run/Headlight.DeviceCheck.dll")
dotnet --list-runtimes

step "devices"
timeout 30 "${run[@]}" devices --device "$device"

# Seconds after which no further op case starts; the step is killed 30 s later.
ops_budget="${HEADLIGHT_OPS_BUDGET:-110}"
ops=(--fixtures --budget "$ops_budget")
bench=(--budget 70)
case "$device" in
    ilgpu-cpu*) ops+=(--tiny); bench+=(--quick --only "gemm 128x384x1536") ;;
    cpu*) bench+=(--quick) ;;
esac

step "op matrix and fixture checks on $device"
timeout $((ops_budget + 30)) "${run[@]}" ops --device "$device" "${ops[@]}" --out "$out" | grep --line-buffered -v '^PASS'
echo "ops exit status ${PIPESTATUS[0]}"

step "timings on $device"
timeout 100 "${run[@]}" bench --device "$device" "${bench[@]}" --out "$out"
echo "bench exit status $?"

step "PyTorch peer"
peer=(--budget 50)
[[ "$device" == cuda* ]] || peer+=(--device cpu --quick)
timeout 70 python3 "$root/scripts/gpu-peer.py" --out "$out/peer.json" "${peer[@]}"
echo "peer exit status $?"

step "summary"
python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]

def load(name):
    try:
        with open(os.path.join(out, name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"rows": [], "error": f"{name}: {e}"}

ops, bench, peer = load("ops.json"), load("bench.json"), load("peer.json")
lines = ["# Headlight device check", ""]
for doc in (ops, bench, peer):
    lines.append(f"- {doc.get('title', '?')}: {doc.get('summary') or doc.get('error') or ''} "
                 f"device {doc.get('device', '?')} {doc.get('device_description', '')} finished={doc.get('finished')}")
failed = [r for r in ops["rows"] if r["status"] == "fail"]
lines += ["", f"## Op matrix: {sum(r['status'] == 'pass' for r in ops['rows'])} passed, {len(failed)} failed", ""]
for r in failed[:80]:
    lines.append(f"- FAIL {r['name']}: {(r.get('message') or '')[:300]}")

def value(r, key):
    v = (r or {}).get("values", {}).get(key)
    return "" if v is None else f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"

peer_rows = {r["name"]: r for r in peer["rows"]}
pairs = [("gemm 4096x4096x4096", "torch.matmul 4096x4096x4096"), ("gemm 128x384x1536", "torch.matmul 128x384x1536"),
         ("gemm 1024x384x1536", "torch.matmul 1024x384x1536"), ("gemm 1024x1536x384", "torch.matmul 1024x1536x384"),
         ("encoder forward 8x128", "bert forward 8x128 (sdpa)"), ("ig-50", "ig-50 (sdpa, 22 tokens)"),
         ("attnlrp", None), ("kernel shap 2048", "forwards 2048x22 (sdpa)")]
lines += ["", "## Timings (median ms; GFLOP/s for GEMM)", "",
          "Headlight: wall time of each call ending in a synchronize. PyTorch: CUDA-event time, and wall time.", "",
          "| case | Headlight ms | Headlight GFLOP/s | first call ms | PyTorch case | PyTorch ms | PyTorch wall ms | PyTorch GFLOP/s |",
          "|---|---:|---:|---:|---|---:|---:|---:|"]
bench_rows = {r["name"]: r for r in bench["rows"]}
timings = []
for ours, theirs in pairs:
    r, p = bench_rows.get(ours), peer_rows.get(theirs) if theirs else None
    status = "" if r is None or r["status"] == "pass" else f" ({r['status']})"
    timings.append({"case": ours, "status": (r or {}).get("status", "missing"), "headlight": (r or {}).get("values"),
                    "torch_case": theirs, "torch": (p or {}).get("values")})
    lines.append(f"| {ours}{status} | {value(r, 'median_ms')} | {value(r, 'gflops_median')} | {value(r, 'first_ms')} | "
                 f"{theirs or ''} | {value(p, 'median_ms')} | {value(p, 'wall_median_ms')} | {value(p, 'gflops_median')} |")
lines += ["", "## All PyTorch rows", "", "| case | status | median ms | best ms | GFLOP/s |", "|---|---|---:|---:|---:|"]
for r in peer["rows"]:
    lines.append(f"| {r['name']} | {r['status']} {(r.get('message') or '')[:120]} | {value(r, 'median_ms')} | {value(r, 'min_ms')} | {value(r, 'gflops_median')} |")
with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
counts = {k: sum(r["status"] == k for r in ops["rows"]) for k in ("pass", "fail", "skip", "not run")}
summary = {"device": ops.get("device"), "device_description": ops.get("device_description") or bench.get("device_description"),
           "torch": peer.get("torch"), "torch_cuda": peer.get("cuda"), "ops": counts,
           "ops_failures": [{"name": r["name"], "message": r.get("message")} for r in failed],
           "timings": timings, "errors": [d["error"] for d in (ops, bench, peer) if "error" in d]}
with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
PY

rm -rf "$work"
step "done"
ls -la "$out"
# Let tee write the last lines before the caller collects the log.
exec >&- 2>&-
wait "$tee_pid" 2>/dev/null
