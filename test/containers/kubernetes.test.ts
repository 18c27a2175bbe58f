/**
 * deploy/kubernetes: every overlay renders (kustomize-lite, cross-checked
 * against `kubectl kustomize` where installed), every object validates
 * against the Kubernetes API schemas (kubernetes-models, and the
 * cert-manager / prometheus-operator CRD models), the config in the
 * ConfigMaps is accepted by the real config loader, the pieces refer to one
 * another consistently, and the Grafana dashboard queries only metrics the
 * daemons export.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { Histogram } from 'prom-client';
import { ConfigMap, Namespace, Service } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { Certificate } from '@kubernetes-models/cert-manager/cert-manager.io/v1';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { parseAgentConfig, parseGatewayConfig } from '../../src/config/index.js';
import { MeshMetrics } from '../../src/telemetry/metrics.js';
import { WorkloadMap } from '../../src/telemetry/workload-map.js';
import { kustomizeBuild, type K8sObject } from './kustomize-lite.js';

const ROOT = join(import.meta.dirname, '..', '..', 'deploy', 'kubernetes');
const OVERLAYS = ['overlays/cluster-a', 'overlays/cluster-a-secret', 'overlays/cluster-b', 'overlays/cluster-b-secret', 'grafana'];

/** Model class per apiVersion/kind: `validate()` throws on a schema violation. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'cert-manager.io/v1/Certificate': Certificate,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

const rendered = new Map(OVERLAYS.map((o) => [o, kustomizeBuild(join(ROOT, o))]));

function find(objs: readonly K8sObject[], kind: string, name: string): K8sObject & Record<string, any> {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  if (o === undefined) throw new Error(`no ${kind}/${name}`);
  return o as K8sObject & Record<string, any>;
}

function kubectlAvailable(): boolean {
  try {
    execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore', timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

describe('deploy/kubernetes manifests', () => {
  it.each(OVERLAYS)('%s: every object validates against its API schema', (overlay) => {
    const objs = rendered.get(overlay)!;
    expect(objs.length).toBeGreaterThan(0);
    for (const o of objs) {
      const Model = MODELS[`${o.apiVersion}/${o.kind}`];
      expect(Model, `${o.apiVersion} ${o.kind} has a model`).toBeDefined();
      expect(() => new Model!(o as never).validate(), `${o.kind}/${o.metadata.name}`).not.toThrow();
      if (o.kind !== 'Namespace') expect(o.metadata.namespace, `${o.kind}/${o.metadata.name} namespace`).toBe(overlay === 'grafana' ? 'monitoring' : 'mtun');
    }
  });

  it('the validator does reject a broken object (the check above can fail)', () => {
    const dep = structuredClone(find(rendered.get('overlays/cluster-b')!, 'StatefulSet', 'mtun-gateway'));
    dep.spec.replicas = 'two';
    expect(() => new StatefulSet(dep as never).validate()).toThrow(/replicas/);
    const cert = structuredClone(find(rendered.get('overlays/cluster-b')!, 'Certificate', 'mtun-gateway'));
    cert.spec.uris = 'spiffe://x';
    expect(() => new Certificate(cert as never).validate()).toThrow(/uris/);
  });

  it.skipIf(!kubectlAvailable())('kustomize-lite renders what `kubectl kustomize` renders', () => {
    for (const overlay of OVERLAYS) {
      const text = execFileSync('kubectl', ['kustomize', join(ROOT, overlay)], { encoding: 'utf8', timeout: 60_000 });
      const theirs = parseAllDocuments(text).map((d) => d.toJS() as K8sObject);
      const key = (o: K8sObject) => `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
      const ours = rendered.get(overlay)!;
      expect(ours.map(key).sort(), overlay).toEqual(theirs.map(key).sort());
      for (const o of theirs) expect(ours.find((x) => key(x) === key(o)), `${overlay} ${key(o)}`).toEqual(o);
    }
  });

  it('the gateway: >= 2 replicas, UDP LoadBalancer, probes on the admin port, PDB, NetworkPolicy', () => {
    const objs = rendered.get('overlays/cluster-b')!;
    const dep = find(objs, 'StatefulSet', 'mtun-gateway');
    expect(dep.spec.replicas).toBeGreaterThanOrEqual(2);
    const c = dep.spec.template.spec.containers[0];
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    expect(c.resources.requests.cpu).toBeDefined();
    expect(c.resources.limits.memory).toBeDefined();
    expect(c.securityContext.capabilities).toEqual({ drop: ['ALL'], add: ['NET_ADMIN'] });
    expect(dep.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
    const svc = find(objs, 'Service', 'mtun-gateway');
    expect(svc.spec.type).toBe('LoadBalancer');
    expect(svc.spec.ports.map((p: { protocol: string }) => p.protocol)).toEqual(['UDP']);
    const labels = dep.spec.template.metadata.labels;
    for (const sel of [svc.spec.selector, find(objs, 'PodDisruptionBudget', 'mtun-gateway').spec.selector.matchLabels, find(objs, 'NetworkPolicy', 'mtun-gateway').spec.podSelector.matchLabels]) {
      for (const [k, v] of Object.entries(sel as Record<string, string>)) expect(labels[k]).toBe(v);
    }
    // The ServiceMonitor finds the admin Service, whose port the daemon listens on.
    const sm = find(objs, 'ServiceMonitor', 'mtun-gateway');
    const admin = find(objs, 'Service', 'mtun-gateway-admin');
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels as Record<string, string>)) expect(admin.metadata.labels?.[k]).toBe(v);
    expect(admin.spec.ports.map((p: { name: string }) => p.name)).toContain(sm.spec.endpoints[0].port);
    expect(dep.spec.template.metadata.annotations['prometheus.io/scrape']).toBe('true');
  });

  it('the ConfigMaps hold configs the real loader accepts, matching ports, paths and certificates', () => {
    const b = rendered.get('overlays/cluster-b')!;
    const a = rendered.get('overlays/cluster-a')!;
    // The pod name the StatefulSet's Downward API env gives the first replica (pools.slice.indexEnv).
    process.env.POD_NAME = 'mtun-gateway-0';
    const gw = parseGatewayConfig(find(b, 'ConfigMap', 'mtun-gateway-config').data['gateway.yaml'], 'gateway.yaml', '/etc/mtun/config');
    delete process.env.POD_NAME;
    const ag = parseAgentConfig(find(a, 'ConfigMap', 'mtun-agent-config').data['agent.yaml'], 'agent.yaml', '/etc/mtun/config');
    const gwDep = find(b, 'StatefulSet', 'mtun-gateway');
    const agDep = find(a, 'Deployment', 'mtun-agent');
    const port = (dep: Record<string, any>, name: string) => dep.spec.template.spec.containers[0].ports.find((p: { name: string }) => p.name === name).containerPort;
    expect(gw.admin.listen.port).toBe(port(gwDep, 'admin'));
    expect(gw.listen.port).toBe(port(gwDep, 'quic'));
    expect(ag.admin.listen.port).toBe(port(agDep, 'admin'));
    expect(Number(gwDep.spec.template.metadata.annotations['prometheus.io/port'])).toBe(gw.admin.listen.port);
    expect(Number(agDep.spec.template.metadata.annotations['prometheus.io/port'])).toBe(ag.admin.listen.port);
    // The key files sit where the Secret volume is mounted, under cert-manager's key names.
    const mount = (dep: Record<string, any>) => dep.spec.template.spec.containers[0].volumeMounts.find((m: { name: string }) => m.name === 'tls').mountPath;
    expect(gw.tls.cert).toBe(`${mount(gwDep)}/tls.crt`);
    expect(ag.tls.key).toBe(`${mount(agDep)}/tls.key`);
    // The certificates land in the Secrets the Deployments mount, and the
    // agent's SPIFFE URI SAN is an identity the gateway's policy names.
    const gwCert = find(b, 'Certificate', 'mtun-gateway');
    const agCert = find(a, 'Certificate', 'mtun-agent');
    const secretOf = (dep: Record<string, any>) => dep.spec.template.spec.volumes.find((v: { name: string }) => v.name === 'tls').secret.secretName;
    expect(gwCert.spec.secretName).toBe(secretOf(gwDep));
    expect(agCert.spec.secretName).toBe(secretOf(agDep));
    expect(agCert.spec.uris[0]).toMatch(/^spiffe:\/\//);
    expect(gw.policy.map((p) => p.identity)).toContain(agCert.spec.uris[0]);
    expect(gwCert.spec.dnsNames).toContain(ag.gateway.serverName);
    expect(gwCert.spec.usages).toContain('server auth');
    expect(agCert.spec.usages).toContain('client auth');
  });

  it('several replicas: the pod ordinal picks a disjoint pool slice; every replica mounts the shared reset key, not world-readable', () => {
    for (const overlay of ['overlays/cluster-b', 'overlays/cluster-b-secret']) {
      const objs = rendered.get(overlay)!;
      const sts = find(objs, 'StatefulSet', 'mtun-gateway');
      const pod = sts.spec.template.spec;
      const env = pod.containers[0].env.find((e: { name: string }) => e.name === 'POD_NAME');
      expect(env.valueFrom.fieldRef.fieldPath).toBe('metadata.name');
      // The headless Service the StatefulSet names exists (stable per-replica DNS).
      expect(find(objs, 'Service', sts.spec.serviceName).spec.clusterIP).toBe('None');
      const text = find(objs, 'ConfigMap', 'mtun-gateway-config').data['gateway.yaml'];
      const replicas: number = sts.spec.replicas;
      const slices = new Set<string>();
      for (let i = 0; i < replicas; i++) {
        process.env.POD_NAME = `${sts.metadata.name}-${i}`;
        try {
          const gw = parseGatewayConfig(text, 'gateway.yaml', '/etc/mtun/config');
          expect(gw.pools.slice).toEqual({ index: i, count: gw.pools.slice!.count });
          slices.add(JSON.stringify(gw.pools.slice));
          if (i === 0) {
            const mount = pod.containers[0].volumeMounts.find((m: { name: string }) => m.name === 'reset-key').mountPath;
            const vol = pod.volumes.find((v: { name: string }) => v.name === 'reset-key').secret;
            expect(gw.quic.statelessResetKeyFile).toBe(`${mount}/${vol.items[0].path}`);
            expect(vol.secretName).toBe('mtun-gateway-reset-key');
            expect(vol.defaultMode & 0o007).toBe(0); // the gateway refuses a key others can read
          }
        } finally {
          delete process.env.POD_NAME;
        }
      }
      expect(slices.size).toBe(replicas);
      // One replica more than the slice count is refused by the loader, naming the variable.
      process.env.POD_NAME = `${sts.metadata.name}-4`;
      try {
        expect(() => parseGatewayConfig(text, 'gateway.yaml', '/etc/mtun/config')).toThrow(/pools\.slice\.indexEnv: expected a replica index below count 4/);
      } finally {
        delete process.env.POD_NAME;
      }
    }
  });

  it('the Secret-based overlays map `mtun certs` file names onto the paths the config reads', () => {
    for (const [overlay, kind, name, files] of [
      ['overlays/cluster-b-secret', 'StatefulSet', 'mtun-gateway', ['gateway.pem', 'gateway-key.pem', 'ca.pem']],
      ['overlays/cluster-a-secret', 'Deployment', 'mtun-agent', ['agent-cluster-a.pem', 'agent-cluster-a-key.pem', 'ca.pem']],
    ] as const) {
      const objs = rendered.get(overlay)!;
      expect(objs.some((o) => o.kind === 'Certificate')).toBe(false);
      const vol = find(objs, kind, name).spec.template.spec.volumes.find((v: { name: string }) => v.name === 'tls');
      expect(vol.secret.items).toEqual([{ key: files[0], path: 'tls.crt' }, { key: files[1], path: 'tls.key' }, { key: files[2], path: 'ca.crt' }]);
    }
  });

  it('the Grafana dashboard queries only metrics the daemons export and has the promised panels', () => {
    const dash = JSON.parse(readFileSync(join(ROOT, 'grafana', 'mtun-dashboard.json'), 'utf8')) as { panels: { title: string; type: string; targets: { expr: string }[] }[] };
    const m = new MeshMetrics({ reporter: 'gateway', workloads: new WorkloadMap([]), processMetrics: false });
    const exported = new Set<string>();
    for (const metric of m.registry.getMetricsAsArray()) {
      exported.add(metric.name);
      // prom-client Histograms, and our SlotHistograms (telemetry/slot-histogram.ts), which register as type 'histogram'.
      if (metric instanceof Histogram || (metric as { type?: string }).type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(metric.name + s);
    }
    const used = new Set<string>();
    for (const p of dash.panels) for (const t of p.targets) for (const n of t.expr.match(/mtun_[a-z0-9_]+/g) ?? []) used.add(n);
    expect(used.size).toBeGreaterThan(8);
    for (const n of used) expect(exported.has(n), `${n} is exported`).toBe(true);
    const titles = dash.panels.map((p) => p.title.toLowerCase()).join(' | ');
    for (const w of ['sessions', 'throughput', 'drops by reason', 'opened / closed / failed', 'handshake rtt', 'top flows by identity']) expect(titles).toContain(w);
    expect(dash.panels.find((p) => p.title.includes('RTT'))?.type).toBe('heatmap');
    // The generated ConfigMap carries the same JSON.
    const cm = find(rendered.get('grafana')!, 'ConfigMap', 'mtun-grafana-dashboard');
    expect(JSON.parse(cm.data['mtun-dashboard.json'])).toEqual(dash);
  });
});
