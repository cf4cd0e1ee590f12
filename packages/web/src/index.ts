import { ensureWebBuilt } from './build.js';

export { DIST, buildWeb, bundleWeb, compressed, ensureWebBuilt, sizeReport, type WebBuild } from './build.js';

/**
 * Directory of the browser client, the dashboard and the configuration page (index.html, app.js,
 * dashboard.html, dashboard.js, config.html, config.js, the style sheets), served by each
 * instance at `/`. Built from `app/` and `public/` the first time this module is imported after
 * a change (see build.ts).
 */
export const WEB_ROOT: string = ensureWebBuilt().dir;
