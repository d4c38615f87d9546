import { ApiException, PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";

// client-node does not infer the patch content type (CustomObjectsApi defaults
// to JSON Patch, KubernetesObjectApi to strategic merge, which custom resources
// refuse), so every patch names its type explicitly.
export const mergePatch = setHeaderOptions("Content-Type", PatchStrategy.MergePatch);
export const strategicMergePatch = setHeaderOptions(
  "Content-Type",
  PatchStrategy.StrategicMergePatch,
);
export const serverSideApply = setHeaderOptions("Content-Type", PatchStrategy.ServerSideApply);
export const FIELD_MANAGER = "edgeshift";

export function isStatus(err: unknown, code: number): boolean {
  return err instanceof ApiException && err.code === code;
}

export const isNotFound = (err: unknown) => isStatus(err, 404);
export const isConflict = (err: unknown) => isStatus(err, 409);
