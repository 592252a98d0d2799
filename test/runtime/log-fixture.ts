/** Run by session.test.ts in a child process: creates a session (optionally at a log level) and runs it once. */
import { readFileSync } from 'node:fs';
import { createSession, SessionOptions } from '../../runtime/session.js';

const [path, level] = process.argv.slice(2);
const options: SessionOptions = level === undefined ? {} : { logSeverityLevel: Number(level) as SessionOptions['logSeverityLevel'] };
const s = await createSession(new Uint8Array(readFileSync(path!)), options);
const out = await s.run({ x: { type: 'float32', dims: [1, 4], data: new Float32Array([-1, 0, 1, 2]) } });
process.stdout.write(`${Array.from(out.y!.data as Float32Array).join(',')}\n`);
await s.dispose();
