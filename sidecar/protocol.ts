// The wire format between a monitor and the operator. Pure: no I/O, no clock
// (callers pass `now`), so both sides and the tests share exactly one definition.
import { createHmac, type KeyObject, timingSafeEqual } from "node:crypto";

export const PROTOCOL_VERSION = 1;
export const SUBJECT_PREFIX = "edgeshift.metrics";
/** Samples are ~400 bytes; anything past this is refused before it is parsed. */
export const MAX_MESSAGE_BYTES = 4096;
/** Freshness never gets tighter than this, so small intervals tolerate normal clock skew. */
export const MIN_FRESHNESS_MS = 5000;

export interface MonitorIdentity {
  node: string;
  namespace: string;
  pod: string;
  podUid: string;
  container: string;
}

export interface Sample extends MonitorIdentity {
  v: 1;
  /** Random 32-bit id of one monitor run: a restarted monitor starts a new sequence. */
  boot: number;
  /** 1 for the first sample of a run, +1 per sample. */
  seq: number;
  /** When the sample was taken, ms since the epoch. */
  ts: number;
  intervalMs: number;
  cpuCores: number;
  cpuLimitCores: number;
  cpuPercent: number;
  memoryBytes: number;
  memoryLimitBytes: number;
  memoryPercent: number;
  /**
   * The application's own metric (EdgeNode spec.thresholds.application), when
   * the monitor reads one: what this interval's scrape found. A value only
   * with status "ok" (a gauge's value, or a counter's rate).
   */
  appStatus?: AppStatus;
  appValue?: number;
}

/**
 * ok: a value. scrape_failed: the endpoint did not answer 200 in time or its
 * body is not Prometheus text. absent: no series matches. counter_reset: the
 * counter went down (the application restarted), no rate this interval.
 * first: the counter's first reading, no rate yet.
 */
export const APP_STATUSES = ["ok", "scrape_failed", "absent", "counter_reset", "first"] as const;
export type AppStatus = (typeof APP_STATUSES)[number];

export interface SignedSample extends Sample {
  /** base64 HMAC-SHA256 of `canonicalSample(sample)` under the monitor's key. */
  sig: string;
}

export type DropReason = "malformed" | "bad_signature" | "replayed" | "stale" | "unknown_pod";
export const DROP_REASONS: readonly DropReason[] = [
  "malformed",
  "bad_signature",
  "replayed",
  "stale",
  "unknown_pod",
];

export type VerifyResult = { ok: true; sample: SignedSample } | { ok: false; reason: DropReason };

/** A monitor's key: raw bytes, or a KeyObject (cheaper to use per message: operator/monitor/keys.ts). */
export type MonitorKey = Uint8Array | KeyObject;

/** Returns the signing key of a monitor, or undefined when the pod is not one we monitor. */
export type KeyLookup = (id: MonitorIdentity) => MonitorKey | undefined;

/** Last accepted position per monitor, keyed by `monitorId`. Owned by the receiver. */
export type ReplayState = Map<string, { boot: number; seq: number; ts: number }>;

const STRING_FIELDS = ["node", "namespace", "pod", "podUid", "container"] as const;
const NUMBER_FIELDS = [
  "ts",
  "intervalMs",
  "cpuCores",
  "cpuLimitCores",
  "cpuPercent",
  "memoryBytes",
  "memoryLimitBytes",
  "memoryPercent",
] as const;
// Fixed order: the signature covers exactly these fields, in this order.
const SIGNED_FIELDS = [
  "v",
  ...STRING_FIELDS,
  "boot",
  "seq",
  ...NUMBER_FIELDS,
] as const satisfies readonly (keyof Sample)[];
// Signed after the others, in this order, only in a sample that carries them:
// a monitor without an application metric signs exactly what it always did.
const APP_FIELDS = ["appStatus", "appValue"] as const satisfies readonly (keyof Sample)[];
const ALL_FIELDS = new Set<string>([...SIGNED_FIELDS, ...APP_FIELDS, "sig"]);

function signedFields(sample: Sample): (keyof Sample)[] {
  return sample.appStatus === undefined ? [...SIGNED_FIELDS] : [...SIGNED_FIELDS, ...APP_FIELDS];
}

const SIG_BYTES = 32;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Kubernetes names never contain '~', NATS tokens must not contain '.', so '.' travels as '~'. */
function toToken(name: string): string {
  if (!name || /[\s*>~]/.test(name))
    throw new Error(`Cannot use ${JSON.stringify(name)} in a subject`);
  return name.replaceAll(".", "~");
}

function fromToken(token: string): string | undefined {
  if (!token || /[\s*>.]/.test(token)) return undefined;
  return token.replaceAll("~", ".");
}

export function subjectFor(
  node: string,
  namespace: string,
  pod: string,
  container: string,
): string {
  return [SUBJECT_PREFIX, toToken(node), toToken(namespace), toToken(pod), toToken(container)].join(
    ".",
  );
}

/** The wildcard that matches every monitor on one node. */
export function nodeSubject(node: string): string {
  return `${SUBJECT_PREFIX}.${toToken(node)}.>`;
}

export const ALL_MONITORS_SUBJECT = `${SUBJECT_PREFIX}.>`;

