#!/usr/bin/node
// /usr/bin/lvssync of the Debian package: runs the bundled program (program.cjs beside this file)
// with a V8 code cache, so that a command does not compile its code again at every start (Node 18
// and 20 keep no compile cache of their own). Each command's cache is written by its first run
// after an install or a nodejs upgrade, to /var/cache/lvssync (LVSSYNC_CODE_CACHE: another
// directory, or "off"); V8 rejects a cache made for another program or another V8, and it is then
// made anew.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const Module = require('node:module');

const file = path.join(__dirname, 'program.cjs');
// the build makes it pure ASCII (esbuild escapes the rest), so latin1 reads it fastest
const source = fs.readFileSync(file, 'latin1');
const dir = process.env.LVSSYNC_CODE_CACHE || '/var/cache/lvssync';
// one cache per command: each holds the code its command runs, made by that command's first run
const command = /^[a-z][a-z-]{0,19}$/.test(process.argv[2] ?? '') ? process.argv[2] : 'other';
const cacheFile =
  dir === 'off' ? undefined : path.join(dir, `${command}-${process.version}-${process.arch}.v8`);

let cachedData;
if (cacheFile) {
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {}
}
const script = new vm.Script(Module.wrap(source), { filename: file, cachedData });
if (cacheFile && (cachedData === undefined || script.cachedDataRejected)) {
  // at exit, the cache holds what this run compiled: the command's code, not only the top level
  process.once('exit', () => {
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    try {
      fs.writeFileSync(tmp, script.createCachedData(), { mode: 0o644 });
      fs.renameSync(tmp, cacheFile);
    } catch {
      try {
        fs.unlinkSync(tmp);
      } catch {}
    }
  });
}
const mod = { exports: {}, filename: file, id: file, loaded: false, children: [], paths: [] };
script.runInThisContext()(mod.exports, Module.createRequire(file), mod, file, __dirname);
