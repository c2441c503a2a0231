import { deflateSync } from 'node:zlib';
import { defineConfig, type Plugin } from 'vite';

/**
 * The dashboard is plain TypeScript and DOM (no framework: the bundle stays a few kilobytes),
 * built into static files the relay serves under /app/. Everything is local: no CDN, no web
 * fonts, no inline script (the relay's CSP forbids it).
 */
export default defineConfig({
  base: '/app/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2020',
    // No base64-inlined assets: every file is a cacheable URL.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
  },
  plugins: [pngIcons()],
});

// ---- PNG icons, drawn at build time (nothing binary is committed) -------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** An RGBA PNG of `size`² pixels, each from `pixel(x, y)` in 0..1 coordinates. */
function png(size: number, pixel: (x: number, y: number) => [number, number, number, number]): Buffer {
  const raw = Buffer.alloc((size * 4 + 1) * size);
  for (let y = 0; y < size; y++) {
    const row = y * (size * 4 + 1);
    raw[row] = 0; // filter: none
    for (let x = 0; x < size; x++) {
      const p = pixel((x + 0.5) / size, (y + 0.5) / size);
      raw.set(p, row + 1 + x * 4);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw, { level: 9 })),
    chunk('IEND', new Uint8Array(0)),
  ]);
}

/** The porthole: a white ring with a small window on the brand blue, full bleed (maskable-safe). */
function porthole(x: number, y: number): [number, number, number, number] {
  const r = Math.hypot(x - 0.5, y - 0.5);
  const blue: [number, number, number, number] = [11, 98, 196, 255];
  const white: [number, number, number, number] = [255, 255, 255, 255];
  if (r > 0.2 && r < 0.28) return white;
  if (r <= 0.2 && y < 0.5 - 0.05 && x > 0.5 - 0.1 && x < 0.5 + 0.12) return [170, 205, 245, 255];
  return blue;
}

function pngIcons(): Plugin {
  return {
    name: 'porthole-png-icons',
    apply: 'build',
    generateBundle() {
      for (const size of [192, 512]) {
        this.emitFile({ type: 'asset', fileName: `icon-${size}.png`, source: png(size, porthole) });
      }
      this.emitFile({ type: 'asset', fileName: 'apple-touch-icon.png', source: png(180, porthole) });
    },
  };
}
