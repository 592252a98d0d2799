/**
 * Typed errors with stable codes. Every user-facing failure in onnxforge is an {@link OnnxForgeError}
 * whose `code` never changes between releases, and whose message names the file, node, tensor or byte
 * offset involved. The CLI maps `kind` to an exit code: `input` -> 2, `check` -> 1, `internal` -> 70.
 */

export type ErrorKind = 'input' | 'check' | 'internal';

export interface ErrorDetails {
  file?: string;
  node?: string;
  tensor?: string;
  offset?: number;
  field?: string;
  [key: string]: unknown;
}

export class OnnxForgeError extends Error {
  readonly code: string;
  readonly kind: ErrorKind;
  readonly details: ErrorDetails;

  constructor(code: string, message: string, details: ErrorDetails = {}, kind: ErrorKind = 'input') {
    super(message);
    this.name = 'OnnxForgeError';
    this.code = code;
    this.kind = kind;
    this.details = details;
  }

  /** One line for a terminal: `error[CODE] file: message`. */
  format(): string {
    const where = this.details.file && !this.message.includes(this.details.file) ? `${this.details.file}: ` : '';
    return `error[${this.code}] ${where}${this.message}`;
  }

  /** Returns a copy of this error with the file name attached (used where the decoder saw only bytes). */
  withFile(file: string): OnnxForgeError {
    if (this.details.file) return this;
    const e = new OnnxForgeError(this.code, this.message, { ...this.details, file }, this.kind);
    e.stack = this.stack;
    return e;
  }
}

export function isOnnxForgeError(e: unknown): e is OnnxForgeError {
  return e instanceof OnnxForgeError;
}

/** Factory for bad-input errors (exit code 2). */
export function inputError(code: string, message: string, details: ErrorDetails = {}): OnnxForgeError {
  return new OnnxForgeError(code, message, details, 'input');
}

/** Factory for failed checks, budgets and verifications (exit code 1). */
export function checkError(code: string, message: string, details: ErrorDetails = {}): OnnxForgeError {
  return new OnnxForgeError(code, message, details, 'check');
}

/** Factory for bugs and broken invariants inside onnxforge itself. */
export function internalError(code: string, message: string, details: ErrorDetails = {}): OnnxForgeError {
  return new OnnxForgeError(code, message, details, 'internal');
}

/** Exit code for an error thrown anywhere in a command. */
export function exitCodeFor(e: unknown): number {
  if (isOnnxForgeError(e)) return e.kind === 'check' ? 1 : e.kind === 'input' ? 2 : 70;
  return 70;
}
