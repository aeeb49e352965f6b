// What a configuration set would make a director read or run beyond the files lvssync manages,
// found before any validator runs: keepalived includes and ferm @includes that resolve outside the
// managed paths (the validators would read, and echo in their messages, any file there), and ferm's
// commands (backticks, `@include 'cmd|'`, @hook), which ferm runs even with --noexec. The peer's own
// lvssync.yaml decides whether ferm commands are allowed (agent.fermCommands). Pure.

import path from 'node:path';
import picomatch from 'picomatch';
import type { Config } from './config.js';
import { type Diagnostic, diag } from './diagnostic.js';
import type { Directive, IncludeRef } from './keepalived/evaluate.js';
import { RUNS_SCRIPT } from './keepalived/lint.js';

/** The managed paths of a director: its roots (directories) and its single extra files. */
export interface ManagedPaths {
  roots: readonly string[];
  extra: readonly string[];
}

/** The managed paths of lvssync.yaml: keepalived.conf's and ferm.conf's directories, files.extra. */
export function managedOf(config: Config): ManagedPaths {
  return {
    roots: [...new Set([path.posix.dirname(config.files.keepalived), path.posix.dirname(config.files.ferm)])],
    extra: [...config.files.extra],
  };
}

/** This director's own policy on a set (the primary's check, or the agent's), from its lvssync.yaml. */
export interface Boundary {
  managed: ManagedPaths;
  fermCommands: boolean;
  /** Globs of the programs keepalived may be made to run; undefined: any. */
  scripts?: readonly string[];
}

export function boundaryOf(config: Config): Boundary {
  return {
    managed: managedOf(config),
    fermCommands: config.agent.fermCommands,
    ...(config.agent.scripts ? { scripts: config.agent.scripts } : {}),
  };
}

/**
 * The programs a set makes keepalived run (vrrp_script, notify*, MISC_CHECK), against the director's
 * own list (agent.scripts): one outside it is an error at its line.
 */
export function checkScripts(directives: readonly Directive[], allowed: readonly string[]): Diagnostic[] {
  const out: Diagnostic[] = [];
  const ok = allowed.length ? picomatch([...allowed], { posix: true }) : () => false;
  const queue = [...directives];
  for (let i = 0; i < queue.length && i < 100_000; i++) {
    const d = queue[i]!;
    if (d.children) queue.push(...d.children);
    if (!RUNS_SCRIPT.has(d.name) || d.args.length === 0) continue;
    const program = d.args.join(' ').trim().split(/\s+/)[0] ?? '';
    if (ok(program)) continue;
    out.push(
      diag(
        'error',
        'KA_SCRIPT_NOT_ALLOWED',
        d.pos,
        `'${d.name}' would make keepalived run ${program}, which this director's lvssync.yaml does not allow (agent.scripts: ${allowed.join(', ') || 'none'})`,
      ),
    );
  }
  return out;
}

/** Whether a path, or every path a glob can match, stays inside the managed paths. */
export function insideManaged(p: string, managed: ManagedPaths): boolean {
  const norm = path.posix.normalize(p);
  if (!norm.startsWith('/') || norm.split('/').includes('..')) return false;
  if (managed.extra.includes(norm)) return true;
  return managed.roots.some((r) => norm.startsWith(`${r}/`));
}

/** keepalived includes that resolve outside the managed paths: errors at the include line. */
export function checkIncludes(includes: readonly IncludeRef[], managed: ManagedPaths): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const inc of includes) {
    const outside =
      !insideManaged(inc.pattern, managed) || inc.matched.some((m) => !insideManaged(m, managed));
    if (!outside) continue;
    out.push(
      diag(
        'error',
        'KA_INCLUDE_OUTSIDE',
        inc.pos,
        `include ${inc.pattern} reaches outside the paths lvssync manages (${[...managed.roots.map((r) => `${r}/`), ...managed.extra].join(', ')}): it would not be pushed, and the peer refuses to read it; move the file under a managed directory or list it in files.extra`,
      ),
    );
  }
  return out;
}

