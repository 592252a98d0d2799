import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { encode } from '../../onnx/wire.js';
import { runCli } from '../helpers/run-cli.js';

describe('inspect on a model that fails the checker', () => {
  it('still prints the summary, then exits 2 naming the problem', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'onnxforge-inspect-'));
    try {
      const vi = (name: string) => ({ name, type: { tensor_type: { elem_type: 1, shape: { dim: [{ dim_value: 2 }] } } } });
      const file = path.join(dir, 'dangling.onnx');
      fs.writeFileSync(file, encode({ ir_version: 8, opset_import: [{ domain: '', version: 17 }], graph: { name: 'g', node: [{ op_type: 'Add', input: ['x', 'ghost'], output: ['y'], name: 'adder' }], input: [vi('x')], output: [vi('y')] } }, 'ModelProto'));
      const r = await runCli(['inspect', file]);
      expect(r.code).toBe(2);
      expect(r.out).toMatch(/1 nodes/);
      expect(r.err).toMatch(/^error\[IR_DANGLING_INPUT\] .*"ghost" is read by adder/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
