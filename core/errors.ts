/**
 * Typed errors with stable codes. Every user-facing failure in onnxforge is an {@link OnnxForgeError}
 * whose `code` never changes between releases, and whose message names the file, node, tensor or byte
 * offset involved. The CLI maps `kind` to an exit code: `input` -> 2, `check` -> 1, `internal` -> 70.
 *
 * Codes come from the catalog in `error-codes.ts`; the factories below take only catalogued codes of
 * their kind, so a misspelled or uncatalogued code fails the type check. `errors.CODE(message, details)`
 * is the factory for one code, with the kind the catalog gives it.
 */

import { ERROR_CODES, EXIT_CODE } from './error-codes.js';
import type { CheckErrorCode, ErrorCode, ErrorKind, InputErrorCode, InternalErrorCode } from './error-codes.js';

export { ERROR_CODES, EXIT_CODE, isErrorCode } from './error-codes.js';
export type { CheckErrorCode, ErrorCode, ErrorCodeInfo, ErrorCodeOf, ErrorKind, InputErrorCode, InternalErrorCode } from './error-codes.js';

export interface ErrorDetails {
  file?: string;
  node?: string;
  tensor?: string;
  offset?: number;
  field?: string;
  [key: string]: unknown;
}

export class OnnxForgeError extends Error {
  readonly code: ErrorCode;
  readonly kind: ErrorKind;
  readonly details: ErrorDetails;

  /** `kind` defaults to the catalog's; pass it only to rebuild an error that crossed a process boundary. */
  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, kind: ErrorKind = ERROR_CODES[code].kind) {
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
export function inputError(code: InputErrorCode, message: string, details: ErrorDetails = {}): OnnxForgeError {
  return new OnnxForgeError(code, message, details, 'input');
}

/** Factory for failed checks, budgets and verifications (exit code 1). */
export function checkError(code: CheckErrorCode, message: string, details: ErrorDetails = {}): OnnxForgeError {
  return new OnnxForgeError(code, message, details, 'check');
}

/** Factory for bugs and broken invariants inside onnxforge itself. */
export function internalError(code: InternalErrorCode, message: string, details: ErrorDetails = {}): OnnxForgeError {
  return new OnnxForgeError(code, message, details, 'internal');
}

/** Builds an error with one code's catalogued kind. */
export type ErrorFactory = (message: string, details?: ErrorDetails) => OnnxForgeError;

/** One factory per catalogued code: `throw errors.DATA_SYMBOLIC_DIM(message, { tensor })`. */
export const errors: { readonly [C in ErrorCode]: ErrorFactory } = Object.freeze(
  Object.fromEntries(
    (Object.keys(ERROR_CODES) as ErrorCode[]).map((code): [ErrorCode, ErrorFactory] => [code, (message, details = {}) => new OnnxForgeError(code, message, details)]),
  ) as { [C in ErrorCode]: ErrorFactory },
);

/** Exit code for an error thrown anywhere in a command. */
export function exitCodeFor(e: unknown): number {
  return isOnnxForgeError(e) ? EXIT_CODE[e.kind] : EXIT_CODE.internal;
}
