/**
 * The size of every MQTT packet a broker sends, read from its fixed header (one type byte, then the remaining
 * length in 1-4 bytes of 7 bits) before its body arrives: a packet larger than the limit ends the connection
 * while only its first bytes are buffered, so a 100 MB message never becomes a 100 MB allocation on the box.
 * MQTT 5 brokers are told the limit in CONNECT (Maximum Packet Size) and drop such a message for this client
 * instead; a 3.1.1 broker has no way to be told, and this is what refuses it.
 */
import type { Duplex } from 'node:stream';

/** Follows the packet boundaries of a byte stream by their fixed headers. */
export interface PacketSizeWatch {
  /** The next bytes of the stream; returns the total size of the first packet announcing more than the limit, or null. */
  feed(chunk: Uint8Array): number | null;
}

/** The fixed-header reader: state carried across chunks. */
export function packetSizeWatch(maxBytes: number): PacketSizeWatch {
  /** Body bytes of the current packet still to skip. */
  let skip = 0;
  /** 0: a type byte comes next; 1..4: length byte n comes next. */
  let lengthByte = 0;
  let length = 0;
  let multiplier = 1;
  let headerBytes = 0;
  return {
    feed(chunk) {
      let i = 0;
      while (i < chunk.length) {
        if (skip > 0) {
          const n = Math.min(skip, chunk.length - i);
          skip -= n;
          i += n;
          continue;
        }
        const b = chunk[i++]!;
        if (lengthByte === 0) {
          lengthByte = 1;
          length = 0;
          multiplier = 1;
          headerBytes = 1;
          continue;
        }
        length += (b & 0x7f) * multiplier;
        multiplier *= 128;
        headerBytes++;
        if (b & 0x80 && lengthByte < 4) {
          lengthByte++;
          continue;
        }
        // A fifth length byte is malformed: mqtt-packet refuses it; count it as too large here, it is no packet.
        if (b & 0x80) return Number.POSITIVE_INFINITY;
        lengthByte = 0;
        const total = headerBytes + length;
        if (total > maxBytes) return total;
        skip = length;
      }
      return null;
    },
  };
}

/**
 * Watches what `stream` delivers (a listener beside the client's own): the first packet announcing more than
 * `maxBytes` is reported to `refused` with an error naming both sizes, and the stream is destroyed. Returns it.
 */
export function limitPacketSize<S extends Duplex>(
  stream: S,
  maxBytes: number,
  field: string,
  refused: (err: Error) => void,
): S {
  const watch = packetSizeWatch(maxBytes);
  const onData = (chunk: Buffer) => {
    const size = watch.feed(chunk);
    if (size === null) return;
    stream.off('data', onData);
    stream.destroy();
    refused(
      new Error(
        `${field}: expected MQTT packets of at most ${maxBytes} bytes, got one of ${Number.isFinite(size) ? size : 'a malformed length'} bytes from the broker: connection closed before its body was read`,
      ),
    );
  };
  stream.on('data', onData);
  return stream;
}
