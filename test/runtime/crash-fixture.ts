/** Loaded inside the sandbox child by sandbox.test.ts: dies abruptly, as a native crash would. */
export function crash(): never {
  process.stderr.write('simulated native crash\n');
  process.kill(process.pid, 'SIGSEGV');
  process.exit(3);
}
