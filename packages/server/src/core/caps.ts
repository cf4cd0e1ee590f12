import { SUPPORTED_CAPS, type SupportedCap } from '@parley/protocol';

/** Capabilities a session negotiated, as bits so the hot path tests them cheaply. */
export const Cap = {
  MessageTags: 1,
  ServerTime: 2,
  EchoMessage: 4,
  Batch: 8,
  LabeledResponse: 16,
  ChatHistory: 32,
} as const;

const BIT_OF: Record<SupportedCap, number> = {
  'message-tags': Cap.MessageTags,
  'server-time': Cap.ServerTime,
  'echo-message': Cap.EchoMessage,
  batch: Cap.Batch,
  'labeled-response': Cap.LabeledResponse,
  'draft/chathistory': Cap.ChatHistory,
};

/** Every capability of the protocol package's list, with its bit (the Record keeps them in step). */
export const CAP_BITS: ReadonlyMap<string, number> = new Map(SUPPORTED_CAPS.map((c) => [c, BIT_OF[c]]));

/** `CAP LS` answer; labeled-response and chathistory only make sense with batch, like other servers. */
export const CAP_LS = [...CAP_BITS.keys()].join(' ');
