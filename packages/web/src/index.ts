import { ensureWebBuilt } from './build.js';

export { DIST, buildWeb, bundleWeb, ensureWebBuilt, sizeReport, type WebBuild } from './build.js';

/**
 * Directory of the browser client and dashboard (index.html, app.js, dashboard.html,
 * dashboard.js, style.css), served by each instance at `/`. Built from `app/` and `public/` the
 * first time this module is imported after a change (see build.ts).
 */
export const WEB_ROOT: string = ensureWebBuilt().dir;
