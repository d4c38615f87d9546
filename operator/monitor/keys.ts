import { createHmac, createSecretKey, type KeyObject } from "node:crypto";
import type { MonitorIdentity } from "../../sidecar/protocol.ts";

/**
 * Each monitor signs its samples with its own key, derived from the operator's
 * master key and the pod UID and container. The operator re-derives it to
 * verify, so it never has to read the per-pod Secret that hands the key to the
 * monitor; a pod that knows its own key cannot compute another pod's.
 */
export function monitorKey(master: Buffer | KeyObject, podUid: string, container: string): Buffer {
  return createHmac("sha256", master)
    .update(`edgeshift-monitor/v1/${podUid}/${container}`)
    .digest();
}

/**
 * The verification keys of the monitors the operator hears from, derived once
 * per monitor and held as KeyObjects. On the ingest path this is most of the
 * cost otherwise: Node.js 24's HMAC with a raw Buffer key prepares the key
 * through a thrown and caught exception each time (about 8 µs, the stack
 * captured), with a KeyObject it does not (about 1.7 µs), and deriving the key
 * per sample doubled that (`npm run bench -- verify`).
 */
export class MonitorKeys {
  readonly #master: KeyObject;
  readonly #keys = new Map<string, { id: MonitorIdentity; key: KeyObject }>();

  constructor(master: Buffer) {
    this.#master = createSecretKey(master);
  }

  /** The key of one monitor (its pod UID and container). */
  get(id: MonitorIdentity): KeyObject {
    const k = `${id.podUid}/${id.container}`;
    const found = this.#keys.get(k);
    if (found) return found.key;
    const key = createSecretKey(monitorKey(this.#master, id.podUid, id.container));
    this.#keys.set(k, {
      id: {
        node: id.node,
        namespace: id.namespace,
        pod: id.pod,
        podUid: id.podUid,
        container: id.container,
      },
      key,
    });
    return key;
  }

  /** Forgets the keys of monitors `keep` refuses (their pods are gone); returns how many. */
  prune(keep: (id: MonitorIdentity) => boolean): number {
    let dropped = 0;
    for (const [k, { id }] of this.#keys) {
      if (keep(id)) continue;
      this.#keys.delete(k);
      dropped++;
    }
    return dropped;
  }

  get size(): number {
    return this.#keys.size;
  }
}

/** The Secret (in the pod's namespace, owned by the pod) that holds the pod's monitor keys. */
export function monitorSecretName(podUid: string): string {
  return `edgeshift-monitor-${podUid}`;
}
