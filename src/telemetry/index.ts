/** Public surface of the telemetry layer. */
export { startAdminServer, type AdminServer, type AdminServerOptions, type Readiness } from './admin-server.js';
export { FlowLog, flowJoinKey, protocolName, type FlowLogOptions } from './flow-log.js';
export * from './flow-types.js';
export { MeshMetrics, HANDSHAKE_RTT_BUCKETS, MAX_REASONS, type MeshMetricsOptions, type Reporter } from './metrics.js';
export type { DaemonStatus, StatusFlow, StatusSession } from './status.js';
export { FlowHandle, Telemetry, type TelemetryOptions } from './telemetry.js';
export { UNKNOWN_WORKLOAD, WorkloadMap, type WorkloadMapEntry } from './workload-map.js';
export { directionByLocalPrefixes, FlowRecordTelemetry, type FlowRecordTelemetryOptions } from './flow-record-adapter.js';
export { ICMP_TYPE_UNCLASSIFIED, TunnelCounterSync, type TunnelRttProbe } from './tunnel-counter-sync.js';
export { CaptureTap, TapInterface, tapInterfaceNames, type CaptureFilter, type CaptureProtocol, type CaptureRingSize } from './capture-tap.js';
export type { CaptureConfig } from './capture-endpoint.js';
export type { LiveFlow, LiveFlowsDocument } from './live-flows.js';
export { InspectMetrics, Segment, SEGMENT_RTT_BUCKETS } from './inspect-metrics.js';
