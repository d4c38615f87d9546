import { access, readFile } from "node:fs/promises";
import type { CustomObjectsApi, KubeConfig } from "@kubernetes/client-node";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import { formatDuration } from "../../operator/api/duration.ts";
import { migrationFinished } from "../../operator/api/status.ts";
import {
  type ContainerCheckpointStatus,
  GROUP,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationList,
  type MigrationStatus,
  SOURCE_NODE_LABEL,
  VERSION,
} from "../../operator/api/v1alpha1.ts";
import { getCondition, setCondition } from "../../operator/kube/conditions.ts";
import { type InformerMetrics, SupervisedInformer } from "../../operator/kube/informer.ts";
import {
  setMigrationFinalizers,
  writeMigrationStatus,
} from "../../operator/kube/migration-status.ts";
import { isNotFound } from "../../operator/kube/patch.ts";
import { RequeueError, WorkQueue } from "../../operator/kube/workqueue.ts";
import { deleteArchive } from "../archive/gc.ts";
import { type ArchiveOwner, matchArchive } from "../archive/match.ts";
import { recordCheckpointRequest } from "../archive/requests.ts";
import { type ArchiveInfo, validateArchive } from "../archive/validate.ts";
import { CheckpointError, checkpoint, type KubeletPin } from "../kubelet/client.ts";
import { tagForMigration } from "../oci/tag.ts";
import type { RegistryCredentials } from "../registry/auth.ts";
import { deleteCheckpointImages, IMAGE_FINALIZER } from "../registry/cleanup.ts";
import { RegistryClient } from "../registry/client.ts";
import { pushCheckpointImage } from "../registry/push.ts";
import { parseRepository } from "../registry/reference.ts";
import { findAdoptableArchive } from "./adopt.ts";
import type { AgentConfig } from "./config.ts";
import { classifyStepError, type StepCondition, StepFailure } from "./errors.ts";

export interface AgentDeps {
  config: AgentConfig;
  kubeConfig: KubeConfig;
  custom: CustomObjectsApi;
  log: Logger;
  registry: Registry;
  credentials: () => Promise<RegistryCredentials | undefined>;
  informerMetrics?: InformerMetrics;
}

const now = () => new Date().toISOString();

/** Held by a Migration while its checkpoint images exist in the registry. */
export { IMAGE_FINALIZER };

const AGENT_STEPS = ["checkpoint", "push"] as const;

/**
 * The agent's metrics. Each step's duration, its successes and both byte kinds
 * exist at 0 from the start ("avoid missing metrics"), so a node that has not
 * moved anything yet still shows in rate() and sums; failure reasons appear as
 * they happen.
 */
export function agentMetrics(registry: Registry) {
  const steps = new Histogram({
    name: "edgeshift_agent_step_duration_seconds",
    help: "Duration of the agent's steps (checkpoint, push) per container",
    labelNames: ["step"],
    buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
    registers: [registry],
  });
  const results = new Counter({
    name: "edgeshift_agent_steps_total",
    help: "Agent steps by result",
    labelNames: ["step", "result"],
    registers: [registry],
  });
  const bytes = new Counter({
    name: "edgeshift_agent_bytes_total",
    help: "Checkpoint archive bytes read and layer bytes uploaded",
    labelNames: ["kind"],
    registers: [registry],
  });
  for (const step of AGENT_STEPS) {
    steps.zero({ step });
    results.inc({ step, result: "success" }, 0);
  }
  for (const kind of ["archive", "uploaded"]) bytes.inc({ kind }, 0);
  return { steps, results, bytes };
}

/**
 * The node-local half of a migration. For each Migration of a pod on this node
 * in the Checkpointing phase: kubelet checkpoint -> validate -> pack and push
 * -> delete the archive, writing every result to status before the next step,
 * so a restarted agent resumes instead of checkpointing or pushing twice.
 */
