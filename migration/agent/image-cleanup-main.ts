// `edgeshift image-cleanup`: deletes the checkpoint images named in
// EDGESHIFT_CHECKPOINT_DIGESTS from EDGESHIFT_REGISTRY_REPOSITORY, with the
// mounted registry Secret, and exits 0 (an image already gone counts as
// deleted). Run by the operator in a pod when an edge agent cannot do it.
import { readFile } from "node:fs/promises";
import { pino } from "pino";
import { credentialsFromDockerConfigJson } from "../registry/auth.ts";
import { deleteCheckpointImages } from "../registry/cleanup.ts";
import { RegistryClient } from "../registry/client.ts";
import { parseRepository } from "../registry/reference.ts";

const log = pino({ level: process.env.EDGESHIFT_LOG_LEVEL ?? "info" });

/** Exit 2, as every edgeshift program does on invalid configuration. */
function invalid(problem: string): never {
  process.stderr.write(`Invalid configuration: ${problem}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  const repository = process.env.EDGESHIFT_REGISTRY_REPOSITORY ?? "";
  if (!repository) invalid("EDGESHIFT_REGISTRY_REPOSITORY is required");
  const digests = (process.env.EDGESHIFT_CHECKPOINT_DIGESTS ?? "").split(",").filter(Boolean);
  if (digests.length === 0) invalid("EDGESHIFT_CHECKPOINT_DIGESTS is required");
  for (const d of digests) {
    if (!/^sha256:[0-9a-f]{64}$/.test(d)) invalid(`not a sha256 digest: ${JSON.stringify(d)}`);
  }
  const repo = parseRepository(repository);
  const authFile = process.env.EDGESHIFT_REGISTRY_AUTH_FILE;
  const client = new RegistryClient({
    registry: repo.apiHost,
    insecure: process.env.EDGESHIFT_REGISTRY_INSECURE === "true",
    credentials: authFile
      ? credentialsFromDockerConfigJson(await readFile(authFile), repo.registry)
      : undefined,
    logger: log,
  });
  try {
    const found = await deleteCheckpointImages(client, repo.name, digests);
    log.info({ repository: repo.name, digests, found }, "Deleted checkpoint images");
  } finally {
    client.close();
  }
}

main().catch((err: unknown) => {
  log.error({ err }, "Checkpoint image cleanup failed");
  process.exitCode = 1;
});
