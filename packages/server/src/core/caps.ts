import { SUPPORTED_CAPS, type SupportedCap } from '@parley/protocol';

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
