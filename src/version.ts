/** mtun's version, as reported by the CLI and in telemetry. */
export const MTUN_VERSION = '0.1.0';
