/**
 * A small renderer for the subset of kustomize that deploy/kubernetes uses,
 * so the manifests can be checked where no kustomize or kubectl is
 * installed (Debian ships neither). Supported: `resources` (files, and
 * directories holding a kustomization.yaml), `namespace`, `patches` with an
 * inline JSON 6902 patch and a kind/name target, and `configMapGenerator`
 * with `files` and `options.disableNameSuffixHash: true`. Any other key is
 * an error, so the manifests cannot silently use something this does not
 * render. The test compares the result with `kubectl kustomize` where that
 * exists.
 */
import { readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { parseAllDocuments, parse as parseYaml } from 'yaml';

/** A Kubernetes object as plain JSON data. */
export type K8sObject = Record<string, unknown> & {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
};

const SUPPORTED = new Set(['apiVersion', 'kind', 'resources', 'namespace', 'patches', 'configMapGenerator']);

/** Kinds without a namespace among those the manifests use. */
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterIssuer', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);

interface JsonPatchOp {
  op: 'add' | 'replace' | 'remove';
  path: string;
  value?: unknown;
}

/** Renders the kustomization in `dir` to a list of objects (fresh copies). */
export function kustomizeBuild(dir: string): K8sObject[] {
  const k = parseYaml(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as Record<string, unknown>;
  for (const key of Object.keys(k)) {
    if (!SUPPORTED.has(key)) throw new Error(`kustomize-lite: ${dir}: "${key}" is not supported`);
  }
  const out: K8sObject[] = [];
  for (const r of (k['resources'] as string[] | undefined) ?? []) {
    const p = resolve(dir, r);
    if (statSync(p).isDirectory()) out.push(...kustomizeBuild(p));
    else out.push(...readObjects(p));
  }
  for (const g of (k['configMapGenerator'] as Record<string, unknown>[] | undefined) ?? []) {
    const opts = (g['options'] ?? {}) as Record<string, unknown>;
    if (opts['disableNameSuffixHash'] !== true) throw new Error(`kustomize-lite: ${dir}: configMapGenerator needs disableNameSuffixHash: true`);
    const data: Record<string, string> = {};
    for (const f of (g['files'] as string[] | undefined) ?? []) data[basename(f)] = readFileSync(resolve(dir, f), 'utf8');
    const metadata: K8sObject['metadata'] = { name: String(g['name']) };
    if (opts['labels'] !== undefined) metadata.labels = { ...(opts['labels'] as Record<string, string>) };
    out.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata, data });
  }
  for (const p of (k['patches'] as Record<string, unknown>[] | undefined) ?? []) {
    const target = p['target'] as { kind?: string; name?: string } | undefined;
    if (target?.kind === undefined || target.name === undefined || typeof p['patch'] !== 'string') {
      throw new Error(`kustomize-lite: ${dir}: a patch needs target.kind, target.name and an inline JSON 6902 patch`);
    }
    const hits = out.filter((o) => o.kind === target.kind && o.metadata.name === target.name);
    if (hits.length === 0) throw new Error(`kustomize-lite: ${dir}: patch target ${target.kind}/${target.name} not found`);
    const ops = parseYaml(p['patch']) as JsonPatchOp[];
    for (const o of hits) for (const op of ops) applyOp(o, op);
  }
  const ns = k['namespace'];
  if (typeof ns === 'string') {
    for (const o of out) if (!CLUSTER_SCOPED.has(o.kind)) o.metadata.namespace = ns;
  }
  return out;
}

function readObjects(file: string): K8sObject[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const out: K8sObject[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(`kustomize-lite: ${file}: ${d.errors[0]!.message}`);
    const v = d.toJS() as K8sObject | null;
    if (v !== null) out.push(v);
  }
  return out;
}

/** Applies one RFC 6902 operation (add, replace, remove) in place. */
function applyOp(doc: unknown, op: JsonPatchOp): void {
  const parts = op.path.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const last = parts.pop();
  if (last === undefined) throw new Error(`kustomize-lite: patch path "${op.path}" is empty`);
  let cur = doc as Record<string, unknown> | unknown[];
  for (const part of parts) {
    const next = (cur as Record<string, unknown>)[part];
    if (next === null || typeof next !== 'object') throw new Error(`kustomize-lite: patch path "${op.path}" does not exist`);
    cur = next as Record<string, unknown>;
  }
  if (Array.isArray(cur)) {
    const i = last === '-' ? cur.length : Number(last);
    if (!Number.isInteger(i) || i < 0 || i > cur.length || (op.op !== 'add' && i >= cur.length)) throw new Error(`kustomize-lite: patch path "${op.path}": no index ${last}`);
    if (op.op === 'add') cur.splice(i, 0, op.value);
    else if (op.op === 'replace') cur[i] = op.value;
    else cur.splice(i, 1);
    return;
  }
  if (op.op !== 'add' && !(last in cur)) throw new Error(`kustomize-lite: patch path "${op.path}" does not exist`);
  if (op.op === 'remove') delete cur[last];
  else cur[last] = op.value;
}
