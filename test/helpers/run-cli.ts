/** Runs the onnxforge CLI in-process (the same `main` the binary calls), capturing what it writes. */
import { vi } from 'vitest';
import { main } from '../../cli/main.js';

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

export async function runCli(argv: string[]): Promise<CliRun> {
  let out = '';
  let err = '';
  const text = (chunk: string | Uint8Array) => (typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
  const so = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((out += text(chunk)), true));
  const se = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((err += text(chunk)), true));
  // yargs prints help and version through console.log
  const cl = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void (out += `${a.join(' ')}\n`));
  const ce = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void (err += `${a.join(' ')}\n`));
  try {
    const code = await main(argv);
    return { code, out, err };
  } finally {
    so.mockRestore();
    se.mockRestore();
    cl.mockRestore();
    ce.mockRestore();
    process.exitCode = undefined;
  }
}
