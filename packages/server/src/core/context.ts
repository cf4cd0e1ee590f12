import type { IrcMessage, StsPolicy } from '@parley/protocol';
import type { Logger } from 'pino';
import type { AccountService } from '../accounts/service.js';
import type { ClusterConfig } from '../config.js';
import type { ClusterState } from '../cluster/state.js';
import type { Metrics } from '../metrics.js';
import type { MessageStore } from '../store/store.js';
import type { Messaging } from './messaging.js';
import type { FailSpec, NumericSpec } from './replies.js';
import type { Responder } from './reply.js';
import type { NodeStats, Rooms } from './rooms.js';
import type { Session } from './session.js';
import type { Users } from './users.js';

/** What a command handler may use: a narrow view of the instance, never the node itself. */
export interface CommandContext {
  readonly serverName: string;
  readonly startedAt: number;
  /** the cluster configuration in force now (it changes live) */
  readonly config: ClusterConfig;
  readonly state: ClusterState;
  readonly history: Pick<MessageStore, 'latest' | 'before' | 'after' | 'around' | 'between' | 'targets'>;
  readonly users: Users;
  readonly rooms: Rooms;
  readonly messages: Messaging;
  /** account registration and password checks */
  readonly accounts: AccountService;
  readonly metrics: Metrics;
  readonly stats: NodeStats;
  /** the STS policy advertised (`sts` cap), null when this instance serves no IRC over TLS */
  readonly sts: StsPolicy | null;
  readonly log: Logger;
  /** sends a catalogued numeric to `s` through `r` */
  num(s: Session, r: Responder, spec: NumericSpec, ...params: string[]): void;
  /** sends a standard reply `FAIL <command> <code> <context...> :<text>` through `r` */
  fail(r: Responder, command: string, spec: FailSpec, context: string[], text?: string): void;
  /** closes a connection from the server side with an ERROR line */
  drop(s: Session, reason: string, metricReason: string): void;
  /** a client said QUIT: the connection closes and the user leaves the cluster */
  quit(s: Session, reason: string): void;
}

export type Handler = (ctx: CommandContext, s: Session, msg: IrcMessage, r: Responder) => void | Promise<void>;

/**
 * One row of the command table. The dispatcher checks everything declared here before the
 * handler runs, so handlers hold only the command's own logic.
 */
export interface CommandSpec {
  readonly handler: Handler;
  /** parameters required (the last of them non-empty), else 461 */
  readonly minParams: number;
  /** allowed before registration completes */
  readonly preRegistration: boolean;
  /**
   * false: the connection's next lines do not wait for this command (PRIVMSG, NOTICE,
   * CHATHISTORY, which wait for the store). The handler must answer its own failures (it must
   * not reject). true: the connection's next lines run after it.
   */
  readonly blocking: boolean;
  /** waits until the connection's non-blocking commands sent before it are done (QUIT, PING) */
  readonly barrier?: boolean;
  /** flood-control tokens this line costs beyond the first (CHATHISTORY: by rows asked) */
  readonly extraCost?: (msg: IrcMessage) => number;
}

export type CommandTable = ReadonlyMap<string, CommandSpec>;
