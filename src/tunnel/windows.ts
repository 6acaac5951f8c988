/**
 * HTTP/2 flow-control and framing defaults shared by the HBONE client and server, chosen by
 * measurement (bench/tunnel.ts): windows large enough that one stream fills a fast link without
 * waiting for WINDOW_UPDATEs (4 MiB per stream, 16 MiB per connection; figures in bench/README.md).
 */

/** SETTINGS_INITIAL_WINDOW_SIZE: per-stream receive window. */
export const DEFAULT_STREAM_WINDOW_BYTES = 4 * 1024 * 1024;
/** Connection-level receive window (set with setLocalWindowSize after the handshake). */
export const DEFAULT_SESSION_WINDOW_BYTES = 16 * 1024 * 1024;
/**
 * SETTINGS_MAX_FRAME_SIZE we accept. Left at the protocol default: Node's nghttp2 binding sends
 * 16 KiB DATA frames whatever the peer allows (measured), so advertising more gains nothing.
 */
export const DEFAULT_MAX_FRAME_SIZE = 16 * 1024;
