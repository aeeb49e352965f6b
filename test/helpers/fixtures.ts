// Loads fixture folders into Snapshots: files of a folder become /etc/keepalived/<relative path>
// (or are placed under a root-like layout when the folder has an etc/ directory).

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { emptySnapshot, type Snapshot } from '../../src/core/snapshot.js';

export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const SHARED = path.resolve(FIXTURES, '..', '..', '..', 'shared');

export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** A fixture folder as the director's /etc/keepalived. */
export function keepalivedFolderSnapshot(dir: string, base = '/etc/keepalived'): Snapshot {
  const s = emptySnapshot();
  for (const f of listFiles(dir)) {
    const rel = path.relative(dir, f);
    if (rel === 'expected.json' || rel.endsWith('README.md') || path.basename(rel).startsWith('.')) continue;
    const p = path.posix.join(base, rel.split(path.sep).join('/'));
    s.files.set(p, { path: p, text: readFileSync(f, 'utf8'), mode: statSync(f).mode });
  }
  s.dirs.add(base);
  return s;
}

export function subdirs(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
}

export const SAMPLES = '/usr/share/doc/keepalived/samples';

/** Every keepalived file the tests know: fixtures, Debian's samples, ../shared/corpus when present. */
export function keepalivedFiles(): string[] {
  const files = listFiles(FIXTURES).filter(
    (f) => /keepalived|\.conf$/.test(f) && !f.includes(`${path.sep}ferm`),
  );
  if (existsSync(SAMPLES))
    files.push(...listFiles(SAMPLES).filter((f) => path.basename(f).startsWith('keepalived.conf')));
  const corpus = path.join(SHARED, 'corpus');
  if (existsSync(corpus))
    files.push(...listFiles(corpus).filter((f) => /keepalived/i.test(f) && !/\.md$/.test(f)));
  return files;
}
