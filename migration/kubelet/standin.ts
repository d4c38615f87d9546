// TEST STAND-IN for the kubelet's checkpoint endpoint (no machine here runs a
// kubelet with CRI-O and CRIU). The endpoint, authentication and authorisation
// are server.ts's (real TokenReview and SubjectAccessReview, so RBAC is really
// exercised); this file adds the runtime's side: it checks the pod and
// container and writes a CRI-O-format archive with generated CRIU image bytes.
import { join } from "node:path";
import { ApiException, CoreV1Api, KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { type Logger, pino } from "pino";
import { KubeletError, startKubeletServer } from "./server.ts";
import { kubeletArchiveName, writeStandInArchive } from "./standin-archive.ts";

export { makeServingCertificate, type ServingCertificate } from "./cert.ts";

export interface KubeletStandInSettings {
  /** Answer 500 "method CheckpointContainer not implemented", like containerd 1.x. */
  notImplemented: boolean;
  /** false: 404 for every checkpoint call, like a kubelet with the ContainerCheckpoint gate off. */
  checkpointEnabled: boolean;
  /** Bytes of generated memory pages per archive. */
  checkpointDataBytes: number;
  /** Time the "runtime" takes; beyond ?timeout= it fails with DeadlineExceeded as the kubelet would. */
  delayMs: number;
}

export interface KubeletStandInOptions extends Partial<KubeletStandInSettings> {
  /** An admin kubeconfig: TokenReview, SubjectAccessReview, and reading pods. */
  kubeconfig: string;
  nodeName: string;
  checkpointDir: string;
  logger?: Logger;
}

export interface KubeletStandIn {
  host: string;
  port: number;
  /** PEM of the CA that signed the stand-in's serving certificate. */
  caPem: string;
  checkpointDir: string;
  /** Change behaviour between calls. */
  settings: KubeletStandInSettings;
  /** Archives written so far. */
  archives: string[];
  close(): Promise<void>;
}

export async function startKubeletStandIn(opts: KubeletStandInOptions): Promise<KubeletStandIn> {
  const log = (opts.logger ?? pino({ level: "silent" })).child({ component: "kubelet-standin" });
  const kc = new KubeConfig();
  kc.loadFromFile(opts.kubeconfig);
  const core = kc.makeApiClient(CoreV1Api);
  const settings: KubeletStandInSettings = {
    notImplemented: opts.notImplemented ?? false,
    checkpointEnabled: opts.checkpointEnabled ?? true,
    checkpointDataBytes: opts.checkpointDataBytes ?? 4 * 1024 * 1024,
    delayMs: opts.delayMs ?? 0,
  };
  const archives: string[] = [];

  const server = await startKubeletServer({
    kubeconfig: opts.kubeconfig,
    nodeName: opts.nodeName,
    async checkpoint({ namespace, pod: podName, container, timeoutSeconds, user }) {
      // A kubelet with the ContainerCheckpoint gate off has no such route.
      if (!settings.checkpointEnabled) throw new KubeletError(404, "404 page not found\n");
      let pod: V1Pod;
      try {
        pod = await core.readNamespacedPod({ namespace, name: podName });
      } catch (err) {
        if (err instanceof ApiException && err.code === 404) {
          throw new KubeletError(404, "pod does not exist");
        }
        throw err;
      }
      if (pod.spec?.nodeName !== opts.nodeName) throw new KubeletError(404, "pod does not exist");
      const spec = pod.spec.containers.find((c) => c.name === container);
      if (!spec) throw new KubeletError(404, `container ${container} does not exist`);

      // Settings as they were when the call came in: a slow call must not pick up a later test's.
      const dataBytes = settings.checkpointDataBytes;
      const failed = (why: string) =>
        new KubeletError(
          500,
          `checkpointing of ${namespace}/${podName}/${container} failed (${why})`,
        );
      if (settings.notImplemented) {
        throw failed(
          "rpc error: code = Unimplemented desc = method CheckpointContainer not implemented",
        );
      }
      if (settings.delayMs > 0) {
        const limitMs =
          timeoutSeconds !== undefined && timeoutSeconds > 0 ? timeoutSeconds * 1000 : 120_000;
        await new Promise((r) => setTimeout(r, Math.min(settings.delayMs, limitMs)));
        if (settings.delayMs > limitMs) {
          throw failed("rpc error: code = DeadlineExceeded desc = context deadline exceeded");
        }
      }
      const at = new Date();
      const path = join(
        opts.checkpointDir,
        kubeletArchiveName({ pod: podName, namespace, container }, at),
      );
      await writeStandInArchive(path, {
        namespace,
        pod: podName,
        podUid: pod.metadata?.uid,
        container,
        image: spec.image ?? "",
        dataBytes,
        checkpointedAt: at,
      });
      archives.push(path);
      log.info(
        { namespace, pod: podName, container, archive: path, user },
        "Wrote checkpoint archive",
      );
      return path;
    },
  });
  return {
    host: server.host,
    port: server.port,
    caPem: server.caPem,
    checkpointDir: opts.checkpointDir,
    settings,
    archives,
    close: () => server.close(),
  };
}
