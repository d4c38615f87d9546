// kubectl-edgeshift: wiring only. Parses the command line, loads the user's
// kubeconfig, calls the API through plugin/kube.ts, prints what the renderers
// make of it, and exits with the code the usage text promises.
import { parseCommandLine, USAGE, UsageError } from "./args.ts";
import { renderDescribe } from "./describe.ts";
import { follow } from "./follow.ts";
import {
  contextNamespace,
  describeError,
  EdgeshiftApi,
  isNotFound,
  loadKubeConfig,
} from "./kube.ts";
import { renderList } from "./list.ts";
import { buildMigration, outcome, Progress, summary } from "./migrate.ts";
import { renderStatus } from "./status.ts";

const out = (s: string) => process.stdout.write(`${s}\n`);
const err = (s: string) => process.stderr.write(`${s}\n`);

async function main(argv: string[]): Promise<number> {
  let inv: ReturnType<typeof parseCommandLine>;
  try {
    inv = parseCommandLine(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    err(`error: ${e.message}\n\n${USAGE}`);
    return 2;
  }
  const cmd = inv.command;
  if (cmd.name === "help") {
    out(USAGE);
    return 0;
  }
  const kc = loadKubeConfig(inv);
  const api = new EdgeshiftApi(kc);
  const namespace = inv.namespace ?? contextNamespace(kc);

  switch (cmd.name) {
    case "status": {
      const [edgeNodes, migrations] = await Promise.all([api.edgeNodes(), api.migrations()]);
      out(renderStatus(edgeNodes, migrations, new Date(), cmd.recent));
      return 0;
    }
    case "list": {
      const ns = cmd.allNamespaces ? undefined : namespace;
      out(renderList(await api.migrations(ns), new Date(), ns));
      return 0;
    }
    case "describe": {
      const m = await api.migration(namespace, cmd.migration);
      if (!m) {
        err(`Error: migration "${cmd.migration}" not found in namespace ${namespace}`);
        return 1;
      }
      const events = await api.migrationEvents(namespace, cmd.migration);
      out(renderDescribe(m, events, new Date()));
      return 0;
    }
    case "migrate": {
      let pod: Awaited<ReturnType<EdgeshiftApi["pod"]>>;
      try {
        pod = await api.pod(namespace, cmd.pod);
      } catch (e) {
        if (!isNotFound(e)) throw e;
        err(`Error: pod "${cmd.pod}" not found in namespace ${namespace}`);
        return 1;
      }
      // One migration per pod at a time: an unfinished one (by hand or automatic) is followed.
      const all = await api.migrations(namespace);
      const running = all.find((m) => m.spec.podName === cmd.pod && !outcome(m));
      const wanted = buildMigration(
        pod,
        cmd,
        all.map((m) => m.metadata.name ?? ""),
      );
      const name = running?.metadata.name ?? wanted.metadata.name ?? "";
      const ref = `${namespace}/${name}`;
      const started = Date.now();
      if (running) {
        out(`Migration ${ref} of this pod is already running; following it`);
      } else {
        try {
          await api.createMigration(wanted);
          out(
            `Created migration ${ref} for pod ${cmd.pod} on ${pod.spec?.nodeName ?? "an unscheduled node"} ` +
              `(policy: ${cmd.policy ?? "the EdgeNode's"}, target: ${cmd.to ?? "any cloud node"})`,
          );
        } catch (e) {
          if (!(e instanceof Error && "code" in e && e.code === 409)) throw e;
          // The decision engine (or another user) created this attempt a moment ago.
          const existing = await api.migration(namespace, name);
          if (!existing || outcome(existing)) {
            err(`Error: migration ${ref} was created meanwhile and has ended; run this again`);
            return 1;
          }
          out(`Migration ${ref} of this pod is already running; following it`);
        }
      }
      if (!cmd.follow) {
        out(`Follow it with: kubectl edgeshift describe ${name} -n ${namespace}`);
        return 0;
      }

      const interrupted = new AbortController();
      process.once("SIGINT", () => interrupted.abort());
      const result = await follow(
        {
          get: () => api.migration(namespace, name),
          watch: (rv, onChange) => api.watchMigration(namespace, name, rv, onChange),
          print: out,
          warn: err,
          now: Date.now,
          timeoutMs: cmd.timeoutMs,
          signal: interrupted.signal,
        },
        new Progress(started),
      );
      switch (result.kind) {
        case "ended":
          if (result.outcome === "Succeeded") {
            out(`\n${summary(result.migration, "Succeeded")}`);
            return 0;
          }
          err(summary(result.migration, "Failed"));
          return 1;
        case "deleted":
          err(`Migration ${ref} was deleted before it ended`);
          return 1;
        case "timeout":
          err(
            `Stopped following after ${cmd.timeoutMs / 1000}s; migration ${ref} is still ${result.migration?.status?.phase ?? "Pending"} and goes on.\n` +
              `Check on it with: kubectl edgeshift describe ${name} -n ${namespace}`,
          );
          return 124;
        case "aborted":
          err(
            `\nStopped following; migration ${ref} goes on: kubectl edgeshift describe ${name} -n ${namespace}`,
          );
          return 130;
      }
    }
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // Open watches and keep-alive sockets must not hold the exit.
    setImmediate(() => process.exit(code));
  },
  (e) => {
    err(describeError(e));
    process.exit(1);
  },
);
