import { InvalidArgumentError } from 'commander';

/** Prints one line and exits non-zero: the CLI's only way to fail. */
export function die(message: string): never {
  process.stderr.write(`parley: ${message}\n`);
  process.exit(1);
}

export function intArg(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
    return n;
  };
}

export const list = (v: string, prev: string[] = []): string[] => [...prev, ...v.split(',').filter(Boolean)];
