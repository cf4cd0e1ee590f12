/**
 * The REST calls `parley demo qos` makes (docs/http-api.md): classes, room classes, the room list
 * with counters, the configuration. Each failure is a DemoError with one line.
 */
import type { QosClass, QosCounts } from '@parley/contracts';
import { restCall, type RestAnswer } from '../rest.js';

export class DemoError extends Error {}

/** A room as `GET /api/rooms` lists it. */
export interface RoomView {
  room: string;
  shard: number | null;
  class: string;
  override: string | null;
  rate: number | null;
  burst: number | null;
  counts: QosCounts;
}

export class DemoApi {
  constructor(private readonly base: string, private readonly token: string) {}

  /**
   * One request; a read (GET) that gets no answer or a 5xx is tried again (4 more times, 1 s
   * apart): an instance busy with a thousand shards may miss its readiness check for a moment and
   * the front door then answers 503.
   */
  private async call(method: string, route: string, body?: unknown): Promise<RestAnswer> {
    try {
      return await restCall(this.base, this.token, method, route, body, {
        attempts: method === 'GET' ? 5 : 1,
        pauseMs: () => 1_000,
        timeoutMs: 30_000,
        retryStatus: (status) => status >= 500,
      });
    } catch (err) {
      throw new DemoError(`the REST API at ${this.base} does not answer ${method} ${route} (${(err as Error).message})`);
    }
  }

  private check(what: string, r: { status: number; json: unknown }, ok: number[]): unknown {
    if (ok.includes(r.status)) return r.json;
    const msg = (r.json as { error?: unknown } | null)?.error;
    throw new DemoError(`${what}: HTTP ${r.status}${typeof msg === 'string' ? `: ${msg}` : ''}`);
  }

  async putClass(name: string, cls: QosClass): Promise<void> {
    this.check(`PUT /api/qos/classes/${name}`, await this.call('PUT', `/api/qos/classes/${encodeURIComponent(name)}`, cls), [200, 201]);
  }

  async deleteClass(name: string): Promise<void> {
    this.check(`DELETE /api/qos/classes/${name}`, await this.call('DELETE', `/api/qos/classes/${encodeURIComponent(name)}`), [204, 404]);
  }

  async setRoomClass(room: string, cls: string): Promise<void> {
    this.check(`PUT /api/rooms/${room}/qos`, await this.call('PUT', `/api/rooms/${encodeURIComponent(room)}/qos`, { class: cls }), [200, 201]);
  }

  /** flood.linesPerSecond of the cluster configuration (0 = no flood limit). */
  async floodLimit(): Promise<number> {
    const j = this.check('GET /api/config', await this.call('GET', '/api/config'), [200]) as { flood?: { linesPerSecond?: unknown } };
    const v = j.flood?.linesPerSecond;
    return typeof v === 'number' ? v : 20;
  }

  /** Every room whose name contains `q`, all pages. */
  async rooms(q: string): Promise<RoomView[]> {
    const out: RoomView[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10_000; page++) {
      const qs = new URLSearchParams({ q, limit: '1000', ...(cursor !== null ? { cursor } : {}) });
      const j = this.check('GET /api/rooms', await this.call('GET', `/api/rooms?${qs}`), [200]) as { rooms: RoomView[]; nextCursor?: string | null };
      out.push(...j.rooms);
      cursor = j.nextCursor ?? null;
      if (cursor === null || j.rooms.length === 0) break;
    }
    return out;
  }
}
