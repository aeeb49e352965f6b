// Reads lvssync.yaml and validates it (defaults <- file <- flags). Shell: file access only;
// the validation itself is the pure validateConfig. Throws E_CONFIG with every problem listed.

import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { boundaryProblems, type Config, validateConfig } from '../core/config.js';
import { LvssyncError } from '../errors.js';

export const DEFAULT_CONFIG_PATH = '/etc/lvssync/lvssync.yaml';

export async function loadConfig(file: string | undefined): Promise<{ config: Config; path?: string }> {
  const p = file ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = await readFile(p, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' && file === undefined) {
      return { config: validateConfig(undefined).config };
    }
    throw new LvssyncError('E_CONFIG', `could not read ${p}: ${(e as Error).message}`, { cause: e });
  }
  let raw: unknown;
  try {
    raw = parseYaml(text, { prettyErrors: true });
  } catch (e) {
    throw new LvssyncError('E_CONFIG', `${p} is not valid YAML: ${(e as Error).message}`, { cause: e });
  }
  const { config, problems } = validateConfig(raw);
  if (problems.length === 0) {
    const resolved = path.resolve(p);
    problems.push(...boundaryProblems(config, resolved).filter((x) => x.includes(resolved)));
  }
  if (problems.length > 0) {
    throw new LvssyncError(
      'E_CONFIG',
      `${p} has ${problems.length} problem(s):\n${problems.map((x) => `  ${x}`).join('\n')}`,
      {
        details: { problems },
      },
    );
  }
  return { config, path: p };
}

/** selfNode, or E_CONFIG naming the nodes when this host is none of them. */
export function requireSelfNode(config: Config, explicit?: string): string {
  const self = selfNode(config, explicit);
  if (!self) {
    throw new LvssyncError(
      'E_CONFIG',
      `cannot tell which configured node this host is (nodes: ${Object.keys(config.nodes).join(', ') || 'none'}): set nodes.<name>.hostname or pass --node`,
    );
  }
  return self;
}

/** Which node this host is: --node wins, then a node whose hostname (or name) matches this host. */
export function selfNode(config: Config, explicit?: string): string | undefined {
  if (explicit !== undefined) {
    if (Object.keys(config.nodes).length > 0 && !config.nodes[explicit]) {
      throw new LvssyncError(
        'E_USAGE',
        `--node ${explicit} is not one of the configured nodes (${Object.keys(config.nodes).join(', ')})`,
      );
    }
    return explicit;
  }
  const h = hostname().split('.')[0];
  for (const [name, n] of Object.entries(config.nodes)) if ((n.hostname ?? name) === h) return name;
  return undefined;
}
