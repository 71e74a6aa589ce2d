#!/usr/bin/env bash
# Puts NVIDIA's PTX assembler (ptxas) and the SASS tools (cuobjdump, nvdisasm) in a cache folder, for
# the offline CUDA check (tests/Kernels/PtxAssemblyTests.cs) on machines without a GPU. Nothing is
# installed system-wide: Debian bookworm's nvidia-cuda-toolkit (non-free, CUDA 11.8, ~84 MB) is
# downloaded with apt-get under a private sources list, package lists and cache, then unpacked with
# dpkg -x. The machine's own apt configuration is read (proxies, signatures) but never changed.
#
# usage: scripts/install-ptxas.sh          install if needed; prints the ptxas version
#        scripts/install-ptxas.sh --bin    the same on stderr, and only the folder that holds ptxas on
#                                          stdout: HEADLIGHT_PTXAS=$(scripts/install-ptxas.sh --bin)/ptxas
#
# environment:
#   HEADLIGHT_CACHE          cache folder; the toolkit lives in cuda-toolkit/ (default: ~/.cache/headlight)
#   HEADLIGHT_DEBIAN_MIRROR  Debian mirror (default: the first one in this machine's apt sources)
#
# The tests find ptxas through HEADLIGHT_PTXAS, then PATH, then this cache folder.
# Idempotent: an unpacked toolkit is reused, and a downloaded .deb is kept so that a rerun (or a
# CI run with the cache restored) does not download again. Needs only libc to run ptxas.
set -Eeuo pipefail
trap 'echo "install-ptxas: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

readonly SUITE=bookworm
readonly PACKAGE=nvidia-cuda-toolkit
readonly TOOLS=(ptxas cuobjdump nvdisasm)

# With --bin, stdout carries only the folder; everything else goes to stderr.
if [[ ${1:-} == --bin ]]; then
    exec 3>&1 1>&2
else
    exec 3>/dev/null
fi

say() { printf 'install-ptxas: %s\n' "$*"; }

CACHE=${HEADLIGHT_CACHE:-${HOME:-/root}/.cache/headlight}
DIR=$CACHE/cuda-toolkit
ROOT=$DIR/root
BIN=$ROOT/usr/bin
DEBS=$DIR/debs
READY=$DIR/.ready

print_version() {
    "$BIN/ptxas" --version | tail -n 2 | tr '\n' ' ' | sed 's/ *$//'
    echo
    echo "$BIN" >&3
}

if [[ -f $READY && -x $BIN/ptxas ]]; then
    say "already unpacked in $ROOT"
    print_version
    exit 0
fi

# The first plain (non-security) Debian archive in the host's apt sources, deb822 or one-line
# (the same rule as scripts/opencl-root.sh), and the keyring that signs it.
host_mirror() {
    local f
    {
        for f in /etc/apt/sources.list.d/*.sources; do
            [[ -f $f ]] || continue
            awk '
                /^[[:space:]]*$/ { if (deb && uri != "") print uri; uri = ""; deb = 0; next }
                /^Types:/ { deb = ($0 ~ /[[:space:]]deb([[:space:]]|$)/) }
                /^URIs:/ { uri = $2 }
                END { if (deb && uri != "") print uri }' "$f"
        done
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [[ -f $f ]] || continue
            awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; break } }' "$f"
        done
    } | grep -v -i security | grep -E '^https?://' | head -n 1 || true
}

mkdir -p "$DEBS"
deb=$(find "$DEBS" -maxdepth 1 -name "${PACKAGE}_*.deb" | sort | tail -n 1)
if [[ -z $deb ]]; then
    command -v apt-get >/dev/null || { say "apt-get is missing; install ptxas by hand and set HEADLIGHT_PTXAS" >&2; exit 1; }
    MIRROR=${HEADLIGHT_DEBIAN_MIRROR:-$(host_mirror)}
    [[ -n $MIRROR ]] || { say "no Debian mirror in /etc/apt/sources.list{,.d/*}; set HEADLIGHT_DEBIAN_MIRROR" >&2; exit 1; }
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [[ -f $keyring ]] || { say "missing $keyring (package debian-archive-keyring)" >&2; exit 1; }

    # A private apt state: sources, lists and package cache under a temporary folder.
    apt_dir=$(mktemp -d /tmp/headlight-apt.XXXXXX)
    trap 'rm -rf "$apt_dir"' EXIT
    mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    cat >"$apt_dir/sources.list.d/bookworm-non-free.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE
Components: contrib non-free
Signed-By: $keyring
EOF
    apt_opts=(
        -o "Dir::Etc::SourceList=/dev/null"
        -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
        -o "Dir::State::Lists=$apt_dir/lists"
        -o "Dir::Cache=$apt_dir/cache"
        -o "Debug::NoLocking=1"
        -o "APT::Sandbox::User=root"
        -o "APT::Get::List-Cleanup=0"
    )
    say "reading $SUITE contrib non-free from $MIRROR"
    apt-get "${apt_opts[@]}" -qq update
    version=$(apt-cache "${apt_opts[@]}" show --no-all-versions "$PACKAGE" | awk '/^Version:/ { print $2; exit }')
    [[ -n $version ]] || { say "$PACKAGE not found in $SUITE non-free at $MIRROR" >&2; exit 1; }
    say "downloading $PACKAGE $version"
    (cd "$DEBS" && apt-get "${apt_opts[@]}" -qq download "$PACKAGE=$version")
    deb=$(find "$DEBS" -maxdepth 1 -name "${PACKAGE}_*.deb" | sort | tail -n 1)
    [[ -n $deb ]] || { say "apt-get download left no .deb in $DEBS" >&2; exit 1; }
fi

say "unpacking $(basename "$deb")"
rm -rf "$ROOT" "$READY"
mkdir -p "$ROOT"
dpkg -x "$deb" "$ROOT"
for tool in "${TOOLS[@]}"; do
    [[ -x $BIN/$tool ]] || { say "$(basename "$deb") has no $tool in ${BIN#"$ROOT"}" >&2; exit 1; }
done
basename "$deb" >"$READY"
print_version
