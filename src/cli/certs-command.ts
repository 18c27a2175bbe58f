/**
 * `mtun certs`: writes a development CA plus gateway and agent certificates
 * (ECDSA P-256, SPIFFE-style URI SANs). The PKI code loads only when run.
 */
import { Command, Option } from 'commander';

function list(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(',').map((s) => s.trim()).filter((s) => s !== '')];
}

/** Builds the `certs` subcommand. Exit codes: 0 written, 1 cannot write, 2 bad arguments. */
export function certsCommand(): Command {
  return new Command('certs')
    .description('generate a development CA, a gateway certificate and agent certificates (ECDSA P-256, SPIFFE URI SANs) as PEM files')
    .addOption(new Option('--out <dir>', 'directory to write into (created if missing)').default('certs'))
    .addOption(new Option('--trust-domain <domain>', 'SPIFFE trust domain of the identities').default('cluster.local'))
    .addOption(new Option('--gateway-name <name>', 'gateway name: CN, DNS SAN and spiffe://<trust-domain>/gateway/<name>').default('gateway'))
    .addOption(new Option('--gateway-san <name>', 'extra gateway SAN (DNS name or IP); repeatable or comma-separated').argParser(list))
    .addOption(new Option('--agents <names>', 'comma-separated agent names; each gets spiffe://<trust-domain>/agent/<name> (default: cluster-a)').argParser(list))
    .addOption(new Option('--days <n>', 'leaf certificate validity in days (the CA gets 10x)').default('90'))
    .option('--new-ca', 'replace an existing CA in --out instead of reusing it', false)
    .addHelpText('after', `
Files written to --out:
  ca.pem, ca-key.pem                  the development CA (reused on later runs unless --new-ca)
  gateway.pem, gateway-key.pem        server certificate: DNS <gateway-name>, localhost, IP 127.0.0.1, ::1, --gateway-san
  agent-<name>.pem, agent-<name>-key.pem   client certificate with URI SAN spiffe://<trust-domain>/agent/<name>
Private keys are PKCS#8 PEM with mode 0600. For development and tests only.

Example:
  mtun certs --out certs/ --agents cluster-a,cluster-b --gateway-san gw.example.com`)
    .exitOverride()
    .showHelpAfterError()
    .action(async function (this: Command, opts: { out: string; trustDomain: string; gatewayName: string; gatewaySan?: string[]; agents?: string[]; days: string; newCa: boolean }) {
      const days = Number(opts.days);
      const { checkDevCertsOptions, generateDevCerts } = await import('../certs/dev-certs.js');
      const o = {
        outDir: opts.out, trustDomain: opts.trustDomain, gatewayName: opts.gatewayName,
        gatewaySans: opts.gatewaySan ?? [], agents: opts.agents ?? ['cluster-a'], validDays: days, newCa: opts.newCa,
      };
      const errs = checkDevCertsOptions(o).map((e) => (e.startsWith('validity ') ? `--days ${JSON.stringify(opts.days)}: expected whole days 1-3650` : e));
      if (errs.length > 0) this.error(`error: ${errs.join('\nerror: ')}`, { exitCode: 2, code: 'mtun.badArgs' });
      try {
        const r = await generateDevCerts(o);
        process.stdout.write(r.reusedCa ? `reused the CA in ${opts.out}\n` : `created a new CA in ${opts.out}\n`);
        for (const f of r.files) {
          process.stdout.write(`  ${f.secret ? 'key ' : 'cert'}  ${f.path}${f.sans ? `  (${f.sans.join(', ')})` : ''}\n`);
        }
      } catch (err) {
        process.stderr.write(`mtun certs: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    });
}
