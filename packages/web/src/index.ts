import { fileURLToPath } from 'node:url';

/** Directory of the static browser client and dashboard, served by each instance at `/`. */
export const WEB_ROOT = fileURLToPath(new URL('../public/', import.meta.url));
