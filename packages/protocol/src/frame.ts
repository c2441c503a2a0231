/** yamux frame types, flags and go-away codes (hashicorp/yamux spec.md). */

export const PROTOCOL_VERSION = 0;
export const HEADER_LENGTH = 12;

export const FrameType = {
  Data: 0,
  WindowUpdate: 1,
  Ping: 2,
  GoAway: 3,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const Flag = {
  SYN: 1,
  ACK: 2,
  FIN: 4,
  RST: 8,
} as const;
export type Flag = (typeof Flag)[keyof typeof Flag];
export const ALL_FLAGS = Flag.SYN | Flag.ACK | Flag.FIN | Flag.RST;

export const GoAwayCode = {
  Normal: 0,
  ProtocolError: 1,
  InternalError: 2,
} as const;
export type GoAwayCode = (typeof GoAwayCode)[keyof typeof GoAwayCode];

/** Every yamux frame starts with this header. For Data frames `length` is the payload size;
 * for WindowUpdate it is the window delta, for Ping the opaque value, for GoAway the code. */
export interface FrameHeader {
  version: number;
  type: FrameType;
  flags: number;
  streamId: number;
  length: number;
}

export interface Frame {
  header: FrameHeader;
  /** Payload of a Data frame; absent for every other type. */
  data?: Buffer;
  /**
   * Only from a Decoder in piece mode: this is part of a Data frame's payload and more of it
   * follows (`more`), and/or an earlier part of it came before (`cont`). A whole frame has neither.
   */
  more?: true;
  cont?: true;
}

export const MAX_UINT32 = 0xffff_ffff;
