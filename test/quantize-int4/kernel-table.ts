/**
 * `npx tsx test/quantize-int4/kernel-table.ts [runs] [repeats]`: the table the int4 kernel rule
 * (passes/quantize/int4/kernels.ts) is read from. For weight shapes K x N (4 bits, block 64, zero
 * points) it times float32 MatMul against com.microsoft MatMulNBits at accuracy_level 0, 1 and 4, 1
 * thread, batch 1, sequence lengths 1 and 128, interleaved (measureKernels), `repeats` times, and
 * prints each ratio to float32 (the rule's input) with the CPU and load it ran on.
 */
import { cpus, loadavg } from 'node:os';
import { readFileSync } from 'node:fs';
import { measureKernels, type KernelClass } from '../../passes/quantize/int4/kernels.js';
import { nodeRunner } from '../../runtime/runner.js';

const runs = Number(process.argv[2] ?? 30);
const repeats = Number(process.argv[3] ?? 2);
const flags = (readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '').split(' ').filter((f) => /^(avx2|avx512f|avx512_vnni|avx_vnni|fma)$/.test(f));
console.log(`# ${cpus()[0]?.model} [${flags.join(' ')}], load ${loadavg()[0]!.toFixed(2)}, ${runs} rounds`);
const shapes: Array<[number, number]> = (process.env.SHAPES ?? '128x128,128x512,512x128,128x256,256x1024,1024x256,512x512,512x2048,2048x512,640x640,768x768,1024x1024,768x3072,3072x768,2048x2048,2048x8192').split(',').map((s) => s.split('x').map(Number) as [number, number]);
const classes: KernelClass[] = shapes.map(([K, N]) => ({ K, N, bits: 4, blockSize: 64, symmetric: false }));
console.log('| K x N | rep | seq | fp32 ms | L0 | L1 | L4 | L4 error |');
for (let r = 0; r < repeats; r++) {
  for (const c of classes) {
    const [m] = await measureKernels([c], [0, 1, 4], [1, 128], nodeRunner, runs);
    for (const t of m!.timings) console.log(`| ${c.K}x${c.N} | ${r} | ${t.seq} | ${t.fp32Ms.toFixed(4)} | ${[0, 1, 4].map((l) => (t.levelMs[l]! / t.fp32Ms).toFixed(2)).join(' | ')} | ${m!.levelError[4]!.toExponential(1)} |`);
  }
}
console.log(`# load ${loadavg()[0]!.toFixed(2)}`);