export class AgentController {
  private readonly deps: AgentDeps;
  /** kubeletTLS NodeSelfSigned: the kubelet certificate seen first, for this agent's lifetime. */
  private readonly kubeletPin: KubeletPin = {};
  private readonly log: Logger;
  private readonly informer: SupervisedInformer<Migration>;
  private readonly queue: WorkQueue;
  private readonly steps: Histogram<"step">;
  private readonly results: Counter<"step" | "result">;
  private readonly bytes: Counter<"kind">;

  constructor(deps: AgentDeps) {
    this.deps = deps;
    this.log = deps.log.child({ controller: "agent", node: deps.config.node });
    const labelSelector = `${SOURCE_NODE_LABEL}=${deps.config.node}`;
    this.queue = new WorkQueue({ name: "agent-migrations", log: this.log, baseDelayMs: 500 });
    this.informer = new SupervisedInformer<Migration>({
      kubeConfig: deps.kubeConfig,
      resource: "migrations",
      path: `/apis/${GROUP}/${VERSION}/${MIGRATION_PLURAL}`,
      labelSelector,
      list: async () =>
        (await deps.custom.listClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: MIGRATION_PLURAL,
          labelSelector,
        })) as MigrationList,
      onChange: (m) => this.queue.add(`${m.metadata.namespace}/${m.metadata.name}`),
      log: this.log,
      metrics: deps.informerMetrics,
    });
    const metrics = agentMetrics(deps.registry);
    this.steps = metrics.steps;
    this.results = metrics.results;
    this.bytes = metrics.bytes;
  }

  get synced(): boolean {
    return this.informer.hasSynced;
  }

  get healthy(): boolean {
    return this.informer.healthy;
  }

  async start(): Promise<void> {
    this.queue.start((key) => this.reconcile(key), 1);
    await this.informer.start();
  }

  async stop(): Promise<void> {
    await this.informer.stop();
    await this.queue.shutdown();
  }

  private async read(namespace: string, name: string): Promise<Migration | undefined> {
    try {
      return (await this.deps.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        plural: MIGRATION_PLURAL,
        namespace,
        name,
      })) as Migration;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Our turn: the operator moved it to Checkpointing and no step has ended it. */
  private ours(m: Migration): boolean {
    if (m.metadata.labels?.[SOURCE_NODE_LABEL] !== this.deps.config.node) return false;
    if (m.status?.phase !== "Checkpointing" && m.status?.phase !== "Pushing") return false;
    const conds = m.status?.conditions;
    if (getCondition(conds, "Checkpointed")?.status === "False") return false;
    const pushed = getCondition(conds, "ImagePushed")?.status;
    return pushed !== "True" && pushed !== "False";
  }

  private async reconcile(key: string): Promise<undefined> {
    const [namespace = "", name = ""] = key.split("/");
    if (!this.informer.get(name, namespace)) return undefined;
    // The cache can lag our own writes; each step starts from what is recorded now.
    let m = await this.read(namespace, name);
    if (!m) return undefined;
    if (migrationFinished(m) && m.metadata.labels?.[SOURCE_NODE_LABEL] === this.deps.config.node) {
      // Ended by the operator while a step was still retrying (a CheckpointTimeout
      // while the API server refused our writes): its archives serve nobody now.
      await this.cleanup(m, this.log.child({ key }));
    }
    if (
      m.metadata.finalizers?.includes(IMAGE_FINALIZER) &&
      (m.metadata.deletionTimestamp || migrationFinished(m))
    ) {
      await this.releaseImages(m);
      return undefined;
    }
    if (!this.ours(m)) return undefined;
    const log = this.log.child({ key });
    const containers = m.status?.containers?.map((c) => c.name) ?? m.spec.containers ?? [];
    let step: StepCondition = "Checkpointed";
    try {
      if (containers.length === 0) {
        throw new StepFailure(
          "Checkpointed",
          "CheckpointFailed",
          "the Migration lists no container to checkpoint",
        );
      }
      if (getCondition(m.status?.conditions, "Checkpointed")?.status !== "True") {
        m = await this.checkpointAll(m, containers, log);
      }
      step = "ImagePushed";
      m = await this.pushAll(m, containers, log);
    } catch (err) {
      const outcome = classifyStepError(err, step);
      if (outcome.kind === "conflict") throw new RequeueError("conflict");
      if (outcome.kind !== "failed") {
        // The API server blipped or refused one of our own calls: that says
        // nothing about the checkpoint or the image. Nothing is undone (the
        // archive and any pushed image stay for the retry, which adopts them);
        // the queue backs off, and the operator's CheckpointTimeout bounds it.
        const fields = { err, status: outcome.status, step, apiMessage: outcome.message };
        if (outcome.kind === "apiRefused") {
          log.error(
            fields,
            "The API server refused the agent's request; retrying with backoff (check the admission policies on Migrations)",
          );
        } else {
          log.warn(fields, "A Kubernetes API call failed; retrying with backoff");
        }
        throw err;
      }
      const { failure } = outcome;
      log.warn({ err, reason: failure.reason }, "Migration step failed");
      this.results.inc({
        step: failure.condition === "Checkpointed" ? "checkpoint" : "push",
        result: failure.reason,
      });
      // The step may have written since `m` was read: record the failure on the latest.
      const latest = await this.read(namespace, name);
      if (!latest) {
        // Deleted: its archives serve nobody.
        await this.cleanup(m, log);
        return undefined;
      }
      // The failure is recorded before anything is deleted: should this write
      // not get through, the retry runs the step again with all it made.
      const failed = await this.writeStatus(latest, (s) => {
        s.conditions = setCondition(
          s.conditions,
          {
            type: failure.condition,
            status: "False",
            reason: failure.reason,
            message: failure.message,
            observedGeneration: latest.metadata.generation,
          },
          new Date(),
        );
      });
      await this.cleanup(failed, log);
    }
    return undefined;
  }

  private async checkpointAll(
    m0: Migration,
    containers: string[],
    log: Logger,
  ): Promise<Migration> {
    const { config } = this.deps;
    let m = m0;
    const started = Date.now();
    if (!m.status?.timestamps?.checkpointStarted) {
      m = await this.writeStatus(m, (s) => {
        s.timestamps = { ...s.timestamps, checkpointStarted: now() };
        s.conditions = setCondition(
          s.conditions,
          {
            type: "Checkpointed",
            status: "Unknown",
            reason: "InProgress",
            message: "checkpointing through the kubelet",
          },
          new Date(),
        );
      });
    }
    for (const name of containers) {
      const entry = m.status?.containers?.find((c) => c.name === name);
      // A restarted agent finds the archive it already made: no second checkpoint.
      if (entry?.archivePath && (await exists(entry.archivePath))) continue;
      const target = {
        namespace: m.metadata.namespace ?? "",
        pod: m.spec.podName,
        container: name,
      };
      // Killed while the kubelet was checkpointing: the kubelet finished without us.
      const adopted = await this.findArchive(m, target, log);
      if (adopted) {
        log.info(
          { container: name, archive: adopted.path },
          "Adopted the archive of an interrupted checkpoint",
        );
        m = await this.writeStatus(m, (s) => {
          s.containers = upsert(s.containers, {
            name,
            archivePath: adopted.path,
            archiveSizeBytes: adopted.sizeBytes,
          });
        });
        continue;
      }
      // Before the call: the sweeper deletes only archives the ledger accounts for.
      await recordCheckpointRequest(config.checkpointDir, target).catch((err: unknown) => {
        throw new StepFailure(
          "Checkpointed",
          "CheckpointFailed",
          `cannot record the checkpoint request in ${config.checkpointDir}: ${(err as Error).message}`,
        );
      });
      const t0 = performance.now();
      const path = await kubeletCheckpoint(target, {
        host: config.kubeletHost,
        port: config.kubeletPort,
        token: async () => (await readFile(config.tokenFile, "utf8")).trim(),
        tlsMode: config.kubeletTlsMode,
        nodeName: config.node,
        pin: this.kubeletPin,
        ca:
          config.kubeletTlsMode === "NodeSelfSigned"
            ? undefined
            : await readFile(config.kubeletCaFile),
        timeoutSeconds: config.checkpointTimeoutSeconds,
        logger: log,
      });
      const info = await validateArchive(path, { checkpointDir: config.checkpointDir });
      const mismatch = matchArchive(info.metadata, target);
      if (mismatch) {
        throw new StepFailure(
          "Checkpointed",
          "ArchiveInvalid",
          `the kubelet returned ${info.path}, but ${mismatch}`,
        );
      }
      this.steps.observe({ step: "checkpoint" }, (performance.now() - t0) / 1000);
      this.results.inc({ step: "checkpoint", result: "success" });
      log.info(
        { container: name, archive: info.path, bytes: info.sizeBytes },
        "Checkpointed container",
      );
      m = await this.writeStatus(m, (s) => {
        s.containers = upsert(s.containers, {
          name,
          archivePath: info.path,
          archiveSizeBytes: info.sizeBytes,
        });
      });
    }
    const seconds = (Date.now() - started) / 1000;
    return this.writeStatus(m, (s) => {
      s.timestamps = { ...s.timestamps, checkpointed: now() };
      s.conditions = setCondition(
        s.conditions,
        {
          type: "Checkpointed",
          status: "True",
          reason: "CheckpointCreated",
          message: `checkpointed ${containers.length} container(s) in ${formatDuration(seconds)}`,
        },
        new Date(),
      );
    });
  }

  private async pushAll(m0: Migration, containers: string[], log: Logger): Promise<Migration> {
    const { config } = this.deps;
    let m = m0;
    const started = Date.now();
    const credentials = await this.deps.credentials();
    const ca = config.registryCaFile ? await readFile(config.registryCaFile) : undefined;
    if (!m.metadata.finalizers?.includes(IMAGE_FINALIZER)) {
      // Before anything is pushed: whatever happens next, the images get cleaned up.
      m = await this.setFinalizers(m, [...(m.metadata.finalizers ?? []), IMAGE_FINALIZER]);
    }
    for (const name of containers) {
      const entry = m.status?.containers?.find((c) => c.name === name);
      if (entry?.digest) continue;
      if (!entry?.archivePath)
        throw new StepFailure("ImagePushed", "ArchiveInvalid", `no archive recorded for ${name}`);
      const info = await validateArchive(entry.archivePath, {
        checkpointDir: config.checkpointDir,
      });
      const t0 = performance.now();
      const res = await this.withRetries(() =>
        pushCheckpointImage({
          archive: info,
          repository: config.registryRepository,
          tag: tagForMigration(m.metadata.name ?? "", name),
          compression: config.compression,
          insecure: config.registryInsecure,
          ca,
          credentials,
          logger: log,
        }),
      );
      this.steps.observe({ step: "push" }, (performance.now() - t0) / 1000);
      this.results.inc({ step: "push", result: "success" });
      this.bytes.inc({ kind: "archive" }, res.sizes.archiveBytes);
      this.bytes.inc({ kind: "uploaded" }, res.sizes.uploadedBytes);
      log.info(
        { container: name, image: res.reference, digest: res.digest, bytes: res.sizes.layerBytes },
        "Pushed checkpoint image",
      );
      m = await this.writeStatus(m, (s) => {
        s.containers = upsert(s.containers, {
          name,
          // The digest only: the operator builds the image reference from the
          // EdgeNode's repository (admission refuses an image from the agent).
          digest: res.digest,
          imageSizeBytes: res.sizes.layerBytes,
        });
      });
      // The image holds the checkpoint now; the archive (process memory) must not linger on the node.
      await deleteArchive(config.checkpointDir, info.path, { logger: log });
    }
    const seconds = (Date.now() - started) / 1000;
    return this.writeStatus(m, (s) => {
      s.timestamps = { ...s.timestamps, imagePushed: now() };
      s.conditions = setCondition(
        s.conditions,
        {
          type: "ImagePushed",
          status: "True",
          reason: "ImagePushed",
          message: `pushed ${containers.length} checkpoint image(s) in ${formatDuration(seconds)}`,
        },
        new Date(),
      );
    });
  }

  /**
   * The newest archive written since this Migration's checkpoint started that
   * holds this container by its own metadata, if any (adopt.ts).
   */
  private async findArchive(
    m: Migration,
    target: ArchiveOwner,
    log: Logger,
  ): Promise<ArchiveInfo | undefined> {
    const since = Date.parse(m.status?.timestamps?.checkpointStarted ?? "");
    if (!Number.isFinite(since)) return undefined;
    return findAdoptableArchive(
      this.deps.config.checkpointDir,
      { ...target, since },
      { logger: log },
    );
  }

  /** A registry that does not answer gets two more tries with backoff before the step fails. */
  private async withRetries<T>(fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        const outcome = classifyStepError(err, "ImagePushed");
        const down = outcome.kind === "failed" && outcome.failure.reason === "RegistryUnavailable";
        if (attempt >= 3 || !down) throw err;
        await new Promise((r) => setTimeout(r, 500 * 2 ** attempt));
      }
    }
  }

  /**
   * The Migration ended (the restored pod pulled its image, or it failed) or is
   * being deleted: under the Delete retention its images (process memory) leave
   * the registry, then the finalizer goes.
   */
  private async releaseImages(m: Migration): Promise<void> {
    const { config } = this.deps;
    if (config.imageRetention === "Delete") {
      const repo = parseRepository(config.registryRepository);
      const client = new RegistryClient({
        registry: repo.apiHost,
        insecure: config.registryInsecure,
        ca: config.registryCaFile ? await readFile(config.registryCaFile) : undefined,
        credentials: await this.deps.credentials(),
        logger: this.log,
      });
      const digests = (m.status?.containers ?? []).flatMap((c) => (c.digest ? [c.digest] : []));
      await deleteCheckpointImages(client, repo.name, digests);
      this.log.info(
        { key: `${m.metadata.namespace}/${m.metadata.name}`, digests },
        "Deleted checkpoint images",
      );
    }
    await this.setFinalizers(
      m,
      (m.metadata.finalizers ?? []).filter((f) => f !== IMAGE_FINALIZER),
    );
  }

  private setFinalizers(m: Migration, finalizers: string[]): Promise<Migration> {
    return setMigrationFinalizers(this.deps.custom, m, finalizers);
  }

  /** After a failure nothing of the checkpoint stays on the node. */
  private async cleanup(m: Migration, log: Logger): Promise<void> {
    for (const c of m.status?.containers ?? []) {
      if (!c.archivePath) continue;
      await deleteArchive(this.deps.config.checkpointDir, c.archivePath, { logger: log }).catch(
        (err) => log.warn({ err, archive: c.archivePath }, "Failed to delete archive"),
      );
    }
  }

  private async writeStatus(
    m: Migration,
    mutate: (s: MigrationStatus) => void,
  ): Promise<Migration> {
    try {
      return await writeMigrationStatus(this.deps.custom, m, mutate);
    } catch (err) {
      if (isNotFound(err)) {
        throw new StepFailure("Checkpointed", "CheckpointFailed", "the Migration was deleted");
      }
      throw err;
    }
  }
}

/**
 * The kubelet's checkpoint call, every failure of it a CheckpointError: one
 * that escapes the client unwrapped (the answer cut short, the token file
 * unreadable) is still the kubelet step's, never the API server's.
 */
async function kubeletCheckpoint(...args: Parameters<typeof checkpoint>): Promise<string> {
  try {
    return await checkpoint(...args);
  } catch (err) {
    if (err instanceof CheckpointError) throw err;
    throw new CheckpointError(
      "CheckpointFailed",
      `The kubelet checkpoint call failed: ${(err as Error)?.message ?? String(err)}`,
      { cause: err },
    );
  }
}

function upsert(
  list: ContainerCheckpointStatus[] | undefined,
  entry: ContainerCheckpointStatus,
): ContainerCheckpointStatus[] {
  const out = [...(list ?? [])];
  const i = out.findIndex((c) => c.name === entry.name);
  if (i >= 0) out[i] = { ...out[i], ...entry };
  else out.push(entry);
  return out;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
