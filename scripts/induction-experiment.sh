#!/usr/bin/env bash
# The census's positive and negative control: a 2-layer decoder trained on Brown text with repeated segments forms
# previous-token and induction heads; its 1-layer sibling, trained the same way, cannot (an induction head needs a
# previous-token head in an earlier layer to read from).
#
# usage: scripts/induction-experiment.sh [OUT_DIR]      (default ~/.cache/headlight/induction)
#
# environment: HEADLIGHT_INDUCTION_TOKENS (training tokens per model, default 20000000), HEADLIGHT_INDUCTION_LAYERS
#              (the depths to train, default "2 1"), HEADLIGHT_INDUCTION_VOCAB (BPE entries, default 2048),
#              HEADLIGHT_INDUCTION_MIN_LR (the rate the cosine ends at, default 3e-4), HEADLIGHT_DEVICE,
#              HEADLIGHT_BROWN (the Brown corpus folder scripts/install-brown.sh writes, default ~/.cache/headlight/brown)
#
# Writes OUT_DIR/repeated.txt (one line per segment of 24 words, the segment written twice), OUT_DIR/layers-2 and
# OUT_DIR/layers-1 (trained models: Hugging Face folders, loss.csv, loss.png), OUT_DIR/census-2.json and census-1.json,
# and prints each model's best previous-token and induction scores.
set -Eeuo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$HOME/.cache/headlight/induction}"
brown="${HEADLIGHT_BROWN:-$HOME/.cache/headlight/brown}"
tokens="${HEADLIGHT_INDUCTION_TOKENS:-20000000}"
depths="${HEADLIGHT_INDUCTION_LAYERS:-2 1}"
vocab="${HEADLIGHT_INDUCTION_VOCAB:-2048}"
min_lr="${HEADLIGHT_INDUCTION_MIN_LR:-3e-4}"
mkdir -p "$out"
[[ -d "$brown/text" ]] || bash "$root/scripts/install-brown.sh" "$brown"

# Each Brown file's words in segments of 24, each written twice on one line.
for f in "$brown"/text/*.txt; do
    tr '\n' ' ' < "$f" | awk '{ for (i = 1; i <= NF; i += 24) { s = $i; for (j = i + 1; j < i + 24 && j <= NF; j++) s = s " " $j; print s " " s } }'
done > "$out/repeated.txt"
echo "repeated corpus: $(wc -l < "$out/repeated.txt") lines, $(wc -w < "$out/repeated.txt") words"

dotnet build "$root/src/Cli" -c Release -v quiet -nologo > /dev/null
headlight() { dotnet "$root/src/Cli/bin/Release/net10.0/headlight.dll" "$@"; }
for layers in $depths; do
    headlight train --corpus "$out/repeated.txt" --out "$out/layers-$layers" --force --family llama --layers "$layers" --width 128 --heads 4 \
        --context 128 --batch 16 --tokens "$tokens" --vocab "$vocab" --lr 3e-3 --min-lr "$min_lr" --warmup 100 --seed 1
    headlight heads --model "$out/layers-$layers" --controls 1 --no-importance --json > "$out/census-$layers.json"
done

for layers in $depths; do
    node -e '
        const c = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        const best = key => c.heads.reduce((b, h) => h[key] > b[key] ? h : b);
        const i = best("induction"), p = best("previous");
        console.log(`${process.argv[2]} layers: best induction ${i.induction.toFixed(3)} (layer ${i.layer} head ${i.head}), ` +
            `best previous-token ${p.previous.toFixed(3)} (layer ${p.layer} head ${p.head}); roles: ${JSON.stringify(c.shares.per_role)}`);
    ' "$out/census-$layers.json" "$layers"
done
