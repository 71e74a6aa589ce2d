#!/usr/bin/env bash
# Packs Headlight.Kernels, Headlight.Model, Headlight.Explain and the Headlight.Cli tool into a fresh
# local folder feed, then uses them the way another project would: builds and runs samples/ExplainSentence
# against that feed (restored into an empty package folder, so nothing stale or in-tree is picked up),
# and installs the tool into a tool path and runs it. Expects a Release build of Kernels.sln
# (pass --build to make one). Exit status 0 only if every step worked.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

build_flag=--no-build
if [[ "${1:-}" == "--build" ]]; then
    build_flag=
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
feed=$work/feed
packages=$work/packages
global=${NUGET_PACKAGES:-$HOME/.nuget/packages}
version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props | head -n 1)

echo "--- pack $version into a local feed"
dotnet pack Kernels.sln -c Release $build_flag -p:ContinuousIntegrationBuild=true -o "$feed" --nologo -v quiet
ls "$feed"
for id in Headlight.Kernels Headlight.Model Headlight.Explain Headlight.Cli; do
    [[ -f "$feed/$id.$version.nupkg" && -f "$feed/$id.$version.snupkg" ]] || { echo "missing package or symbols: $id $version"; exit 1; }
done

# The feed first; the dependencies (ILGPU, tokenizers, the model packages) from the machine's package
# folder when restore already put them there, else from nuget.org.
sources=(--source "$feed" --source https://api.nuget.org/v3/index.json)
if [[ -d "$global" ]]; then
    sources=(--source "$feed" --source "$global" --source https://api.nuget.org/v3/index.json)
fi

echo "--- build samples/ExplainSentence against the feed"
dotnet restore samples/ExplainSentence --packages "$packages" "${sources[@]}" -p:HeadlightVersion="$version" --nologo -v quiet
dotnet build samples/ExplainSentence -c Release --no-restore -p:HeadlightVersion="$version" --nologo -v quiet
for id in headlight.kernels headlight.model headlight.explain; do
    [[ -d "$packages/$id/$version" ]] || { echo "the sample did not restore $id from the feed"; exit 1; }
done

echo "--- run it (models found through the sample's own package folder)"
output=$(NUGET_PACKAGES=$packages HEADLIGHT_CACHE=$work/cache dotnet samples/ExplainSentence/bin/Release/net10.0/ExplainSentence.dll)
echo "$output"
grep -q '^integrated-gradients on ' <<<"$output" || { echo "unexpected sample output"; exit 1; }

echo "--- install the headlight tool from the feed and run it"
tool_sources=(--add-source "$feed")
if [[ -d "$global" ]]; then
    tool_sources+=(--add-source "$global")
fi
dotnet tool install Headlight.Cli --version "$version" --tool-path "$work/tool" "${tool_sources[@]}"
"$work/tool/headlight" devices
HEADLIGHT_CACHE=$work/cache "$work/tool/headlight" embed --device cpu "A cat." "A dog." | tail -n 3
echo "--- packages, sample and tool: ok"
