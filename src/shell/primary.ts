// This director's view of the primary (core/primary.ts): read from lvssync.yaml and the state
// directory's primary.json, and adopted when a later handover is learnt: lvssync.yaml's `primary:`
// rewritten in place (comments kept, the previous file kept beside the state), the handover's number
// recorded, and the daemon running here told to read its configuration again.

import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { isScalar, parseDocument } from 'yaml';
import type { Config } from '../core/config.js';
import type { PrimaryClaim } from '../core/primary.js';
import { LvssyncError } from '../errors.js';
import { atomicWrite, readJsonFile } from './fs-atomic.js';
import { DEFAULT_CONFIG_PATH } from './load-config.js';
import { liveStart } from './proc.js';

interface Recorded extends PrimaryClaim {
  time: string;
  /** The director the handover was learnt from (or made on). */
  by: string;
}

const recordPath = (config: Config) => path.join(config.stateDir, 'primary.json');

/** This director's claim: lvssync.yaml's primary, with the number of the handover that set it. */
export function readClaim(config: Config): PrimaryClaim {
  const r = readJsonFile<Recorded>(recordPath(config));
  // a number recorded for another name (lvssync.yaml edited by hand since) still orders this view
  return { primary: config.primary, epoch: typeof r?.epoch === 'number' && r.epoch >= 0 ? r.epoch : 0 };
}

/**
 * Makes `claim` this director's view: lvssync.yaml's `primary:` set (the file before kept as
 * primary-<epoch>.lvssync.yaml in the state directory), primary.json written, `config` updated in
 * place, and a daemon running here sent SIGHUP to read it. Returns what changed ('' when nothing).
 */
export function adoptClaim(
  config: Config,
  configPath: string | undefined,
  claim: PrimaryClaim,
  by: string,
): string {
  const file = configPath ?? DEFAULT_CONFIG_PATH;
  const before = readClaim(config);
  if (before.primary !== claim.primary) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new LvssyncError('E_CONFIG', `cannot read ${file} to set its primary: ${(e as Error).message}`);
    }
    const mode = statSync(file).mode & 0o7777;
    atomicWrite(path.join(config.stateDir, `primary-${before.epoch}.lvssync.yaml`), text, 0o600);
    atomicWrite(file, withPrimary(text, claim.primary), mode);
  }
  const record: Recorded = { ...claim, time: new Date().toISOString(), by };
  atomicWrite(recordPath(config), `${JSON.stringify(record, null, 1)}\n`, 0o600);
  config.primary = claim.primary;
  if (before.primary === claim.primary && before.epoch === claim.epoch) return '';
  signalDaemon(config);
  return `primary ${before.primary} -> ${claim.primary} (handover ${claim.epoch}, learnt from ${by})`;
}

/** lvssync.yaml with `primary` set: only that value replaced (every other byte kept), or the key added. */
export function withPrimary(text: string, primary: string): string {
  const doc = parseDocument(text);
  const node = doc.get('primary', true);
  if (isScalar(node) && node.range)
    return `${text.slice(0, node.range[0])}${primary}${text.slice(node.range[1])}`;
  doc.set('primary', primary);
  return doc.toString();
}

/** SIGHUP to the daemon running on this director (watch-status.json's pid, if it is lvssync watch). */
function signalDaemon(config: Config): void {
  const st = readJsonFile<{ pid?: number }>(path.join(config.stateDir, 'watch-status.json'));
  const pid = st?.pid;
  if (!pid || pid === process.pid || liveStart(pid) === undefined) return;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (!argv.includes('watch')) return;
    process.kill(pid, 'SIGHUP');
  } catch {}
}
