/**
 * `npx tsx test/fp16/probe-wasm.ts`: the WASM column of the float16 kernel table. A child process loads
 * every probe of kernel-probe.ts in onnxruntime-web's WASM backend with verbose logging (the WASM
 * module writes its log straight to the process's file descriptors); this process reads that log and
 * prints, per op, whether onnxruntime's CastFloat16Transformer wrapped the node in Casts ('cast') or
 * left it to a native float16 kernel ('native'), and whether passes/convert/float16/kernels.ts agrees.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as ortWeb from 'onnxruntime-web';
import { serializeModel } from '../../onnx/index.js';
import { CPU_WASM_HALF_KERNELS, opKey } from '../../passes/convert/float16/kernels.js';
import { PROBES, probeModel } from './kernel-probe.js';

const MARK = '@@probe ';

if (process.argv[2] === '--child') {
  ortWeb.env.wasm.numThreads = 1;
  ortWeb.env.logLevel = 'verbose';
  for (const p of PROBES) {
    process.stderr.write(`\n${MARK}${opKey(p.domain ?? '', p.op)}\n`);
    try {
      const s = await ortWeb.InferenceSession.create(serializeModel(probeModel(p)), { logSeverityLevel: 0, logVerbosityLevel: 0, executionProviders: ['wasm'] });
      await s.release();
    } catch {
      process.stderr.write(`\n${MARK}invalid\n`);
    }
  }
  process.stderr.write(`\n${MARK}version ${ortWeb.env.versions.web}\n`);
} else {
  const r = spawnSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child'], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const text = `${r.stdout}${r.stderr}`;
  let disagree = 0;
  let version = '?';
  const parts = text.split(MARK).slice(1);
  for (let i = 0; i < parts.length; i++) {
    const [head, ...rest] = parts[i]!.split('\n');
    if (head!.startsWith('version ')) version = head!.slice(8);
    if (head!.startsWith('version ') || head === 'invalid') continue;
    const body = rest.join('\n');
    const state = parts[i + 1]?.startsWith('invalid') ? 'invalid' : /CastFloat16Transformer modified: 1/.test(body.split('CastFloat16Transformer modified: 0')[0]!) ? 'cast' : 'native';
    const agree = state === 'invalid' || (state === 'native') === CPU_WASM_HALF_KERNELS.has(head!);
    if (!agree) disagree++;
    console.log(`${head!.padEnd(48)} ${state.padEnd(8)} ${agree ? '' : 'DISAGREES with the table'}`);
  }
  console.log(`onnxruntime-web ${version}: ${disagree} of the probed ops disagree with the table`);
}
