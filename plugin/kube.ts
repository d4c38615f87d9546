// The Kubernetes calls kubectl-edgeshift makes, each a narrow function over
// @kubernetes/client-node with the user's kubeconfig.
import {
  ApiException,
  CoreV1Api,
  type CoreV1Event,
  CustomObjectsApi,
  KubeConfig,
  type V1Pod,
  Watch,
} from "@kubernetes/client-node";
import {
  EDGENODE_PLURAL,
  type EdgeNode,
  type EdgeNodeList,
  GROUP,
  MIGRATION_KIND,
  MIGRATION_PLURAL,
  type Migration,
  type MigrationList,
  VERSION,
} from "../operator/api/v1alpha1.ts";
import type { Watching } from "./follow.ts";

/** --kubeconfig, else $KUBECONFIG (a list of files, like kubectl), else ~/.kube/config. */
export function loadKubeConfig(opts: { kubeconfig?: string; context?: string }): KubeConfig {
  const kc = new KubeConfig();
  if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
  else kc.loadFromDefault();
  if (opts.context) {
    if (!kc.getContextObject(opts.context)) throw new Error(`context "${opts.context}" not found`);
    kc.setCurrentContext(opts.context);
  }
  return kc;
}

/** The current context's namespace, like kubectl; "default" without one. */
export function contextNamespace(kc: KubeConfig): string {
  return kc.getContextObject(kc.getCurrentContext())?.namespace || "default";
}

/** kubectl's wording: `Error from server (NotFound): migrations.edgeshift.dev "x" not found`. */
export function describeError(err: unknown): string {
  if (err instanceof ApiException) {
    let body: { message?: string; reason?: string } = {};
    try {
      body = typeof err.body === "string" ? JSON.parse(err.body) : (err.body as typeof body);
    } catch {
      body = { message: String(err.body) };
    }
    return `Error from server (${body.reason ?? err.code}): ${body.message ?? `HTTP ${err.code}`}`;
  }
  return `Error: ${(err as Error).message ?? String(err)}`;
}

export function isNotFound(err: unknown): boolean {
  return err instanceof ApiException && err.code === 404;
}

export class EdgeshiftApi {
  private readonly kc: KubeConfig;
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;

  constructor(kc: KubeConfig) {
    this.kc = kc;
    this.core = kc.makeApiClient(CoreV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
  }

  async edgeNodes(): Promise<EdgeNode[]> {
    const list = (await this.custom.listClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: EDGENODE_PLURAL,
    })) as EdgeNodeList;
    return list.items;
  }

  /** In one namespace, or in all of them without one. */
  async migrations(namespace?: string): Promise<Migration[]> {
    const list = (
      namespace
        ? await this.custom.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            plural: MIGRATION_PLURAL,
            namespace,
          })
        : await this.custom.listClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: MIGRATION_PLURAL,
          })
    ) as MigrationList;
    return list.items;
  }

  async migration(namespace: string, name: string): Promise<Migration | undefined> {
    try {
      return (await this.custom.getNamespacedCustomObject({
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

  async createMigration(m: Migration): Promise<Migration> {
    return (await this.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      plural: MIGRATION_PLURAL,
      namespace: m.metadata.namespace ?? "",
      body: m,
    })) as Migration;
  }

  pod(namespace: string, name: string): Promise<V1Pod> {
    return this.core.readNamespacedPod({ namespace, name });
  }

  /** Events about one Migration, both events.k8s.io and core ones (same storage). */
  async migrationEvents(namespace: string, name: string): Promise<CoreV1Event[]> {
    const list = await this.core.listNamespacedEvent({
      namespace,
      fieldSelector: `involvedObject.kind=${MIGRATION_KIND},involvedObject.name=${name}`,
    });
    return list.items;
  }

  /** Watches one Migration from resourceVersion on. */
  async watchMigration(
    namespace: string,
    name: string,
    resourceVersion: string | undefined,
    onChange: (m: Migration | undefined) => void,
  ): Promise<Watching> {
    let end: (v?: unknown) => void = () => {};
    const ended = new Promise((resolve) => {
      end = resolve;
    });
    const controller = await new Watch(this.kc).watch(
      `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${MIGRATION_PLURAL}`,
      {
        fieldSelector: `metadata.name=${name}`,
        allowWatchBookmarks: true,
        ...(resourceVersion ? { resourceVersion } : {}),
      },
      (type: string, obj: Migration) => {
        if (type === "ADDED" || type === "MODIFIED") onChange(obj);
        else if (type === "DELETED") onChange(undefined);
        // ERROR (e.g. 410 Gone) ends this watch; the caller gets and watches again.
        else if (type === "ERROR") end();
      },
      (err) => end(err),
    );
    return { stop: () => controller.abort(), ended };
  }
}
