// lvssync's version, in a module of its own: what the command line prints and what kept state
// (the validators' verdicts) is marked with.

/** Set by the package build (esbuild's define); else the source tree's, equal to package.json's. */
declare const LVSSYNC_VERSION: string | undefined;
export const VERSION = typeof LVSSYNC_VERSION === 'string' ? LVSSYNC_VERSION : '0.1.0';
