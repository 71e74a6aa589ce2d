#!/usr/bin/env bash
# Records the libraries' current public API in their PublicAPI.Unshipped.txt (adds what is new, removes what
# is gone). Run it after a deliberate API change and review the diff; the build fails on unrecorded changes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for project in src/Kernels/Headlight.Kernels.csproj src/Models/Headlight.Models.csproj src/Explain/Headlight.Explain.csproj; do
    for rule in RS0016 RS0017; do
        dotnet format analyzers "$project" --diagnostics "$rule" --severity info 2>&1 | grep -v 'Warnings were encountered' || true
    done
done
git --no-pager diff --stat -- 'src/*/PublicAPI.*.txt'
