#!/usr/bin/env bash
# Runs the OpenCL test column inside a Debian trixie root.
#
# Debian 12's PoCL cannot compile ILGPU's OpenCL C; trixie's PoCL 6 can. This script builds a
# minimal trixie root once (debootstrap, cached outside the repository), installs only the ICD
# loader and PoCL in it (not ocl-icd-opencl-dev: ILGPU then finds libOpenCL.so.1 through the
# resolver in src/Kernels/IlgpuLibraryResolver.cs, as a user's machine would), and runs an already built
# `dotnet test --no-build` inside it, with the host's dotnet, NuGet packages and this repository
# bind-mounted at their own paths.
#
# usage: scripts/opencl-root.sh                 run the OpenCL column (build the tests first)
#        scripts/opencl-root.sh dotnet test ... run the given command in the repository, in the root
#
# environment:
#   HEADLIGHT_OPENCL_FILTER   test filter of the default command
#                             (default: FullyQualifiedName~OpMatrix.OpenCL|Category=OpenCL)
#   HEADLIGHT_OPENCL_RESULTS  where the default command writes opencl_*.trx (default: TestResults/opencl)
#   HEADLIGHT_CACHE           cache folder; the root lives in trixie-root/ (default: ~/.cache/headlight)
#   HEADLIGHT_DEBIAN_MIRROR   Debian mirror (default: the first one in this machine's apt sources)
#   HEADLIGHT_OPENCL_ALLOW_SKIPS  1 accepts skipped cases in the root; by default a skip there fails
#                             the run, since PoCL is present and every OpenCL case must run
#
# Exit status: the test command's; also non-zero when no case passed or a case skipped in the root.
# When this machine cannot build or enter the root (not root, no mount permission, no package
# access), one line says why and that the column is skipped, and the exit status is 0.
#
# Mounts are made inside a private mount and PID namespace (unshare): they are never visible
# outside this run and vanish with it even if it is killed; a trap also unmounts them in reverse
# order on every exit path, and ending the namespace ends every process started inside the root.
set -Eeuo pipefail
# Never fail silently: name the command that stopped the script.
trap 'echo "opencl-root: failed (exit $?) at line $LINENO: $BASH_COMMAND" >&2' ERR

readonly SUITE=trixie
readonly PACKAGES=(ocl-icd-libopencl1 pocl-opencl-icd)
# Written last when the root is complete; a root without it (or with another recipe) is rebuilt.
readonly RECIPE="headlight opencl root v1: $SUITE minbase ${PACKAGES[*]}"
readonly MARKER_NAME=.headlight-root-ready
readonly DEFAULT_FILTER='FullyQualifiedName~OpMatrix.OpenCL|Category=OpenCL'

say() { printf 'opencl-root: %s\n' "$*"; }

# An environment gap: one line that says why, and a green exit.
skip() {
    say "OpenCL column SKIPPED: $*"
    exit 0
}

seconds_since() { echo $((SECONDS - $1)); }

# --- host side: checks, then re-enter this script in a private mount + PID namespace ----------

