// Size (docs/develop.md, "Size"): choose an order of the wasm's functions that
// gzip compresses well, and write it into the "name" section as the names
// "000000", "000001", ... so that `wasm-opt --reorder-functions-by-name` puts the
// functions in that order (scripts/build.sh, which strips the names afterwards).
//   node scripts/wasm-order.mjs in.wasm out.wasm
// Only names change: code, data, imports and exports are copied byte for byte, so
// behaviour cannot change (the order of functions in a module has no meaning).
// The order is greedy: after a function comes the not yet placed function that
// shares the most 6-byte sequences with it (gzip's 32 KB window then finds them);
// ties and functions sharing nothing go in name order. Deterministic.
import { readFileSync, writeFileSync } from "node:fs";

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error("usage: node scripts/wasm-order.mjs in.wasm out.wasm");
  process.exit(2);
}
const wasm = readFileSync(input);

function leb(buf, pos) {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = buf[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if (byte < 0x80) return [value, pos];
  }
}
function uleb(n) {
  const out = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}
function fail(why) {
  console.error(`wasm-order: ${why}`);
  process.exit(1);
}

// Sections: [id, payload].
const sections = [];
for (let pos = 8; pos < wasm.length; ) {
  const id = wasm[pos];
  const [size, start] = leb(wasm, pos + 1);
  sections.push([id, wasm.subarray(start, start + size)]);
  pos = start + size;
}

// Imported functions come first in the function index space.
let imported = 0;
for (const [id, s] of sections.filter(([id]) => id === 2)) {
  void id;
  let [count, p] = leb(s, 0);
  for (let i = 0; i < count; i++) {
    let len;
    [len, p] = leb(s, p);
    p += len;
    [len, p] = leb(s, p);
    p += len;
    const kind = s[p++];
    if (kind === 0) {
      [, p] = leb(s, p);
      imported++;
    } else if (kind === 1) {
      p++; // reftype
      const flags = s[p++];
      [, p] = leb(s, p);
      if (flags & 1) [, p] = leb(s, p);
    } else if (kind === 2) {
      const flags = s[p++];
      [, p] = leb(s, p);
      if (flags & 1) [, p] = leb(s, p);
    } else if (kind === 3) {
      p += 2; // valtype, mutability
    } else if (kind === 4) {
      p++; // tag attribute
      [, p] = leb(s, p);
    } else {
      fail(`unknown import kind ${kind}`);
    }
  }
}

// Function bodies, by function index.
const bodies = new Map();
const code = sections.find(([id]) => id === 10);
if (!code) fail("no code section");
{
  const s = code[1];
  let [count, p] = leb(s, 0);
  for (let i = 0; i < count; i++) {
    let len;
    [len, p] = leb(s, p);
    bodies.set(imported + i, s.subarray(p, p + len));
    p += len;
  }
}

// The "name" section's function names (subsection 1).
const nameSection = sections.find(([id, s]) => id === 0 && s.subarray(1, 5).toString() === "name");
if (!nameSection) fail("no name section (run wasm-opt with --debuginfo first)");
const subsections = [];
{
  const s = nameSection[1];
  let [len, p] = leb(s, 0);
  p += len;
  while (p < s.length) {
    const id = s[p];
    let size;
    [size, p] = leb(s, p + 1);
    subsections.push([id, s.subarray(p, p + size)]);
    p += size;
  }
}
const fnNames = subsections.find(([id]) => id === 1);
if (!fnNames) fail("no function names");
const names = [];
{
  const s = fnNames[1];
  let [count, p] = leb(s, 0);
  for (let i = 0; i < count; i++) {
    let index, len;
    [index, p] = leb(s, p);
    [len, p] = leb(s, p);
    names.push([index, s.subarray(p, p + len).toString("latin1")]);
    p += len;
  }
}
const nameOf = new Map(names);

// Each defined function's 6-byte sequences, hashed (FNV-1a, 32 bits).
const funcs = [...bodies.keys()].sort((a, b) => {
  const na = nameOf.get(a) ?? "";
  const nb = nameOf.get(b) ?? "";
  return na < nb ? -1 : na > nb ? 1 : a - b;
});
const rank = new Map(funcs.map((f, i) => [f, i]));
const K = 6;
const grams = new Map();
for (const f of funcs) {
  const b = bodies.get(f);
  const set = new Set();
  for (let i = 0; i + K <= b.length; i++) {
    let h = 0x811c9dc5;
    for (let j = i; j < i + K; j++) h = Math.imul(h ^ b[j], 0x01000193) >>> 0;
    set.add(h);
  }
  grams.set(f, set);
}
const holders = new Map();
for (const f of funcs) {
  for (const g of grams.get(f)) {
    let list = holders.get(g);
    if (!list) holders.set(g, (list = []));
    list.push(f);
  }
}

// Greedy nearest neighbour. A sequence held by many functions says little
// (prologues, common instructions): skip those over 100 holders. (Measured: 6-byte
// sequences and 100 holders gave 242.4 KB; 8 and 50, 243.3; 12 and 50, 246.9.)
const placed = new Set();
const order = [];
let nextByName = 0;
let current = funcs[0];
while (current !== undefined) {
  placed.add(current);
  order.push(current);
  const score = new Map();
  for (const g of grams.get(current)) {
    const list = holders.get(g);
    if (list.length > 100) continue;
    for (const f of list) if (!placed.has(f)) score.set(f, (score.get(f) ?? 0) + 1);
  }
  let best;
  let bestValue = -1;
  for (const [f, n] of score) {
    const value = n / (Math.sqrt(grams.get(f).size) + 1);
    if (value > bestValue || (value === bestValue && rank.get(f) < rank.get(best))) {
      best = f;
      bestValue = value;
    }
  }
  if (best === undefined) {
    while (nextByName < funcs.length && placed.has(funcs[nextByName])) nextByName++;
    best = funcs[nextByName];
  }
  current = best;
}
const position = new Map(order.map((f, i) => [f, i]));

// New function names: the position, zero-padded; imports keep theirs.
const parts = [uleb(names.length)];
for (const [index, name] of names) {
  const renamed = position.has(index)
    ? String(position.get(index)).padStart(6, "0")
    : `~${name}`;
  const bytes = Buffer.from(renamed, "latin1");
  parts.push(uleb(index), uleb(bytes.length), bytes);
}
fnNames[1] = Buffer.concat(parts);
{
  const s = nameSection[1];
  const [len, p] = leb(s, 0);
  const head = s.subarray(0, p + len);
  const body = subsections.flatMap(([id, payload]) => [Buffer.from([id]), uleb(payload.length), payload]);
  nameSection[1] = Buffer.concat([head, ...body]);
}
const out = [wasm.subarray(0, 8)];
for (const [id, payload] of sections) out.push(Buffer.from([id]), uleb(payload.length), payload);
writeFileSync(output, Buffer.concat(out));
