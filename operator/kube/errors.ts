import { ApiException } from "@kubernetes/client-node";

/**
 * Where a failed Kubernetes API call leaves a reconcile:
 * - `conflict`: 409, the object moved on; read it again and retry at once.
 * - `transient`: the API server (or what stands between it and us) did not
 *   decide: 429, 5xx (a webhook that could not be called is a 500), a timeout,
 *   a connection refused or reset. Retry with backoff until the step's deadline.
 * - `refused`: the API server decided (400, 403, 404, 422, ...): the same
 *   request gets the same answer until someone changes something.
 * - `unexpected`: not an API answer at all (a bug, an invariant broken).
 */
export type ApiErrorKind = "conflict" | "transient" | "refused" | "unexpected";

// Errors of the transport, never of the API server's decision.
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

export function apiErrorKind(err: unknown): ApiErrorKind {
  if (err instanceof ApiException) {
    const code = err.code;
    if (code === 409) return "conflict";
    if (code === 429 || code >= 500 || code === 0) return "transient";
    return "refused";
  }
  const e = err as { name?: unknown; code?: unknown; type?: unknown; cause?: unknown } | undefined;
  if (!e || typeof e !== "object") return "unexpected";
  // An AbortSignal deadline (operator/kube/request.ts), node-fetch's system errors.
  if (e.name === "AbortError" || e.name === "TimeoutError") return "transient";
  if (typeof e.code === "string" && (NETWORK_CODES.has(e.code) || e.code.startsWith("UND_ERR")))
    return "transient";
  if (e.name === "FetchError" && e.type === "system") return "transient";
  // fetch's own wording for a request that never got an answer (the socket's error is its cause).
  if (err instanceof TypeError && (err as Error).message === "fetch failed") return "transient";
  if (e.cause && e.cause !== err) {
    const inner = apiErrorKind(e.cause);
    if (inner === "transient") return inner;
  }
  return "unexpected";
}

/** One line for a status message or an event: the API server's own message where there is one. */
export function describeError(err: unknown): string {
  if (err instanceof ApiException) {
    let msg = "";
    try {
      const body = typeof err.body === "string" ? JSON.parse(err.body) : err.body;
      msg = typeof body?.message === "string" ? body.message : "";
    } catch {
      msg = typeof err.body === "string" ? err.body : "";
    }
    return `HTTP ${err.code}${msg ? `: ${msg}` : ""}`.replace(/\s+/g, " ").slice(0, 400);
  }
  const e = err as { message?: unknown; code?: unknown } | undefined;
  const m = typeof e?.message === "string" ? e.message : String(err);
  const code = typeof e?.code === "string" && !m.includes(e.code) ? ` (${e.code})` : "";
  return `${m}${code}`.replace(/\s+/g, " ").slice(0, 400);
}
