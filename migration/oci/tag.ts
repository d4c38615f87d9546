import { createHash } from "node:crypto";

/** The OCI distribution spec's tag grammar. */
export const TAG_PATTERN = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/**
 * Turns any string into a valid tag: characters outside [A-Za-z0-9_.-] become
 * '-' (the kubelet's archive names hold ':' from an RFC 3339 time), leading
 * '.'/'-' are dropped, and a name over 128 characters is cut and suffixed with
 * a hash of the original so distinct long inputs stay distinct.
 */
export function sanitizeTag(raw: string): string {
  let tag = raw.replace(/[^A-Za-z0-9_.-]/g, "-").replace(/^[.-]+/, "");
  if (tag === "") tag = "checkpoint";
  if (tag.length > 128) {
    const hash = createHash("sha256").update(raw).digest("hex").slice(0, 12);
    tag = `${tag.slice(0, 128 - hash.length - 1)}-${hash}`;
  }
  return tag;
}

/** "checkpoint-web-0_shop-app-2024-02-29T18:28:17Z.tar" -> "web-0_shop-app-2024-02-29T18-28-17Z" */
export function tagFromArchiveName(archiveName: string): string {
  const base = archiveName.slice(archiveName.lastIndexOf("/") + 1);
  return sanitizeTag(base.replace(/^checkpoint-/, "").replace(/\.tar$/, ""));
}

/** A deterministic tag per Migration and container, so a retried push lands on the same tag. */
export function tagForMigration(migrationName: string, container: string): string {
  return sanitizeTag(`${migrationName}-${container}`);
}