outer() {
    [[ $(id -u) -eq 0 ]] || skip "needs root for debootstrap, chroot and bind mounts (run it as root)"
    REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
    CACHE=${HEADLIGHT_CACHE:-${HOME:-/root}/.cache/headlight}
    mkdir -p "$CACHE" 2>/dev/null || skip "cannot create the cache folder $CACHE"
    CACHE=$(cd "$CACHE" && pwd -P)
    ROOT=$CACHE/$SUITE-root
    case "$ROOT/" in
        "$REPO"/*) echo "opencl-root: the cache ($CACHE) must lie outside the repository ($REPO)" >&2; exit 2 ;;
    esac

    local tool
    for tool in unshare chroot mount umount findmnt flock; do
        command -v "$tool" >/dev/null || skip "the tool '$tool' is missing"
    done
    local dotnet
    dotnet=$(command -v dotnet) || skip "dotnet is not on PATH"
    DOTNET_DIR=$(dirname "$(readlink -f "$dotnet")")
    unshare --mount --pid --fork --propagation private true 2>/dev/null \
        || skip "cannot create a private mount namespace (unshare needs CAP_SYS_ADMIN)"

    MIRROR=
    if ! root_ready; then
        if ! command -v debootstrap >/dev/null; then
            say "installing debootstrap on the host (apt-get)"
            { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap; } \
                >"$CACHE/host-apt.log" 2>&1 \
                || skip "cannot install debootstrap with apt-get ($(last_line "$CACHE/host-apt.log"); log: $CACHE/host-apt.log)"
        fi
        MIRROR=${HEADLIGHT_DEBIAN_MIRROR:-$(host_mirror)}
        [[ -n $MIRROR ]] || skip "no Debian mirror found in /etc/apt/sources.list{,.d/*}; set HEADLIGHT_DEBIAN_MIRROR"
    fi

    export REPO CACHE ROOT DOTNET_DIR MIRROR
    export HEADLIGHT_OPENCL_INNER=1
    # --kill-child: if this side dies, the namespace's first process gets SIGTERM and cleans up.
    exec unshare --mount --pid --fork --propagation private --kill-child=SIGTERM \
        -- bash "${BASH_SOURCE[0]}" "$@"
}

root_ready() {
    [[ -f $ROOT/$MARKER_NAME && $(cat "$ROOT/$MARKER_NAME") == "$RECIPE" ]]
}

last_line() {
    grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 | cut -c1-200
}

# The first plain (non-security) Debian archive in the host's apt sources, deb822 or one-line.
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

# --- inside the namespace: lock, build the root once, mount, run, unmount ---------------------

MOUNTS=()
TEST_LOG=

cleanup() {
    local i m
    [[ -z $TEST_LOG ]] || rm -f "$TEST_LOG"
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
        m=${MOUNTS[i]}
        umount -R "$m" 2>/dev/null || umount -R -l "$m" 2>/dev/null || say "could not unmount $m"
    done
    MOUNTS=()
    if findmnt -R "$ROOT" >/dev/null 2>&1; then
        say "mounts are still left under $ROOT:"
        findmnt -R "$ROOT" >&2 || true
    fi
}

# bind_at SOURCE PATH_IN_ROOT rw|ro: bind SOURCE (with what is mounted below it) into the root.
bind_at() {
    local source=$1 target=$ROOT$2 mode=$3
    if [[ -d $source ]]; then
        mkdir -p "$target"
    else
        mkdir -p "$(dirname "$target")" && touch "$target"
    fi
    mount --rbind "$source" "$target" || skip "cannot bind-mount $source into the root"
    MOUNTS+=("$target")
    if [[ $mode == ro ]]; then
        mount -o remount,bind,ro "$target" || skip "cannot make $target read-only"
    fi
}

# mount_fs TYPE PATH_IN_ROOT: a fresh proc, sysfs or tmpfs.
mount_fs() {
    local type=$1 target=$ROOT$2
    mkdir -p "$target"
    mount -t "$type" "$type" "$target" || skip "cannot mount $type in the root"
    MOUNTS+=("$target")
}

in_root() {
    chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        DEBIAN_FRONTEND=noninteractive "$@"
}

bootstrap_root() {
    local log=$CACHE/build.log
    : >"$log"
    BUILD_START=$SECONDS
    say "building the Debian $SUITE root in $ROOT (once; log: $log)"
    if findmnt -R "$ROOT" >/dev/null 2>&1; then
        skip "file systems are still mounted under $ROOT from another program; unmount them first (findmnt -R $ROOT)"
    fi
    # --one-file-system: never follow a mount out of the root, whatever was left behind.
    rm -rf --one-file-system "$ROOT"
    [[ -n $MIRROR ]] || MIRROR=${HEADLIGHT_DEBIAN_MIRROR:-$(host_mirror)}
    command -v debootstrap >/dev/null || skip "debootstrap is not installed"
    debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >>"$log" 2>&1 \
        || skip "debootstrap of $SUITE from $MIRROR failed ($(last_line "$log"); log: $log)"
    say "debootstrap done in $(seconds_since "$BUILD_START") s"
}

install_packages() {
    local log=$CACHE/build.log
    # Reach the archive the way the host does (name servers, proxies, date checks).
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    grep -l -h '^[[:space:]]*Acquire::' /etc/apt/apt.conf.d/* 2>/dev/null \
        | xargs -r cat >"$ROOT/etc/apt/apt.conf.d/90host-acquire" || true

    { in_root apt-get update && in_root apt-get install -y --no-install-recommends "${PACKAGES[@]}" \
        && in_root apt-get clean; } >>"$log" 2>&1 \
        || skip "installing ${PACKAGES[*]} in the $SUITE root failed ($(last_line "$log"); log: $log)"

    printf '%s\n' "$RECIPE" >"$ROOT/$MARKER_NAME"
    # shellcheck disable=SC2016 # dpkg-query expands ${Package}, not the shell
    say "root ready in $(seconds_since "$BUILD_START") s: $(in_root dpkg-query -W -f '${Package} ${Version}  ' "${PACKAGES[@]}")"
}

# Sums dotnet test's closing lines: "Passed!  - Failed: 0, Passed: 12, Skipped: 0, Total: 12, ..."
count_results() {
    sed -n -E 's/.*(Passed|Failed|Skipped)! +- Failed: +([0-9]+), Passed: +([0-9]+), Skipped: +([0-9]+), Total: +([0-9]+).*/\2 \3 \4 \5/p' "$1" \
        | awk '{ f += $1; p += $2; s += $3; t += $4; n++ } END { printf "%d %d %d %d %d\n", f, p, s, t, n }'
}

