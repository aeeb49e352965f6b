// When `ferm --noexec --lines` of a ferm.conf can be taken from an earlier run: ferm's output is a
// function of the files it reads, unless they ask the host for something (backticks run a command,
// @resolve asks DNS, an @include of a command or of a file outside ferm's directory reads what the key
// does not cover). This module says which sets are such a function and what identifies them. Pure.

import { createHash } from 'node:crypto';

/** Why a set's expansion cannot be reused, or undefined when it can. */
export function fermUncacheable(files: ReadonlyMap<string, string>, fermDir: string): string | undefined {
  for (const [file, text] of files) {
    // A comment can hold anything; only the code matters. ferm's comments start at '#' outside quotes.
    const code = text
      .split('\n')
      .map((l) => stripComment(l))
      .join('\n');
    if (code.includes('`')) return `${file} runs a command (backticks)`;
    if (/@resolve\b/.test(code)) return `${file} resolves host names (@resolve)`;
    if (/@ipfilter\b/.test(code)) return `${file} uses @ipfilter`;
    for (const m of code.matchAll(/@include\s+(?:@glob\(\s*)?(['"])([^'"]*)\1/g)) {
      const target = m[2]!;
      if (target.trimEnd().endsWith('|')) return `${file} includes a command's output (${target})`;
      const outside = target.startsWith('/')
        ? !(target === fermDir || target.startsWith(`${fermDir}/`))
        : target.split('/').includes('..');
      if (outside || target.includes('..')) return `${file} includes ${target}, outside ${fermDir}`;
    }
    // An include whose name is built from a variable or function cannot be followed here.
    if (/@include\s+[^'"\s@]/.test(code) || /@include\s+@(?!glob\b)/.test(code))
      return `${file} includes a computed path`;
  }
  return undefined;
}

function stripComment(line: string): string {
  let quote = 0;
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (quote !== 0) {
      if (c === quote) quote = 0;
    } else if (c === 34 || c === 39) quote = c;
    else if (c === 35) return line.slice(0, i);
  }
  return line;
}

/** What identifies one expansion: every file's path and text, and the ferm that expands them. */
export function fermExpansionKey(files: ReadonlyMap<string, string>, ferm: string): string {
  const h = createHash('sha256');
  h.update(`${ferm}\0`);
  for (const p of [...files.keys()].sort()) h.update(`${p}\0${files.get(p)}\0`);
  return h.digest('hex');
}
