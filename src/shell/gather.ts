// What a director says about itself for an audit: its managed files (texts or checksums), the
// addresses it holds, its live IPVS table (through audit.ipvsadm), its live MARK rules and the ones
// its ferm.conf would apply, and when keepalived last read its files. Shell; used by the primary for
// its own side and by the agent's `audit` op (kept free of the SSH client, which the agent never needs).

import { readFileSync } from 'node:fs';
import { isEditorTemp } from '../core/coalesce.js';
import type { Config } from '../core/config.js';
import type { AuditData } from '../core/protocol.js';
import { execTool } from './exec.js';
import { expandFerm } from './ferm-expand.js';
import { readPending } from './reload.js';
import {
  iptablesSave,
  keepalivedStartedAt,
  readAddresses,
  readReloads,
  readServiceStates,
} from './services.js';
import { Store } from './store.js';

/**
 * What this director says about itself (the agent's `audit` op returns the same). The commands run
 * side by side; with `texts: false` files come as checksums only (the primary asks for the texts of
 * the files that differ).
 */
export async function gatherHere(config: Config, opts: { texts?: boolean } = {}): Promise<AuditData> {
  const data: AuditData = {
    files: [],
    addresses: [],
    ipvsadm: { ok: false, text: '' },
    liveMangle: '',
    fermLines: '',
    mtimes: {},
  };
  const errors: string[] = [];
  const store = new Store(config);
  // the commands first: they run while this thread reads and hashes the files
  const commands = Promise.all([
    readAddresses().then((addrs) => {
      data.addresses = Object.values(addrs).flat();
    }),
    execTool(config.audit.ipvsadm, { timeoutMs: 30_000 }).then(
      (r) => {
        data.ipvsadm =
          r.code === 0 ? { ok: true, text: r.stdout } : { ok: false, text: `${r.stderr}${r.stdout}`.trim() };
      },
      (e: Error) => {
        data.ipvsadm = { ok: false, text: e.message };
      },
    ),
    iptablesSave('mangle').then(
      (t) => {
        data.liveMangle = t;
      },
      (e: Error) => {
        errors.push(e.message);
      },
    ),
    readServiceStates(config).then((s) => {
      data.services = s;
    }),
    expandFerm(config, store.stateDir).then(
      (f) => {
        data.fermLines = f.ok ? f.lines : '';
        if (!f.ok) errors.push(`ferm --noexec failed: ${f.error}`);
      },
      (e: Error) => {
        errors.push(`ferm --noexec failed: ${e.message}`);
      },
    ),
  ]);
  const withText = opts.texts !== false;
  const mtimes = data.mtimes!;
  const manifest = store.manifestWithTimes();
  for (const f of manifest.files) {
    if (isEditorTemp(f.path)) continue;
    if (withText) data.files.push({ path: f.path, sha256: f.sha256, text: readFileSync(f.path, 'utf8') });
    else data.files.push({ path: f.path, sha256: f.sha256 });
    mtimes[f.path] = manifest.mtimes.get(f.path)!;
  }
  const started = keepalivedStartedAt();
  const loaded = Math.max(started ?? 0, readReloads(config).keepalived ?? 0);
  if (loaded > 0) data.keepalivedLoadedAt = loaded;
  data.pending = readPending(config.stateDir, { keepalived: started });
  await commands;
  if (errors.length > 0) data.errors = errors;
  return data;
}
