import { type EventsV1Api, V1MicroTime, type V1ObjectReference } from "@kubernetes/client-node";
import type { Logger } from "pino";

export interface EventTarget {
  apiVersion?: string;
  kind?: string;
  metadata?: { name?: string; namespace?: string; uid?: string; resourceVersion?: string };
}

/**
 * Records events.k8s.io/v1 Events. Failures are logged, never thrown: an event
 * is a courtesy to the user and must not fail a reconcile.
 */
export class EventRecorder {
  private readonly api: EventsV1Api;
  private readonly controller: string;
  private readonly instance: string;
  private readonly fallbackNamespace: string;
  private readonly log: Logger;

  constructor(opts: {
    api: EventsV1Api;
    controller: string;
    instance: string;
    fallbackNamespace: string;
    log: Logger;
  }) {
    this.api = opts.api;
    this.controller = opts.controller;
    this.instance = opts.instance;
    this.fallbackNamespace = opts.fallbackNamespace;
    this.log = opts.log;
  }

  async record(
    target: EventTarget,
    type: "Normal" | "Warning",
    reason: string,
    action: string,
    note: string,
  ): Promise<void> {
    const name = target.metadata?.name ?? "unknown";
    // Cluster-scoped objects (EdgeNode, Node) get their events in a fallback namespace.
    const namespace = target.metadata?.namespace || this.fallbackNamespace;
    const regarding: V1ObjectReference = {
      apiVersion: target.apiVersion,
      kind: target.kind,
      name,
      namespace: target.metadata?.namespace,
      uid: target.metadata?.uid,
    };
    try {
      await this.api.createNamespacedEvent({
        namespace,
        body: {
          // client-go names events <object>.<hex nanoseconds>; generateName with a trailing dot is refused.
          metadata: {
            name: `${name.slice(0, 200)}.${(process.hrtime.bigint() + BigInt(Date.now()) * 1_000_000n).toString(16)}`,
          },
          // events.k8s.io/v1 insists on microsecond precision here.
          eventTime: new V1MicroTime(),
          reportingController: this.controller,
          reportingInstance: this.instance.slice(0, 128),
          action,
          reason,
          note: note.slice(0, 1024),
          type,
          regarding,
        },
      });
    } catch (err) {
      this.log.warn({ err, reason, object: `${namespace}/${name}` }, "Failed to record event");
    }
  }
}
