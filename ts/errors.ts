// Every failure casspec reports is a CasspecError with a stable `code`, so callers can branch on
// the cause without parsing messages. Native errors arrive with the same codes.

export type ErrorCode =
  | 'E_INVALID_ARG' // a bad option or argument
  | 'E_CONFIG' // config.json missing, malformed or unsupported
  | 'E_SAFETENSORS' // a weight file is malformed (header, offsets, dtype)
  | 'E_SHAPE' // a tensor's shape or size disagrees with the config
  | 'E_DTYPE' // unsupported tensor dtype
  | 'E_MISSING_TENSOR' // a tensor the model needs is absent
  | 'E_UNKNOWN_TENSOR' // the files hold a tensor a Llama model does not have
  | 'E_TOKENIZER' // tokenizer.json missing or malformed
  | 'E_CONTEXT_FULL' // prompt + generation would exceed the context
  | 'E_BACKEND' // the requested backend is not available
  | 'E_OOM' // out of host or device memory
  | 'E_CUDA' // a CUDA error
  | 'E_DISPOSED' // the model or context was disposed
  | 'E_BUSY' // an operation is already running on that context
  | 'E_ABORTED' // cancelled through an AbortSignal
  | 'E_NATIVE' // the native addon could not be loaded
  | 'E_INTERNAL'; // a bug: please report it

export class CasspecError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CasspecError';
    this.code = code;
  }
}

/** Re-throws anything thrown by the native addon as a CasspecError (keeping its code). */
export function fromNative(e: unknown): CasspecError {
  if (e instanceof CasspecError) return e;
  const err = e as { code?: string; message?: string };
  const code = (typeof err?.code === 'string' && err.code.startsWith('E_') ? err.code : 'E_INTERNAL') as ErrorCode;
  return new CasspecError(code, err?.message ?? String(e), { cause: e });
}
