/**
 * The HPACK/QPACK static Huffman code (RFC 7541 §5.2, Appendix B): encoder
 * and strict decoder. Used by QPACK string literals (RFC 9204 §4.1.2).
 */

/**
 * Code length in bits of each symbol 0..255 and EOS (256), RFC 7541 Appendix B.
 * The code is canonical (codes ascend with (length, symbol)), so the codes
 * themselves are derived from these lengths at load time and checked
 * against the RFC's hex column in the tests.
 */
const CODE_LENGTHS = Uint8Array.from([
  // 0..31
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  // 32..63  ' ' ! " # $ % & ' ( ) * + , - . / 0-9 : ; < = > ?
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  // 64..95  @ A-Z [ \ ] ^ _
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  // 96..127 ` a-z { | } ~ DEL
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  // 128..255
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  // EOS
  30,
]);

/** Symbol count including EOS. */
const NSYM = 257;
/** EOS symbol (RFC 7541 §5.2). */
const EOS = 256;
const MAX_LEN = 30;

/** codes[sym]: the code, right-aligned (LSB), as in the RFC's hex column. */
export const HUFFMAN_CODES = new Uint32Array(NSYM);
/** Code length of each symbol. */
export const HUFFMAN_LENGTHS: Readonly<Uint8Array> = CODE_LENGTHS;

// Canonical decoding tables: per length, the first code, its count and the
// index of its first symbol in SORTED.
const FIRST_CODE = new Float64Array(MAX_LEN + 2);
const COUNT = new Uint16Array(MAX_LEN + 2);
const FIRST_INDEX = new Uint16Array(MAX_LEN + 2);
const SORTED = new Uint16Array(NSYM);

(function build() {
  if (CODE_LENGTHS.length !== NSYM) throw new Error('h3: Huffman length table has wrong size');
  for (let s = 0; s < NSYM; s++) COUNT[CODE_LENGTHS[s]!]!++;
  let code = 0;
  let idx = 0;
  for (let len = 1; len <= MAX_LEN; len++) {
    FIRST_CODE[len] = code;
    FIRST_INDEX[len] = idx;
    for (let s = 0; s < NSYM; s++) {
      if (CODE_LENGTHS[s] === len) {
        HUFFMAN_CODES[s] = code;
        SORTED[idx++] = s;
        code++;
      }
    }
    code *= 2;
  }
})();

/** Bytes needed to Huffman-encode src[off, end) (RFC 7541 §5.2: padded to a whole byte). */
export function huffmanEncodedLength(src: Uint8Array, off: number = 0, end: number = src.length): number {
  let bits = 0;
  for (let i = off; i < end; i++) bits += CODE_LENGTHS[src[i]!]!;
  return (bits + 7) >>> 3;
}

/**
 * Huffman-encode src[off, end) into out at outOff, padding the last byte
 * with the most significant bits of EOS (all ones). Returns the offset past
 * the last byte written. The caller sizes out with {@link huffmanEncodedLength}.
 */
export function huffmanEncode(src: Uint8Array, off: number, end: number, out: Uint8Array, outOff: number): number {
  let acc = 0; // pending bits, right-aligned; at most 7 + 30 bits, kept below 2^53
  let nbits = 0;
  let o = outOff;
  for (let i = off; i < end; i++) {
    const sym = src[i]!;
    const len = CODE_LENGTHS[sym]!;
    acc = acc * (1 << len) + HUFFMAN_CODES[sym]!;
    nbits += len;
    while (nbits >= 8) {
      nbits -= 8;
      const div = 2 ** nbits;
      const byte = Math.floor(acc / div);
      out[o++] = byte;
      acc -= byte * div;
    }
  }
  if (nbits > 0) {
    // RFC 7541 §5.2: pad with the high-order bits of EOS (ones).
    out[o++] = (acc << (8 - nbits)) | (0xff >> nbits);
  }
  return o;
}

/** Decoding failed: EOS in the data, padding longer than 7 bits or not all ones (RFC 7541 §5.2). */
export const HUFFMAN_INVALID = -1;

/**
 * Decode a Huffman string src[off, end) into out at outOff. Returns the
 * offset past the decoded bytes, {@link HUFFMAN_INVALID} for invalid input,
 * or -2 when out is too small. Never throws.
 */
export function huffmanDecode(src: Uint8Array, off: number, end: number, out: Uint8Array, outOff: number): number {
  let o = outOff;
  let code = 0;
  let len = 0;
  for (let i = off; i < end; i++) {
    const byte = src[i]!;
    for (let b = 7; b >= 0; b--) {
      code = code * 2 + ((byte >> b) & 1);
      len++;
      const rel = code - FIRST_CODE[len]!;
      if (rel < COUNT[len]!) {
        const sym = SORTED[FIRST_INDEX[len]! + rel]!;
        if (sym === EOS) return HUFFMAN_INVALID; // RFC 7541 §5.2: EOS in the string is an error
        if (o >= out.length) return -2;
        out[o++] = sym;
        code = 0;
        len = 0;
      } else if (len >= MAX_LEN) {
        return HUFFMAN_INVALID;
      }
    }
  }
  // RFC 7541 §5.2: padding is at most 7 bits and all ones (an EOS prefix).
  if (len > 7) return HUFFMAN_INVALID;
  if (code !== (1 << len) - 1) return HUFFMAN_INVALID;
  return o;
}
