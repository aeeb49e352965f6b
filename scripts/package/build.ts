// `npm run package [-- --version V] [--out DIR]`: builds lvssync_<version>_all.deb with dpkg-deb.
// The program is bundled (esbuild, for Node 18: Debian 12's nodejs) into /usr/share/lvssync and
// started with a V8 code cache in /var/cache/lvssync; the man page and the bash completion come
// from the program's own command table; lintian runs when it is installed.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build, type Metafile } from 'esbuild';
import { defineProgram, VERSION } from '../../src/cli.js';
import { bashCompletion, manPage } from './docs.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The repository (this file is scripts/package/build.ts, or dist/scripts/package/build.js once built). */
const REPO = path.resolve(HERE, HERE.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..');
const DEBIAN = path.join(REPO, 'scripts', 'package', 'debian');
const MAINTAINER = 'lvssync maintainers <lvssync@example.org>';

export interface PackageOptions {
  /** The package's version (default: package.json's); a rebuild for an upgrade test passes its own. */
  version?: string;
  /** Where the .deb goes (default: dist/). */
  outDir?: string;
  /** Run lintian when installed (default true). */
  lintian?: boolean;
}

export interface PackageResult {
  deb: string;
  version: string;
  /** The staged tree the .deb was made from. */
  tree: string;
  /** lintian's output (tags), or undefined when lintian is not installed or was not asked. */
  lintian?: string;
  bytes: number;
}

function gz(data: string | Buffer): Buffer {
  // -9n as dh_compress: no name or time stamp, so the same input makes the same file
  return gzipSync(data, { level: 9 });
}

function write(file: string, data: string | Buffer, mode = 0o644): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  writeFileSync(file, data);
  chmodSync(file, mode);
}

/** Seconds since the epoch of the last commit (reproducible dates), else now. */
function sourceDate(): Date {
  const env = process.env.SOURCE_DATE_EPOCH;
  if (env && /^\d+$/.test(env)) return new Date(Number(env) * 1000);
  try {
    const s = execFileSync('git', ['-C', REPO, 'log', '-1', '--format=%ct'], { encoding: 'utf8' }).trim();
    if (/^\d+$/.test(s)) return new Date(Number(s) * 1000);
  } catch {}
  return new Date();
}

/**
 * The program as one CommonJS file (program.cjs) and its launcher (lvssync.cjs), which runs it with a
 * V8 code cache: measured, that starts a command faster than ES modules split by command, which
 * Node 18 and 20 must compile at every start.
 */