export function parseSubject(
  subject: string,
): { node: string; namespace: string; pod: string; container: string } | undefined {
  const parts = subject.split(".");
  if (parts.length !== 6 || parts[0] !== "edgeshift" || parts[1] !== "metrics") return undefined;
  const [node, namespace, pod, container] = parts.slice(2).map(fromToken);
  if (!node || !namespace || !pod || !container) return undefined;
  return { node, namespace, pod, container };
}

/** Identifies one monitor run target; the pod uid keeps a re-created pod of the same name apart. */
export function monitorId(id: MonitorIdentity): string {
  return `${id.node}/${id.namespace}/${id.pod}/${id.podUid}/${id.container}`;
}

/** The exact bytes the signature covers: a JSON array of the signed fields in a fixed order. */
export function canonicalSample(sample: Sample): Uint8Array {
  // An absent appValue signs as null.
  return encoder.encode(JSON.stringify(signedFields(sample).map((f) => sample[f] ?? null)));
}

function hmac(sample: Sample, key: MonitorKey): Buffer {
  return createHmac("sha256", key).update(canonicalSample(sample)).digest();
}

export function signSample(sample: Sample, key: MonitorKey): SignedSample {
  const unsigned = Object.fromEntries(
    signedFields(sample)
      .filter((f) => sample[f] !== undefined)
      .map((f) => [f, sample[f]]),
  ) as unknown as Sample;
  return { ...unsigned, sig: hmac(unsigned, key).toString("base64") };
}

export function encodeSample(sample: SignedSample): Uint8Array {
  return encoder.encode(JSON.stringify(sample));
}

function isSignedSample(x: unknown): x is SignedSample {
  if (typeof x !== "object" || x === null || Array.isArray(x)) return false;
  const o = x as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!ALL_FIELDS.has(k)) return false;
  if (o.v !== PROTOCOL_VERSION) return false;
  for (const f of STRING_FIELDS) {
    const s = o[f];
    if (typeof s !== "string" || s.length === 0 || s.length > 253) return false;
  }
  for (const f of NUMBER_FIELDS) {
    const n = o[f];
    if (typeof n !== "number" || !Number.isFinite(n) || n < 0) return false;
  }
  const { boot, seq, intervalMs, cpuLimitCores, memoryLimitBytes, sig } = o;
  if (!Number.isInteger(boot) || (boot as number) < 0 || (boot as number) > 0xffffffff)
    return false;
  if (!Number.isSafeInteger(seq) || (seq as number) < 1) return false;
  if ((intervalMs as number) <= 0 || (cpuLimitCores as number) <= 0) return false;
  if ((memoryLimitBytes as number) <= 0) return false;
  const { appStatus, appValue } = o;
  if (appStatus === undefined) {
    if (appValue !== undefined) return false;
  } else {
    if (!(APP_STATUSES as readonly unknown[]).includes(appStatus)) return false;
    // A finite value exactly when ok.
    if (appStatus === "ok") {
      if (typeof appValue !== "number" || !Number.isFinite(appValue)) return false;
    } else if (appValue !== undefined) return false;
  }
  return typeof sig === "string" && sig.length === 44;
}

/**
 * Checks one message off the wire, cheapest checks first, and records it in `state`
 * only once it is authentic, fresh and new. Never throws.
 */
export function decodeAndVerify(
  bytes: Uint8Array,
  subject: string,
  keyLookup: KeyLookup,
  state: ReplayState,
  now: number,
): VerifyResult {
  if (bytes.byteLength > MAX_MESSAGE_BYTES) return { ok: false, reason: "malformed" };
  const where = parseSubject(subject);
  if (!where) return { ok: false, reason: "malformed" };
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(bytes));
  } catch {
    return { ok: false, reason: "malformed" };
  }
  if (!isSignedSample(parsed)) return { ok: false, reason: "malformed" };
  const sample = parsed;
  if (
    sample.node !== where.node ||
    sample.namespace !== where.namespace ||
    sample.pod !== where.pod ||
    sample.container !== where.container
  ) {
    return { ok: false, reason: "malformed" };
  }

  let key: MonitorKey | undefined;
  try {
    key = keyLookup(sample);
  } catch {
    key = undefined;
  }
  if (!key) return { ok: false, reason: "unknown_pod" };
  const given = Buffer.from(sample.sig, "base64");
  if (given.length !== SIG_BYTES || !timingSafeEqual(given, hmac(sample, key))) {
    return { ok: false, reason: "bad_signature" };
  }

  const freshnessMs = Math.max(3 * sample.intervalMs, MIN_FRESHNESS_MS);
  if (Math.abs(now - sample.ts) > freshnessMs) return { ok: false, reason: "stale" };

  const id = monitorId(sample);
  const last = state.get(id);
  if (last) {
    // A new boot id is a restarted monitor, but only if it is newer than what we have:
    // an older run's messages replayed inside the freshness window are still replays.
    const replayed = sample.boot === last.boot ? sample.seq <= last.seq : sample.ts <= last.ts;
    if (replayed) return { ok: false, reason: "replayed" };
  }
  state.set(id, { boot: sample.boot, seq: sample.seq, ts: sample.ts });
  return { ok: true, sample };
}
