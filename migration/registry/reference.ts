// Repository references as the distribution spec defines them.

export interface Repository {
  /** host[:port] as written, e.g. "registry.example.com:5000" or "docker.io". */
  registry: string;
  /** Where the API answers: Docker Hub's API host differs from its name. */
  apiHost: string;
  /** The repository path, e.g. "edgeshift/checkpoints". */
  name: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;

const DOCKER_HUB = new Set(["docker.io", "index.docker.io", "registry-1.docker.io"]);

/** Parses "host[:port]/path" (no tag, no digest). A first component without '.' or ':' (and not localhost) means Docker Hub. */
export function parseRepository(ref: string): Repository {
  if (ref.includes("@") || /:[^/]*$/.test(ref.slice(ref.indexOf("/") + 1))) {
    throw new Error(`Repository ${JSON.stringify(ref)} must not carry a tag or digest`);
  }
  const slash = ref.indexOf("/");
  const first = slash === -1 ? ref : ref.slice(0, slash);
  let registry: string;
  let name: string;
  if (
    slash !== -1 &&
    (first.includes(".") || first.includes(":") || first === "localhost" || first.startsWith("["))
  ) {
    registry = first;
    name = ref.slice(slash + 1);
  } else {
    registry = "docker.io";
    name = ref;
  }
  if (!HOST.test(registry)) throw new Error(`Invalid registry host ${JSON.stringify(registry)}`);
  if (DOCKER_HUB.has(registry) && !name.includes("/")) name = `library/${name}`;
  if (name.length === 0 || name.length > 255 || !name.split("/").every((c) => COMPONENT.test(c))) {
    throw new Error(`Invalid repository name ${JSON.stringify(name)}`);
  }
  return { registry, apiHost: DOCKER_HUB.has(registry) ? "registry-1.docker.io" : registry, name };
}

/** The host key a docker config.json uses for a registry ("https://index.docker.io/v1/" for Docker Hub). */
export function normaliseRegistryHost(key: string): string {
  let h = key.trim().replace(/^[a-z]+:\/\//i, "");
  const slash = h.indexOf("/");
  if (slash !== -1) h = h.slice(0, slash);
  h = h.toLowerCase();
  return DOCKER_HUB.has(h) ? "docker.io" : h;
}
