import type { Command } from 'commander';
import { registerReport } from './report.js';

/** `load` and `report` (issue: load tool, benchmark scenarios and reports). */
export function register(program: Command): void {
  // The load engineer registers `load` here.
  registerReport(program);
}
