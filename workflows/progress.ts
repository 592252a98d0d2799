/**
 * How a workflow shows progress and warnings without printing: its caller hands in a factory of
 * progress handles (the CLI draws core/progress.ts bars on stderr) and a logger. Both default to silence.
 */
import type { Logger } from '../passes/pass.js';

export interface ProgressHandle {
  /** Sets the count done (absolute). */
  update(count: number, total?: number): void;
  /** Changes the label (e.g. to show a running loss). */
  setLabel?(label: string): void;
  done(): void;
}

export type ProgressFactory = (label: string, total?: number) => ProgressHandle;

export const noProgress: ProgressFactory = () => ({ update() {}, done() {} });

export const quietLogger: Logger = { info() {}, warn() {}, debug() {} };