async function bundle(outDir: string, version: string): Promise<Metafile> {
  const result = await build({
    entryPoints: [path.join(REPO, 'src', 'main.ts')],
    outfile: path.join(outDir, 'program.cjs'),
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node18',
    // ssh2's optional native parts: it uses its JavaScript code when they are absent
    external: ['*.node', 'cpu-features'],
    // keep names (stack traces stay readable); whitespace and syntax only
    minifyWhitespace: true,
    minifySyntax: true,
    legalComments: 'none',
    // import.meta.url (ES module code) becomes the bundle's own file URL
    define: { LVSSYNC_VERSION: JSON.stringify(version), 'import.meta.url': '__lvssyncUrl' },
    banner: { js: "var __lvssyncUrl = require('node:url').pathToFileURL(__filename).href;" },
    metafile: true,
    logLevel: 'warning',
  });
  const out = path.join(outDir, 'program.cjs');
  const text = readFileSync(out, 'utf8').replace(/^#!.*\n/, '');
  // the launcher reads it as latin1: one byte per character
  const nonAscii = /[^\x00-\x7f]/.exec(text);
  if (nonAscii) throw new Error(`program.cjs has a non-ASCII character at offset ${nonAscii.index}`);
  writeFileSync(out, text);
  chmodSync(out, 0o644);
  const launcher = path.join(outDir, 'lvssync.cjs');
  copyFileSync(path.join(REPO, 'scripts', 'package', 'launcher.cjs'), launcher);
  chmodSync(launcher, 0o755);
  return result.metafile;
}

/** debian/copyright: lvssync's own stanza, then the bundled npm packages with their licenses. */
function copyright(meta: Metafile): string {
  const dirs = new Map<string, string>();
  for (const input of Object.keys(meta.inputs)) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    if (m?.[1]) dirs.set(m[1], path.join(REPO, 'node_modules', m[1]));
  }
  const holders: string[] = ['2026 the lvssync authors'];
  const packages: string[] = [];
  const licenses = new Map<string, string>();
  for (const [name, dir] of [...dirs].sort(([a], [b]) => a.localeCompare(b))) {
    const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
      version: string;
      license?: string;
    };
    const license = pkg.license ?? 'unknown';
    const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.md|\.txt)?$/i.test(f));
    const text = file ? readFileSync(path.join(dir, file), 'utf8') : '';
    const holder = /^\s*copyright\s*(\(c\)|©)?\s*(.+)$/im.exec(text)?.[2]?.trim() ?? `the authors of ${name}`;
    holders.push(`${holder} (${name})`);
    packages.push(`${name} ${pkg.version} (${license})`);
    // one text per license: the copyright lines are in the stanza above
    if (!licenses.has(license) && text) {
      licenses.set(license, text.replace(/^\s*copyright.*$/gim, '').trim());
    }
  }
  const head = readFileSync(path.join(DEBIAN, 'copyright'), 'utf8').trimEnd();
  const bundled = [
    'Files: usr/share/lvssync/*',
    `Copyright: ${holders.join('\n ')}`,
    `License: GPL-2+ and ${[...licenses.keys()].join(' and ')}`,
    `Comment: lvssync bundled with the npm packages it runs on:\n ${packages.join(',\n ')}`,
  ].join('\n');
  const blocks = [...licenses].map(
    ([id, text]) =>
      `License: ${id}\n${text
        .split('\n')
        .map((l) => (l.trim() === '' ? ' .' : ` ${l}`))
        .join('\n')}`,
  );
  return `${[head, bundled, ...blocks].join('\n\n')}\n`;
}

function md5sums(tree: string): string {
  const lines: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      const rel = path.relative(tree, p);
      if (rel === 'DEBIAN') continue;
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) lines.push(`${createHash('md5').update(readFileSync(p)).digest('hex')}  ${rel}`);
    }
  };
  walk(tree);
  return `${lines.join('\n')}\n`;
}

function installedSizeKiB(tree: string): number {
  let bytes = 0;
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else bytes += statSync(p).size;
    }
  };
  walk(tree);
  return Math.ceil(bytes / 1024);
}