export interface FermScan {
  /** Backticks, command includes and hooks: what ferm runs. */
  commands: { line: number; col: number; what: string }[];
  /** @include targets as written (relative to the file's directory), without command includes. */
  includes: { line: number; col: number; target: string }[];
}

/**
 * The commands and includes of one ferm file, by a scan of its tokens (comments from `#` to the end
 * of the line, '…' and "…" strings, `…` backticks). Never throws.
 */
export function scanFerm(text: string): FermScan {
  const out: FermScan = { commands: [], includes: [] };
  let line = 1;
  let col = 1;
  /** The last words read, to know what a string is the argument of. */
  let prev = '';
  let i = 0;
  const n = text.length;
  const advance = (to: number) => {
    for (; i < to && i < n; i++) {
      if (text.charCodeAt(i) === 10) {
        line++;
        col = 1;
      } else col++;
    }
  };
  while (i < n) {
    const c = text[i]!;
    if (c === '#') {
      const nl = text.indexOf('\n', i);
      advance(nl === -1 ? n : nl);
      continue;
    }
    if (c === "'" || c === '"' || c === '`') {
      const end = text.indexOf(c, i + 1);
      const stop = end === -1 ? n : end + 1;
      const at = { line, col };
      const body = text.slice(i + 1, end === -1 ? n : end);
      if (c === '`') out.commands.push({ ...at, what: `\`${body.slice(0, 60)}\`` });
      else if (prev === '@include') {
        if (/\|\s*$/.test(body)) out.commands.push({ ...at, what: `@include '${body.slice(0, 60)}'` });
        else out.includes.push({ ...at, target: body });
      }
      prev = '';
      advance(stop);
      continue;
    }
    if (/\s/.test(c) || c === ';' || c === '{' || c === '}' || c === '(' || c === ')') {
      if (c === ';' || c === '{' || c === '}') prev = '';
      advance(i + 1);
      continue;
    }
    // a bare word
    let j = i;
    while (j < n && !/[\s;{}()'"`#]/.test(text[j]!)) j++;
    const word = text.slice(i, j);
    const at = { line, col };
    if (word === '@hook') out.commands.push({ ...at, what: '@hook' });
    else if (prev === '@include') out.includes.push({ ...at, target: word });
    prev = word;
    advance(j);
  }
  return out;
}

/**
 * The findings of a director's policy on its ferm files: commands refused unless allowed, includes
 * outside the managed paths always refused. `files` are the ferm files of the set (path, text).
 */
export function checkFermFiles(
  files: readonly { path: string; text: string }[],
  managed: ManagedPaths,
  allowCommands: boolean,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const f of files) {
    const scan = scanFerm(f.text);
    if (!allowCommands) {
      for (const c of scan.commands) {
        out.push(
          diag(
            'error',
            'FERM_COMMAND_REFUSED',
            { file: f.path, line: c.line, col: c.col },
            `${c.what} runs a command as root, even under ferm --noexec: this director's lvssync.yaml does not allow that (agent.fermCommands: true allows it, and makes the primary's key able to run any command here)`,
          ),
        );
      }
    }
    for (const inc of scan.includes) {
      if (inc.target.includes('$') || inc.target.startsWith('@')) {
        out.push(
          diag(
            'error',
            'FERM_INCLUDE_OUTSIDE',
            { file: f.path, line: inc.line, col: inc.col },
            `@include ${inc.target}: a path made of variables or functions, which lvssync cannot place inside the managed paths; write the path itself`,
          ),
        );
        continue;
      }
      const target = path.posix.resolve(path.posix.dirname(f.path), inc.target);
      if (insideManaged(target, managed)) continue;
      out.push(
        diag(
          'error',
          'FERM_INCLUDE_OUTSIDE',
          { file: f.path, line: inc.line, col: inc.col },
          `@include ${inc.target} reaches outside the paths lvssync manages: it would not be pushed, and the peer refuses to read it`,
        ),
      );
    }
  }
  return out;
}
