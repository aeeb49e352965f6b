#!/usr/bin/env node
// Entry point: the only place that sets the process exit status.
import { runMain } from './cli.js';
import { processIo } from './io.js';

process.exitCode = await runMain(process.argv.slice(2), processIo);
