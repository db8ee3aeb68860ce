// Incremental detokenization: turns generated ids into text pieces as they arrive.
//
// Byte-level BPE can split one UTF-8 character across tokens, and SentencePiece decoders change a
// token's text depending on what precedes it, so a token cannot be decoded on its own. We decode a
// short window (the tokens since the last clean boundary, plus one token of context), emit what
// is new, and hold back a trailing U+FFFD (an incomplete character) until the next token or flush.

export interface StreamDecoder {
  /** Adds one token; returns the text it completes ('' when it only starts a character). */
  push(id: number): string;
  /** Returns any held-back text (at the end of a generation). */
  flush(): string;
}

const REPLACEMENT = '\uFFFD';

export function createStreamDecoder(decode: (ids: number[]) => string): StreamDecoder {
  const ids: number[] = [];
  let start = 0; // window start in ids
  let emitted = 0; // chars of decode(ids[start:]) already returned
  return {
    push(id: number): string {
      ids.push(id);
      const text = decode(ids.slice(start));
      let stable = text.length;
      while (stable > 0 && text[stable - 1] === REPLACEMENT) stable--;
      const out = stable > emitted ? text.slice(emitted, stable) : '';
      emitted = Math.max(emitted, stable);
      if (stable === text.length && ids.length - start > 1) {
        // Everything is out: restart the window at the last token when it decodes cleanly alone.
        const ctx = decode(ids.slice(ids.length - 1));
        if (!ctx.includes(REPLACEMENT)) {
          start = ids.length - 1;
          emitted = ctx.length;
        }
      }
      return out;
    },
    flush(): string {
      const text = decode(ids.slice(start));
      const out = text.length > emitted ? text.slice(emitted) : '';
      emitted = Math.max(emitted, text.length);
      return out;
    },
  };
}
