import { formatStsValue, STS_CAP, SUPPORTED_CAPS, type StsPolicy, type SupportedCap } from '@parley/protocol';
import type { Session } from './session.js';

/** Capabilities a session negotiated, as bits so the hot path tests them cheaply. */
export const Cap = {
  MessageTags: 1,
  ServerTime: 2,
  EchoMessage: 4,
  Batch: 8,
  LabeledResponse: 16,
  ChatHistory: 32,
  Sasl: 64,
  AccountRegistration: 128,
  AccountTag: 256,
  AccountNotify: 512,
  // channel and user surface (bits well above the accounts' so both can grow)
  MultiPrefix: 1 << 16,
  UserhostInNames: 1 << 17,
  InviteNotify: 1 << 18,
  AwayNotify: 1 << 19,
  Setname: 1 << 20,
  ExtendedJoin: 1 << 21,
  /** hosts never change while connected (cloaks are fixed), so no CHGHOST is ever sent */
  Chghost: 1 << 22,
} as const;

const BIT_OF: Record<SupportedCap, number> = {
  'message-tags': Cap.MessageTags,
  'server-time': Cap.ServerTime,
  'echo-message': Cap.EchoMessage,
  batch: Cap.Batch,
  'labeled-response': Cap.LabeledResponse,
  'draft/chathistory': Cap.ChatHistory,
  sasl: Cap.Sasl,
  'draft/account-registration': Cap.AccountRegistration,
  'account-tag': Cap.AccountTag,
  'account-notify': Cap.AccountNotify,
  'multi-prefix': Cap.MultiPrefix,
  'userhost-in-names': Cap.UserhostInNames,
  'invite-notify': Cap.InviteNotify,
  'away-notify': Cap.AwayNotify,
  setname: Cap.Setname,
  'extended-join': Cap.ExtendedJoin,
  chghost: Cap.Chghost,
};

/** Every capability of the protocol package's list, with its bit (the Record keeps them in step). */
export const CAP_BITS: ReadonlyMap<string, number> = new Map(SUPPORTED_CAPS.map((c) => [c, BIT_OF[c]]));

/** `CAP LS` answer; labeled-response and chathistory only make sense with batch, like other servers. */
export const CAP_LS = [...CAP_BITS.keys()].join(' ');

/**
 * Values shown to clients that sent `CAP LS 302`: the SASL mechanisms, and that REGISTER works
 * before connecting, with any valid account name, and without e-mail (accounts are verified at
 * once: no `email-required`).
 */
const CAP_VALUES: ReadonlyMap<string, string> = new Map([
  ['sasl', 'PLAIN,SCRAM-SHA-256'],
  ['draft/account-registration', 'before-connect,custom-account-name'],
]);

/** `CAP LS 302` answer: the list with values. */
export const CAP_LS_302 = [...CAP_BITS.keys()].map((c) => (CAP_VALUES.has(c) ? `${c}=${CAP_VALUES.get(c) ?? ''}` : c)).join(' ');

/**
 * The `sts` value this session is shown under `policy` (the node's, null when it serves no IRC
 * over TLS), or null: only on IRC over TCP (a WebSocket client has no port to move to; browsers
 * have HSTS), with the port on plain connections, without it on TLS.
 */
export function stsValueFor(policy: StsPolicy | null, s: Session): string | null {
  if (policy === null || s.transport.kind !== 'tcp') return null;
  return formatStsValue(policy, s.transport.secure === true);
}

/** `CAP LS 302` answer with `sts` (its value) when there is one. */
export function capLs302(sts: string | null): string {
  return sts === null ? CAP_LS_302 : `${CAP_LS_302} ${STS_CAP}=${sts}`;
}
