// Follows one Migration until it ends: a get, then a watch from that
// resourceVersion; whenever the watch ends (server timeout, 410 Gone, a broken
// connection) get again and watch again. Clients are injected.
import type { Migration } from "../operator/api/v1alpha1.ts";
import { type Outcome, outcome, type Progress } from "./migrate.ts";

export interface Watching {
  stop(): void;
  /** Settles when the watch ends for any reason. */
  ended: Promise<unknown>;
}

export interface FollowDeps {
  /** The Migration now; undefined once it is gone. */
  get(): Promise<Migration | undefined>;
  /** Calls onChange with every later version (undefined when deleted). */
  watch(
    resourceVersion: string | undefined,
    onChange: (m: Migration | undefined) => void,
  ): Promise<Watching>;
  print(line: string): void;
  warn(line: string): void;
  now(): number;
  timeoutMs: number;
  signal?: AbortSignal;
  /** Pause before re-listing after a watch ended; default 250 ms. */
  retryMs?: number;
}

export type FollowResult =
  | { kind: "ended"; migration: Migration; outcome: Outcome }
  | { kind: "deleted" }
  | { kind: "timeout" | "aborted"; migration?: Migration };

export async function follow(deps: FollowDeps, progress: Progress): Promise<FollowResult> {
  let finish: (r: FollowResult) => void = () => {};
  let finished = false;
  const done = new Promise<FollowResult>((resolve) => {
    finish = (r) => {
      if (finished) return;
      finished = true;
      resolve(r);
    };
  });
  let last: Migration | undefined;
  const handle = (m: Migration | undefined) => {
    if (finished) return;
    if (!m) return finish({ kind: "deleted" });
    last = m;
    for (const line of progress.observe(m, deps.now())) deps.print(line);
    const result = outcome(m);
    if (result) finish({ kind: "ended", migration: m, outcome: result });
  };

  const timer = setTimeout(() => finish({ kind: "timeout", migration: last }), deps.timeoutMs);
  const onAbort = () => finish({ kind: "aborted", migration: last });
  deps.signal?.addEventListener("abort", onAbort, { once: true });

  void (async () => {
    let warned = false;
    while (!finished) {
      try {
        const m = await deps.get();
        handle(m);
        if (finished) break;
        const w = await deps.watch(m?.metadata.resourceVersion, handle);
        await Promise.race([w.ended.catch(() => {}), done]);
        w.stop();
        warned = false;
      } catch (err) {
        // Keep trying until the timeout: the API server may be restarting.
        if (!warned)
          deps.warn(`Lost the migration's updates (${(err as Error).message}); retrying`);
        warned = true;
      }
      if (!finished) await new Promise((r) => setTimeout(r, deps.retryMs ?? 250));
    }
  })();

  const result = await done;
  clearTimeout(timer);
  deps.signal?.removeEventListener("abort", onAbort);
  return result;
}