export async function buildPackage(opts: PackageOptions = {}): Promise<PackageResult> {
  const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')) as {
    version: string;
    description: string;
  };
  if (pkg.version !== VERSION) {
    throw new Error(
      `package.json says ${pkg.version} but src/cli.ts's VERSION is ${VERSION}: make them equal`,
    );
  }
  const version = opts.version ?? pkg.version;
  if (!/^[0-9][A-Za-z0-9.+~-]*$/.test(version)) throw new Error(`not a Debian version: ${version}`);
  const outDir = opts.outDir ?? path.join(REPO, 'dist');
  const tree = path.join(REPO, 'dist', 'deb', `lvssync_${version}_all`);
  rmSync(tree, { recursive: true, force: true });
  mkdirSync(tree, { recursive: true, mode: 0o755 });
  const date = sourceDate();

  const meta = await bundle(path.join(tree, 'usr', 'share', 'lvssync'), version);
  mkdirSync(path.join(tree, 'usr', 'bin'), { recursive: true });
  symlinkSync('../share/lvssync/lvssync.cjs', path.join(tree, 'usr', 'bin', 'lvssync'));

  write(
    path.join(tree, 'lib', 'systemd', 'system', 'lvssync.service'),
    readFileSync(path.join(REPO, 'systemd', 'lvssync.service')),
  );

  const doc = path.join(tree, 'usr', 'share', 'doc', 'lvssync');
  write(path.join(doc, 'copyright'), copyright(meta));
  write(path.join(doc, 'README.md.gz'), gz(readFileSync(path.join(REPO, 'README.md'))));
  write(
    path.join(doc, 'examples', 'lvssync.example.yaml'),
    readFileSync(path.join(REPO, 'config', 'lvssync.example.yaml')),
  );
  write(
    path.join(doc, 'changelog.gz'),
    gz(
      `lvssync (${version}) unstable; urgency=medium\n\n  * lvssync ${version}.\n\n -- ${MAINTAINER}  ${date.toUTCString().replace('GMT', '+0000')}\n`,
    ),
  );

  // the man page and the completion from the program's own command table
  const program = await defineProgram(
    { stdout: () => {}, stderr: () => {}, isTTY: false } as never,
    () => {},
  );
  write(
    path.join(tree, 'usr', 'share', 'man', 'man8', 'lvssync.8.gz'),
    gz(manPage(program, version, date.toISOString().slice(0, 10))),
  );
  write(
    path.join(tree, 'usr', 'share', 'bash-completion', 'completions', 'lvssync'),
    bashCompletion(program),
  );
  write(
    path.join(tree, 'usr', 'share', 'lintian', 'overrides', 'lvssync'),
    readFileSync(path.join(DEBIAN, 'lintian-overrides')),
  );

  mkdirSync(path.join(tree, 'var', 'cache', 'lvssync'), { recursive: true });
  mkdirSync(path.join(tree, 'var', 'lib', 'lvssync'), { recursive: true });
  chmodSync(path.join(tree, 'var', 'lib', 'lvssync'), 0o700);

  const control = path.join(tree, 'DEBIAN');
  mkdirSync(control, { mode: 0o755 });
  for (const s of ['postinst', 'prerm', 'postrm'])
    write(path.join(control, s), readFileSync(path.join(DEBIAN, s)), 0o755);
  write(path.join(control, 'md5sums'), md5sums(tree));
  write(
    path.join(control, 'control'),
    [
      'Package: lvssync',
      `Version: ${version}`,
      'Architecture: all',
      `Maintainer: ${MAINTAINER}`,
      `Installed-Size: ${installedSizeKiB(tree)}`,
      'Depends: nodejs (>= 18), keepalived, ferm, openssh-client',
      'Recommends: openssh-server',
      'Suggests: ipvsadm',
      'Section: net',
      'Priority: optional',
      `Description: keeps LVS directors' keepalived and ferm configuration in lock-step`,
      ' lvssync validates every change of the keepalived and ferm configuration on the',
      ' primary LVS director (its own parser and lints, then ferm --noexec and',
      ' keepalived -t), sends it over SSH to the peer, which validates it again with',
      ' its own interfaces and programs and commits it atomically with a backup, then',
      ' reloads ferm and keepalived on both directors in order and verifies each.',
      ' It watches the files and pushes each saved edit, and audits drift, pending',
      ' reloads, live IPVS tables and VIP placement (Nagios exit codes, Prometheus).',
      '',
    ].join('\n'),
  );

  mkdirSync(outDir, { recursive: true });
  const deb = path.join(outDir, `lvssync_${version}_all.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', tree, deb], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, SOURCE_DATE_EPOCH: String(Math.floor(date.getTime() / 1000)) },
  });
  const result: PackageResult = { deb, version, tree, bytes: statSync(deb).size };
  if (opts.lintian !== false && existsSync('/usr/bin/lintian')) {
    try {
      result.lintian = execFileSync('lintian', ['--tag-display-limit', '0', deb], { encoding: 'utf8' });
    } catch (e) {
      // lintian exits 1 when it reports errors; its output is the result
      result.lintian = `${(e as { stdout?: string }).stdout ?? ''}`;
    }
  }
  return result;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? undefined : process.argv[i + 1];
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const version = arg('version');
  const outDir = arg('out');
  buildPackage({ ...(version ? { version } : {}), ...(outDir ? { outDir } : {}) }).then(
    (r) => {
      console.log(`${r.deb} (${(r.bytes / 1024).toFixed(0)} KiB)`);
      if (r.lintian !== undefined)
        console.log(r.lintian.trim() ? `lintian:\n${r.lintian.trimEnd()}` : 'lintian: clean');
      else console.log('lintian: not installed, not run');
      process.exit(r.lintian?.split('\n').some((l) => l.startsWith('E: ')) ? 1 : 0);
    },
    (e) => {
      console.error(`npm run package: ${(e as Error).message}`);
      process.exit(1);
    },
  );
}
