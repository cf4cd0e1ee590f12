import type { Command } from 'commander';

/** `load` and `report` (issue: load tool, benchmark scenarios and reports). */
export function register(_program: Command): void {}