inner() {
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP

    # Runs share the ready root (each has its own mount namespace); building it is exclusive.
    exec 9>"$CACHE/lock"
    flock -s 9
    local building=0
    if ! root_ready; then
        if ! flock -x -n 9; then
            say "waiting for another run that holds $CACHE/lock"
            flock -x 9
        fi
        if ! root_ready; then
            building=1
            bootstrap_root
        fi
    fi

    mount_fs proc /proc
    mount_fs sysfs /sys # PoCL reads the CPU topology from /sys ("Not enough memory" without it)
    bind_at /dev /dev rw
    mount_fs tmpfs /tmp

    if [[ $building -eq 1 ]]; then
        install_packages
    fi
    flock -s 9

    bind_at "$DOTNET_DIR" "$DOTNET_DIR" ro
    local -A seen=()
    local dir
    for dir in "${HOME:-/root}/.nuget/packages" /opt/nuget/packages ${NUGET_PACKAGES:+"$NUGET_PACKAGES"}; do
        [[ -d $dir ]] || continue
        dir=$(cd "$dir" && pwd -P)
        [[ -z ${seen[$dir]:-} ]] || continue
        seen[$dir]=1
        bind_at "$dir" "$dir" ro
    done
    bind_at "$REPO" "$REPO" rw
    # Tests read fixtures from ../shared beside the checkout.
    if [[ -d $REPO/../shared ]]; then
        bind_at "$(cd "$REPO/../shared" && pwd -P)" "$(cd "$REPO/.." && pwd -P)/shared" ro
    fi

    local results=${HEADLIGHT_OPENCL_RESULTS:-$REPO/TestResults/opencl} default=0
    local -a command
    if [[ $# -gt 0 ]]; then
        command=("$@")
    else
        default=1
        rm -f "$results"/opencl_*.trx
        command=(dotnet test "$REPO/Kernels.sln" -c Release --no-build
            --filter "${HEADLIGHT_OPENCL_FILTER:-$DEFAULT_FILTER}"
            --logger "console;verbosity=minimal" --logger "trx;LogFilePrefix=opencl"
            --results-directory "$results")
    fi

    local -a env=(
        HOME="${HOME:-/root}" LANG=C.UTF-8 TERM="${TERM:-dumb}"
        PATH="$DOTNET_DIR:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        DOTNET_ROOT="$DOTNET_DIR" DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
        DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1 DOTNET_CLI_WORKLOAD_UPDATE_NOTIFY_DISABLE=1
        DOTNET_CLI_USE_MSBUILD_SERVER=0 MSBUILDDISABLENODEREUSE=1
        # The dotnet CLI itself would need libicu; the tests run invariant anyway.
        DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1
    )
    [[ -n ${CI:-} ]] && env+=(CI="$CI")
    [[ -n ${NUGET_PACKAGES:-} ]] && env+=(NUGET_PACKAGES="$NUGET_PACKAGES")
    local var
    while IFS= read -r var; do
        [[ $var == HEADLIGHT_OPENCL_INNER ]] || env+=("$var=${!var}")
    done < <(compgen -e | grep '^HEADLIGHT_' || true)

    local libs
    libs=$(find "$ROOT/usr/lib" -maxdepth 2 -name 'libOpenCL.so*' -printf '%f ' 2>/dev/null)
    say "OpenCL loader in the root: ${libs:-none} (ILGPU's 'OpenCL' is mapped to libOpenCL.so.1 by the resolver)"
    say "running in the $SUITE root: ${command[*]}"

    local log start=$SECONDS rc=0
    log=$(mktemp "$CACHE/test.XXXXXX.log")
    TEST_LOG=$log
    # Skipped cases are counted below; their per-case lines would only bury failures.
    # (Inside `if` so that a failing run is reported below rather than by the ERR trap.)
    # shellcheck disable=SC2016 # $1 and $@ belong to the inner shell
    if chroot "$ROOT" /usr/bin/env -i "${env[@]}" /bin/bash -c 'cd "$1" && shift && exec "$@"' _ "$REPO" "${command[@]}" 2>&1 \
        | tee "$log" | grep --line-buffered -v -E '^[[:space:]]+Skipped |\[SKIP\]$'; then
        rc=0
    else
        rc=${PIPESTATUS[0]}
    fi

    local failed passed skipped total runs
    read -r failed passed skipped total runs < <(count_results "$log")
    rm -f "$log"
    if [[ $runs -eq 0 ]]; then
        say "opencl: no dotnet test summary in the output ($(seconds_since "$start") s)"
    else
        say "opencl: $((passed + failed)) cases ran ($passed passed, $failed failed), $skipped skipped, of $total, in $(seconds_since "$start") s"
    fi
    if [[ $rc -ne 0 ]]; then
        say "the tests in the $SUITE root failed (exit $rc)"
        exit "$rc"
    fi
    if [[ $default -eq 1 && $runs -eq 0 ]]; then
        say "the OpenCL column ran no test (filter: ${HEADLIGHT_OPENCL_FILTER:-$DEFAULT_FILTER})"
        exit 1
    fi
    if [[ $runs -gt 0 && $passed -eq 0 ]]; then
        say "no OpenCL case passed in the root: PoCL or the OpenCL library resolver is not working there"
        exit 1
    fi
    # PoCL is there, so a skip means a case did not find its backend: a failure unless allowed.
    if [[ $skipped -gt 0 && ${HEADLIGHT_OPENCL_ALLOW_SKIPS:-0} != 1 ]]; then
        local reason=
        if [[ $default -eq 1 ]]; then
            reason=$(cat "$results"/opencl_*.trx 2>/dev/null | awk '/<UnitTestResult / { s = /outcome="NotExecuted"/ }
                s && /<Message>/ { sub(/.*<Message>/, ""); sub(/<\/Message>.*/, ""); print; exit }' || true)
        fi
        say "$skipped cases skipped inside the root, where every one should run${reason:+ (first reason: $reason)}; set HEADLIGHT_OPENCL_ALLOW_SKIPS=1 to accept"
        exit 1
    fi
    exit 0
}

if [[ ${HEADLIGHT_OPENCL_INNER:-} == 1 ]]; then
    unset HEADLIGHT_OPENCL_INNER
    inner "$@"
else
    outer "$@"
fi
