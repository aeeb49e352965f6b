#!/usr/bin/env node
// Entry point: the only place that sets the process exit status.
import { runMain } from './cli.js';
import { processIo } from './io.js';

// no top-level await: the Debian package bundles this file as CommonJS (see scripts/package)
void runMain(process.argv.slice(2), processIo).then((code) => {
  process.exitCode = code;
});
