// `lvssync check` as a person runs it: the whole process (node's start included) of the program as
// the Debian package ships it (bundled, started with its code cache), on the how-to's set and on the
// largest keepalived file of the shared corpus, next to `keepalived -t` on the same files and
// `node -e 0` in the same run. Target: lvssync's own work (its time minus node's start) under 50 ms
// for sets under 100 files.

import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fmtMs, median, printTable, timeCommand, verdict } from './util.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const MAIN = path.join(REPO, 'dist', 'src', 'main.js');
const EMPTY = path.join(REPO, 'test', 'fixtures', 'config', 'empty.yaml');
const RUNS = 9;

interface Case {
  name: string;
  root: string;
  files: number;
}

function howTo(): Case {
  const root = mkdtempSync(path.join(tmpdir(), 'lvssync-bench-cli-'));
  const from = path.join(REPO, 'test', 'fixtures', 'sets', 'reference');
  const copy = (d: string) => {
    for (const e of readdirSync(path.join(from, d), { withFileTypes: true })) {
      const rel = path.join(d, e.name);
      if (e.isDirectory()) {
        mkdirSync(path.join(root, rel), { recursive: true });
        copy(rel);
      } else copyFileSync(path.join(from, rel), path.join(root, rel));
    }
  };
  copy('.');
  return { name: "the how-to's set (3 files)", root, files: 3 };
}

function largestCorpusFile(): Case | undefined {
  const dir = path.join(REPO, '..', 'shared', 'corpus', 'keepalived');
  if (!existsSync(dir)) return undefined;
  const files = readdirSync(dir)
    .map((f) => path.join(dir, f))
    .filter((f) => statSync(f).isFile())
    .sort((a, b) => statSync(b).size - statSync(a).size);
  if (!files[0]) return undefined;
  const root = mkdtempSync(path.join(tmpdir(), 'lvssync-bench-cli-'));
  mkdirSync(path.join(root, 'etc', 'keepalived'), { recursive: true });
  mkdirSync(path.join(root, 'etc', 'ferm'), { recursive: true });
  copyFileSync(files[0], path.join(root, 'etc', 'keepalived', 'keepalived.conf'));
  writeFileSync(path.join(root, 'etc', 'ferm', 'ferm.conf'), 'table filter chain INPUT policy ACCEPT;\n');
  return {
    name: `the largest corpus file (${path.basename(files[0])}, ${statSync(files[0]).size} bytes)`,
    root,
    files: 1,
  };
}

const time = (argv: string[], ok: number[]) => {
  const xs: number[] = [];
  for (let i = 0; i < RUNS; i++) xs.push(timeCommand(argv, ok).ms);
  return median(xs);
};

export async function benchCheckCli(keepalived: string | undefined): Promise<void> {
  // the program as the Debian package ships it: bundled, a command loading only its own code
  const { buildPackage } = await import('../scripts/package/build.js');
  const pkg = await buildPackage({
    lintian: false,
    outDir: mkdtempSync(path.join(tmpdir(), 'lvssync-bench-deb-')),
  });
  const BUNDLE = path.join(pkg.tree, 'usr', 'share', 'lvssync', 'lvssync.cjs');
  rmSync(path.dirname(pkg.deb), { recursive: true, force: true });
  // the package's /var/cache/lvssync, here a directory of the bench's own
  const cache = mkdtempSync(path.join(tmpdir(), 'lvssync-bench-cache-'));
  process.env.LVSSYNC_CODE_CACHE = cache;
  const node = time([process.execPath, '-e', '0'], [0]);
  for (const c of [howTo(), largestCorpusFile()].filter((x): x is Case => x !== undefined)) {
    try {
      // the first run after an install writes the command's code cache; the runs after it use it
      rmSync(cache, { recursive: true, force: true });
      mkdirSync(cache);
      const first = timeCommand(
        [process.execPath, BUNDLE, 'check', '--no-external', '--root', c.root, '--config', EMPTY],
        [0, 1],
      ).ms;
      const own = time(
        [process.execPath, BUNDLE, 'check', '--no-external', '--root', c.root, '--config', EMPTY],
        [0, 1],
      );
      const unbundled = time(
        [process.execPath, MAIN, 'check', '--no-external', '--root', c.root, '--config', EMPTY],
        [0, 1],
      );
      const full = time([process.execPath, BUNDLE, 'check', '--root', c.root, '--config', EMPTY], [0, 1]);
      const theirs = keepalived
        ? time(
            [keepalived, '-t', '-l', '-n', '-f', path.join(c.root, 'etc', 'keepalived', 'keepalived.conf')],
            [0, 1, 5],
          )
        : Number.NaN;
      const work = own - node;
      printTable(`lvssync check, whole process, on ${c.name} (median of ${RUNS})`, [
        { name: 'node -e 0', value: fmtMs(node) },
        { name: 'lvssync check --no-external (the packaged program)', value: fmtMs(own) },
        {
          name: "  lvssync's own work (minus node's start)",
          value: fmtMs(work),
          note: verdict(work < 50, '< 50 ms'),
        },
        { name: '  the first run after an install (writes the code cache)', value: fmtMs(first - node) },
        { name: '  the same from the source tree (dist/, unbundled)', value: fmtMs(unbundled - node) },
        { name: 'lvssync check (with ferm and keepalived -t)', value: fmtMs(full) },
        { name: 'keepalived -t on the same files', value: Number.isNaN(theirs) ? 'n/a' : fmtMs(theirs) },
      ]);
    } finally {
      rmSync(c.root, { recursive: true, force: true });
    }
  }
  rmSync(cache, { recursive: true, force: true });
  delete process.env.LVSSYNC_CODE_CACHE;
}
