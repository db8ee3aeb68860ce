// The safetensors reader: round trips through the fixture writer, and every malformed file is an
// E_SAFETENSORS / E_DTYPE naming the file and the tensor or field at fault.
import { truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openSafetensors } from '../ts/loader/safetensors.js';
import { expectCasspecError } from './fixtures/expect-error.js';
import { toBf16Bits, toF16Bits, writeRawSafetensors, writeSafetensors } from './fixtures/safetensors-writer.js';
import { useTempDir } from './fixtures/temp-dir.js';

const tmp = useTempDir('casspec-safetensors-');
let n = 0;
const fresh = (name = 'x') => join(tmp(), `${name}-${n++}.safetensors`);

/** A file with one F32 tensor 'a' of shape [2, 3] at data_offsets [0, 24]. */
const goodHeader = () => ({ a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] } });

describe('openSafetensors on valid files', () => {
  it('reads back each tensor in each dtype, only its own bytes', async () => {
    const path = fresh();
    const data = Float32Array.from([1, -2, 0.5, 3.25, 65504, -0.0078125]);
    await writeSafetensors(
      path,
      [
        { name: 'f32', dtype: 'F32', shape: [2, 3], data },
        { name: 'f16', dtype: 'F16', shape: [6], data },
        { name: 'bf16', dtype: 'BF16', shape: [3, 2], data },
        { name: 'empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
      ],
      { format: 'pt' },
    );
    const f = await openSafetensors(path);
    try {
      expect([...f.tensors.keys()].sort()).toEqual(['bf16', 'empty', 'f16', 'f32']);
      expect(f.metadata).toEqual({ format: 'pt' });
      expect(f.tensors.get('f16')).toMatchObject({ dtype: 'F16', shape: [6], begin: 24, end: 36 });
      expect(new Float32Array((await f.read('f32')).slice().buffer)).toEqual(data);
      const f16 = new Uint16Array((await f.read('f16')).slice().buffer);
      expect([...f16]).toEqual([...data].map(toF16Bits));
      const bf16 = new Uint16Array((await f.read('bf16')).slice().buffer);
      expect([...bf16]).toEqual([...data].map(toBf16Bits));
      expect((await f.read('empty')).length).toBe(0);
      await expectCasspecError(f.read('nope'), 'E_MISSING_TENSOR', 'nope', path);
    } finally {
      await f.close();
      await f.close(); // idempotent
    }
  });

  it('converts to half precision with round-to-nearest-even', () => {
    expect(toF16Bits(1)).toBe(0x3c00);
    expect(toF16Bits(65504)).toBe(0x7bff);
    expect(toF16Bits(65520)).toBe(0x7c00); // rounds up to inf
    expect(toF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(toF16Bits(2 ** -25)).toBe(0x0000); // tie -> even (zero)
    expect(toF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even
    expect(toF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(toBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie -> even
    expect(toBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(toBf16Bits(NaN) & 0x7fc0).toBe(0x7fc0);
  });
});

describe('openSafetensors rejects malformed files', () => {
  it('a 5-byte file (truncated header length)', async () => {
    const path = fresh('short');
    await writeFile(path, Buffer.from([1, 2, 3, 4, 5]));
    await expectCasspecError(openSafetensors(path), 'E_SAFETENSORS', path, 'truncated');
  });

  it('a header length larger than the file', async () => {
    const path = fresh('long');
    await writeRawSafetensors(path, goodHeader(), new Uint8Array(24), 4096n);
    await expectCasspecError(openSafetensors(path), 'E_SAFETENSORS', path, 'header length 4096');
  });

  it('a huge header length', async () => {
    const path = fresh('huge');
    await writeRawSafetensors(path, goodHeader(), new Uint8Array(24), 0xffff_ffff_ffff_ffffn);
    await expectCasspecError(openSafetensors(path), 'E_SAFETENSORS', path, 'limit');
  });

  it('malformed header JSON', async () => {
    const path = fresh('json');
    await writeRawSafetensors(path, '{"a": {"dtype": "F32",', new Uint8Array(24));
    await expectCasspecError(openSafetensors(path), 'E_SAFETENSORS', path, 'malformed JSON');
  });

  it('a header that is not an object', async () => {
    const path = fresh('array');
    await writeRawSafetensors(path, [1, 2], new Uint8Array(0));
    await expectCasspecError(openSafetensors(path), 'E_SAFETENSORS', path, 'not a JSON object');
  });

  it('offsets past the end of the file (truncated data)', async () => {
    const path = fresh('past');
    await writeRawSafetensors(path, goodHeader(), new Uint8Array(20));
    await expectCasspecError(openSafetensors(path), 'E_SAFETENSORS', path, "'a'", 'past the 20-byte data section');
  });

  it('overlapping tensors', async () => {
    const path = fresh('overlap');
    const header = { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } };
    await writeRawSafetensors(path, header, new Uint8Array(24));
    await expectCasspecError(openSafetensors(path), 'E_SAFETENSORS', path, "'a'", "'b'", 'overlap');
  });

  it('a byte span that disagrees with shape x dtype size', async () => {
    const path = fresh('size');
    const header = { a: { dtype: 'F16', shape: [2, 3], data_offsets: [0, 24] } };
    await writeRawSafetensors(path, header, new Uint8Array(24));
    await expectCasspecError(openSafetensors(path), 'E_SAFETENSORS', path, "'a'", 'needs 12');
  });

  it('an unsupported dtype (E_DTYPE)', async () => {
    const path = fresh('i64');
    const header = { ids: { dtype: 'I64', shape: [3], data_offsets: [0, 24] } };
    await writeRawSafetensors(path, header, new Uint8Array(24));
    await expectCasspecError(openSafetensors(path), 'E_DTYPE', path, "'ids'", 'I64');
  });

  it.each([
    ['negative shape', { dtype: 'F32', shape: [-1], data_offsets: [0, 0] }, 'shape'],
    ['fractional shape', { dtype: 'F32', shape: [1.5], data_offsets: [0, 6] }, 'shape'],
    ['shape not a list', { dtype: 'F32', shape: 3, data_offsets: [0, 12] }, 'shape'],
    ['three offsets', { dtype: 'F32', shape: [1], data_offsets: [0, 4, 8] }, 'data_offsets'],
    ['string offsets', { dtype: 'F32', shape: [1], data_offsets: ['0', '4'] }, 'data_offsets'],
    ['begin after end', { dtype: 'F32', shape: [0], data_offsets: [8, 4] }, 'begin 8 > end 4'],
    ['dtype missing', { shape: [1], data_offsets: [0, 4] }, 'dtype'],
    ['entry not an object', 'F32', 'not an object'],
    ['a shape whose size overflows', { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 24] }, 'needs'],
  ])('%s', async (_label, entry, fragment) => {
    const path = fresh('field');
    await writeRawSafetensors(path, { t: entry }, new Uint8Array(24));
    await expectCasspecError(openSafetensors(path), 'E_SAFETENSORS', path, fragment);
  });

  it('__metadata__ with a non-string value', async () => {
    const path = fresh('meta');
    await writeRawSafetensors(path, { __metadata__: { format: 1 }, ...goodHeader() }, new Uint8Array(24));
    await expectCasspecError(openSafetensors(path), 'E_SAFETENSORS', path, '__metadata__.format');
  });

  it('a missing file', async () => {
    const path = join(tmp(), 'absent.safetensors');
    await expectCasspecError(openSafetensors(path), 'E_SAFETENSORS', path, 'not found');
  });

  it('a file truncated after validation is caught on read', async () => {
    const path = fresh('shrink');
    await writeRawSafetensors(path, goodHeader(), new Uint8Array(24));
    const f = await openSafetensors(path);
    try {
      await truncate(path, 30);
      await expectCasspecError(f.read('a'), 'E_SAFETENSORS', path, 'unexpected end of file');
    } finally {
      await f.close();
    }
  });
});
