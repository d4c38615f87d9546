// Small helpers for tests that talk to a real API server.
import { randomBytes } from "node:crypto";
import {
  ApiException,
  ApiextensionsV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  KubernetesObjectApi,
} from "@kubernetes/client-node";

export interface KubeClients {
  kc: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  apiext: ApiextensionsV1Api;
  objects: KubernetesObjectApi;
}

export function loadKubeConfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}

export function kubeClients(kubeconfigPath: string): KubeClients {
  const kc = loadKubeConfig(kubeconfigPath);
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    apiext: kc.makeApiClient(ApiextensionsV1Api),
    objects: KubernetesObjectApi.makeApiClient(kc),
  };
}

/** The parts of a metav1.Status error body tests look at. */
export interface StatusBody {
  kind?: string;
  code?: number;
  reason?: string;
  message?: string;
  details?: { causes?: { reason?: string; message?: string; field?: string }[] };
}

export interface ApiError {
  code: number;
  body: StatusBody;
}

/** The status code and parsed body of a failed API call; anything else is rethrown. */
export function apiError(err: unknown): ApiError {
  if (!(err instanceof ApiException)) throw err;
  const raw: unknown = err.body;
  let body: StatusBody = {};
  if (typeof raw === "string") {
    try {
      body = JSON.parse(raw) as StatusBody;
    } catch {
      body = { message: raw };
    }
  } else if (raw && typeof raw === "object") {
    body = raw as StatusBody;
  }
  return { code: err.code, body };
}

/** Awaits `p`, expecting it to fail with an API error, and returns that error. */
export async function rejection(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p;
  } catch (err) {
    return apiError(err);
  }
  throw new Error("Expected the API call to fail, but it succeeded");
}

export function isNotFound(err: unknown): boolean {
  return err instanceof ApiException && err.code === 404;
}

/** Awaits `p`; a 404 resolves to undefined (for idempotent cleanup). */
export async function ignoreNotFound<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** `prefix-` plus 6 random hex characters: a valid DNS label for parallel-safe names. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(3).toString("hex")}`;
}

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** What is awaited, for the timeout message. */
  description?: string;
}

/**
 * Calls `fn` until it returns something other than undefined, null or false,
 * and returns that. Errors thrown by `fn` count as "not yet"; the last one is
 * reported if the time runs out.
 */
export async function waitFor<T>(
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  { timeoutMs = 10_000, intervalMs = 100, description = "condition" }: WaitOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== null && v !== false) return v;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error ? `: last error: ${lastError.message}` : "";
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${description}${cause}`, {
        cause: lastError,
      });
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
