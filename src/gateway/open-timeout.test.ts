import { describe, expect, it } from 'vitest';
import { openTimeoutRefusal } from './open-timeout.js';

describe('CONNECT-UDP open deadline names the phase that timed out (RFC 9209 §2.3)', () => {
  it('dns_timeout while resolving, connection_timeout after', () => {
    expect(openTimeoutRefusal('resolving', 10_000)).toMatchObject({ status: 504, proxyStatus: expect.stringContaining('error=dns_timeout') });
    const c = openTimeoutRefusal('connecting', 10_000);
    expect(c.status).toBe(504);
    expect(c.proxyStatus).toContain('error=connection_timeout');
    expect(c.proxyStatus).not.toContain('dns_timeout');
  });
});
