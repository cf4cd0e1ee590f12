import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { Resvg } from '@resvg/resvg-js';
import { die } from '../util.js';
import { ResultFileError, readResultFile } from './report-schema.js';
import { buildReport, labelRuns } from './report-html.js';

/** PNG width in pixels; the SVGs are drawn 960 wide and scaled to this. */
export const PNG_WIDTH = 1200;

export interface ReportOptions {
  out: string;
  title?: string;
}

/** Why the report could not be written, in one line. */
export class ReportError extends Error {
  override name = 'ReportError';
}

export function renderPng(svg: string): Buffer {
  return new Resvg(svg, { fitTo: { mode: 'width', value: PNG_WIDTH }, font: { loadSystemFonts: true } }).render().asPng();
}

/**
 * Reads every result file (all are validated before anything is written), then writes
 * `index.html` and one PNG per chart into `o.out`. Returns the paths written, page first.
 * Throws ResultFileError for a bad input file and ReportError for an output it cannot write.
 */
export function writeReport(files: readonly string[], o: ReportOptions): string[] {
  if (!files.length) throw new ReportError('no result files given');
  const runs = labelRuns(files.map((file) => ({ file, result: readResultFile(file) })));
  const report = buildReport(runs, o.title === undefined ? {} : { title: o.title });
  const written: string[] = [];
  const write = (name: string, data: string | Buffer): void => {
    const p = path.join(o.out, name);
    try {
      fs.writeFileSync(p, data);
    } catch (e) {
      throw new ReportError(`${p}: cannot write: ${(e as Error).message}`);
    }
    written.push(p);
  };
  try {
    fs.mkdirSync(o.out, { recursive: true });
  } catch (e) {
    throw new ReportError(`${o.out}: cannot create the output directory: ${(e as Error).message}`);
  }
  write('index.html', report.html);
  for (const c of report.charts) write(c.png, renderPng(c.svg));
  return written;
}

/** `parley report RESULT.json... [--out DIR] [--title T]`. */
export function registerReport(program: Command): void {
  program
    .command('report')
    .description('write an HTML report with charts (and PNGs of them) from `parley load` result files; several files are compared')
    .argument('<results...>', 'result files written by `parley load` (the first is the baseline)')
    .option('--out <dir>', 'directory for index.html and the PNG charts', 'report')
    .option('--title <text>', 'title of the report (default: from the run names)')
    .action((files: string[], o: { out: string; title?: string }) => {
      let written: string[];
      try {
        written = writeReport(files, o);
      } catch (err) {
        if (err instanceof ResultFileError || err instanceof ReportError) die(err.message);
        throw err;
      }
      const [page, ...pngs] = written;
      process.stdout.write(`report: ${page}\n`);
      if (pngs.length) process.stdout.write(`charts: ${pngs.join(' ')}\n`);
    });
}
