// Writes tests/fixtures/trained-bpe/expected.json: the ids Hugging Face's tokenizers (npm
// "tokenizers", the Rust library through its Node binding) gives, with
// tests/fixtures/trained-bpe/tokenizer.json (written by Headlight's ByteLevelBpeTrainer on Brown's
// files ca01–cj80, 4,096 entries), for 300 held-out Brown sentences (ck01–cr09) and the shared
// texts of texts.mjs.
//
// usage (from the repository root):
//   scripts/install-brown.sh
//   dotnet run scripts/train-bpe.cs -- ~/.cache/headlight/brown/text 4096 tests/fixtures/trained-bpe/tokenizer.json "" ck01.txt
//   cd tools/tokenizer-referee && npm ci && node generate-trained-bpe.mjs [brown text folder]
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { texts } from './texts.mjs';

const require = createRequire(import.meta.url);
const hf = require('tokenizers');
const here = path.dirname(fileURLToPath(import.meta.url));
const dir = path.join(here, '../../tests/fixtures/trained-bpe');
const brown = process.argv[2] ?? path.join(os.homedir(), '.cache/headlight/brown/text');
const version = JSON.parse(readFileSync(path.join(here, 'node_modules/tokenizers/package.json'), 'utf8')).version;

const heldOutFiles = readdirSync(brown).filter((f) => /^c[k-r]\d\d\.txt$/.test(f)).sort();
const sentences = heldOutFiles.flatMap((f) => readFileSync(path.join(brown, f), 'utf8').split('\n')).filter((l) => l.length > 0);
const picked = Array.from({ length: 300 }, (_, i) => [`brown ${i}`, sentences[Math.floor((i * sentences.length) / 300)]]);
const extra = [['end of text typed', 'one<|endoftext|>two <|endoftext|> three'], ['end of text alone', '<|endoftext|>']];

const tokenizer = hf.Tokenizer.fromString(readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
const lines = [];
for (const [name, text] of [...picked, ...texts, ...extra]) {
  const e = await tokenizer.encode(text);
  lines.push(JSON.stringify({ name, text, ids: e.getIds(), decoded: await tokenizer.decode(e.getIds(), false) }));
}

const header = {
  referee: `tokenizers ${version} (Hugging Face tokenizers, Rust, Node binding)`,
  generator: 'tools/tokenizer-referee/generate-trained-bpe.mjs',
  tokenizer: 'ByteLevelBpeTrainer, Brown ca01-cj80, 4096 entries',
  vocab_size: tokenizer.getVocabSize(true),
};
writeFileSync(path.join(dir, 'expected.json'), `{\n  "header": ${JSON.stringify(header)},\n  "cases": [\n    ${lines.join(',\n    ')}\n  ]\n}\n`);
console.log(`${lines.length} cases -> ${path.join(dir, 'expected.json')}`);
