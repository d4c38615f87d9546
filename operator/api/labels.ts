// Kubernetes LabelSelector semantics (apimachinery's metav1.LabelSelectorAsSelector
// and labels.Selector), for matching cached objects without a round trip and
// for building the labelSelector parameter of list and watch calls.
import type { LabelSelector, LabelSelectorRequirement } from "./v1alpha1.ts";

export type Labels = Readonly<Record<string, string>> | undefined | null;

const NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/** Why `key` is not a valid label key (an optional DNS subdomain prefix and "/", then a name), or undefined. */
export function labelKeyError(key: string): string | undefined {
  const slash = key.lastIndexOf("/");
  const prefix = slash >= 0 ? key.slice(0, slash) : undefined;
  const name = slash >= 0 ? key.slice(slash + 1) : key;
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    return `label key ${JSON.stringify(key)}: prefix must be a DNS subdomain of at most 253 characters`;
  }
  if (name.length === 0 || name.length > 63 || !NAME.test(name)) {
    return `label key ${JSON.stringify(key)}: name must be 1-63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric`;
  }
  return undefined;
}

/** Why `value` is not a valid label value, or undefined. */
export function labelValueError(value: string): string | undefined {
  if (value.length > 63 || !VALUE.test(value)) {
    return `label value ${JSON.stringify(value)}: must be at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric`;
  }
  return undefined;
}

function requirementErrors(r: LabelSelectorRequirement): string[] {
  const errors: string[] = [];
  const keyError = labelKeyError(r.key);
  if (keyError) errors.push(keyError);
  const values = r.values ?? [];
  switch (r.operator) {
    case "In":
    case "NotIn":
      if (values.length === 0) errors.push(`${r.key}: values must be non-empty for ${r.operator}`);
      break;
    case "Exists":
    case "DoesNotExist":
      if (values.length > 0) errors.push(`${r.key}: values must be empty for ${r.operator}`);
      break;
    default:
      errors.push(`${r.key}: unknown operator ${JSON.stringify(r.operator)}`);
  }
  for (const v of values) {
    const e = labelValueError(v);
    if (e) errors.push(e);
  }
  return errors;
}

/** Every reason Kubernetes would refuse this selector; empty when it is valid. */
export function labelSelectorErrors(selector: LabelSelector): string[] {
  const errors: string[] = [];
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    const keyError = labelKeyError(k);
    if (keyError) errors.push(keyError);
    const valueError = labelValueError(v);
    if (valueError) errors.push(valueError);
  }
  for (const r of selector.matchExpressions ?? []) errors.push(...requirementErrors(r));
  return errors;
}

function has(labels: Labels, key: string): boolean {
  return labels != null && Object.hasOwn(labels, key);
}

function requirementMatches(r: LabelSelectorRequirement, labels: Labels): boolean {
  const values = r.values ?? [];
  switch (r.operator) {
    case "In":
      return values.length > 0 && has(labels, r.key) && values.includes(labels?.[r.key] ?? "");
    case "NotIn":
      // Absent keys satisfy NotIn, as in Kubernetes.
      return values.length > 0 && (!has(labels, r.key) || !values.includes(labels?.[r.key] ?? ""));
    case "Exists":
      return values.length === 0 && has(labels, r.key);
    case "DoesNotExist":
      return values.length === 0 && !has(labels, r.key);
    default:
      return false;
  }
}

/**
 * Whether `labels` satisfy `selector`: every matchLabels pair and every
 * matchExpressions requirement must hold; an empty selector matches everything.
 * A malformed requirement (In without values, Exists with values, unknown
 * operator) matches nothing, so a selector that slipped past validation never
 * selects objects by accident.
 */
export function matchesLabelSelector(selector: LabelSelector, labels: Labels): boolean {
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    if (!has(labels, k) || labels?.[k] !== v) return false;
  }
  for (const r of selector.matchExpressions ?? []) {
    if (!requirementMatches(r, labels)) return false;
  }
  return true;
}

/**
 * The selector in the syntax of the `labelSelector` query parameter, as
 * apimachinery prints it: requirements sorted by key, values sorted, e.g.
 * "app=web,tier in (a,b),!legacy". Empty selector: "" (everything). Throws on
 * an invalid selector, which the API server would refuse anyway.
 */
export function formatLabelSelector(selector: LabelSelector): string {
  const errors = labelSelectorErrors(selector);
  if (errors.length > 0) throw new Error(`Invalid label selector: ${errors.join("; ")}`);
  const parts: { key: string; text: string }[] = [];
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) {
    parts.push({ key: k, text: `${k}=${v}` });
  }
  for (const r of selector.matchExpressions ?? []) {
    const values = [...new Set(r.values ?? [])].sort().join(",");
    const text =
      r.operator === "In"
        ? `${r.key} in (${values})`
        : r.operator === "NotIn"
          ? `${r.key} notin (${values})`
          : r.operator === "Exists"
            ? r.key
            : `!${r.key}`;
    parts.push({ key: r.key, text });
  }
  // Array.prototype.sort is stable, so requirements on one key keep their order.
  parts.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  return parts.map((p) => p.text).join(",");
}
