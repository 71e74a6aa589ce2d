#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a GPU machine that has no .NET and no network.
#
# Writes gpu-bundle/ (ignored by git; carry it with the working tree):
#   runtime.tar.xz   this machine's .NET shared runtime: the dotnet muxer, host/fxr and
#                    shared/Microsoft.NETCore.App (no SDK)
#   app.tar.xz       hl/run/: a framework-dependent, untrimmed publish of tools/device-check;
#                    hl/Kernels.sln: an empty marker, because the linked test sources find the
#                    repository root by that file and the shared fixtures beside it;
#                    shared/fixtures/NAME: the fixtures the checks read
#
# usage: scripts/gpu-bundle.sh
# environment:
#   HEADLIGHT_FIXTURES      where the fixtures are (default: ../shared/fixtures beside the checkout)
#   HEADLIGHT_FIXTURE_NAMES which fixture folders to pack (default: gpt2-tiny)
#   HEADLIGHT_BUNDLE        output folder (default: gpu-bundle)
set -Eeuo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bundle="${HEADLIGHT_BUNDLE:-gpu-bundle}"
fixtures="${HEADLIGHT_FIXTURES:-$root/../shared/fixtures}"
names="${HEADLIGHT_FIXTURE_NAMES:-gpt2-tiny pythia-tiny llama-tiny qwen2-tiny}"

dotnet_root="$(dirname "$(readlink -f "$(command -v dotnet)")")"
version="$(dotnet --list-runtimes | awk '$1 == "Microsoft.NETCore.App" && $2 ~ /^10\./ { v = $2 } END { print v }')"
[[ -n "$version" ]] || { echo "no .NET 10 runtime in $dotnet_root" >&2; exit 1; }
[[ -d "$dotnet_root/shared/Microsoft.NETCore.App/$version" ]] || { echo "no shared runtime $version in $dotnet_root" >&2; exit 1; }

# The runtime changes only with the installed .NET: keep its archive when the version matches.
find "$bundle" -mindepth 1 -maxdepth 1 ! -name runtime.tar.xz ! -name runtime.version -exec rm -rf {} + 2>/dev/null || true
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$bundle" "$stage/app/hl" "$stage/app/shared/fixtures"

echo "publishing tools/device-check (framework-dependent, linux-x64, untrimmed)"
dotnet publish tools/device-check -c Release -r linux-x64 --no-self-contained \
    -p:PublishTrimmed=false -p:DebugType=none -p:GenerateDocumentationFile=false \
    -o "$stage/app/hl/run" --nologo -v quiet
# Only the head census draws plots; nothing these checks run loads SkiaSharp's native library.
find "$stage/app/hl/run" -name 'libSkiaSharp*' -delete -o -name 'libHarfBuzzSharp*' -delete
: > "$stage/app/hl/Kernels.sln"
for name in $names; do
    [[ -d "$fixtures/$name" ]] || { echo "fixture $fixtures/$name is missing" >&2; exit 1; }
    cp -r "$fixtures/$name" "$stage/app/shared/fixtures/$name"
done
tar -C "$stage/app" -cf - hl shared | xz -T0 -6 > "$bundle/app.tar.xz"

if [[ -f "$bundle/runtime.tar.xz" && "$(cat "$bundle/runtime.version" 2>/dev/null)" == "$version" ]]; then
    echo "keeping the packed .NET $version runtime"
else
    echo "packing the .NET $version runtime from $dotnet_root"
    tar -C "$dotnet_root" -cf - dotnet "host/fxr/$version" "shared/Microsoft.NETCore.App/$version" LICENSE.txt ThirdPartyNotices.txt \
        | xz -T0 -9 > "$bundle/runtime.tar.xz.part"
    mv "$bundle/runtime.tar.xz.part" "$bundle/runtime.tar.xz"
    echo "$version" > "$bundle/runtime.version"
fi

du -b "$bundle"/* | awk '{ printf "%8.1f MiB  %s\n", $1 / 1048576, $2 }'
du -sb "$bundle" | awk '{ printf "%8.1f MiB  total\n", $1 / 1048576 }'
