// COCO compressed RLE (what the server answers with format "rle") -> pixels and canvas layers.

/** The run lengths of a COCO compressed `counts` string (pycocotools' rleFrString). */
export function runs(counts) {
  const out = [];
  let p = 0;
  while (p < counts.length) {
    let x = 0, k = 0, more = true;
    while (more) {
      const c = counts.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = (c & 0x20) !== 0;
      p++;
      k++;
      if (!more && (c & 0x10)) x |= -1 << (5 * k);
    }
    if (out.length > 2) x += out[out.length - 2];
    out.push(x);
  }
  return out;
}

/** RLE {size: [H, W], counts} -> Uint8Array (H * W), row-major, 1 = mask. */
export function decode(rle) {
  const [h, w] = rle.size;
  const mask = new Uint8Array(h * w);
  let i = 0, value = 0;
  for (const n of runs(rle.counts)) { // column-major runs, starting with background
    if (value) {
      for (let j = i; j < i + n; j++) mask[(j % h) * w + Math.floor(j / h)] = 1;
    }
    i += n;
    value ^= 1;
  }
  return mask;
}

/** A mask as SAM logits on its 256x256 grid (nested lists, +10 inside / -10 outside). */
export function logits(rle) {
  const mask = decode(rle);
  const [h, w] = rle.size;
  const rows = [];
  for (let y = 0; y < h; y++) rows.push(Array.from(mask.subarray(y * w, (y + 1) * w), (v) => (v ? 10 : -10)));
  return rows;
}

const layers = new Map(); // `${key} ${color}` -> canvas, the most recent LAYERS kept
const LAYERS = 64;

/** A canvas of the mask: translucent fill, opaque outline (mask pixels within 2 pixels of the outside). */
export function layer(candidate, color) {
  const id = `${candidate.key} ${color}`;
  let canvas = layers.get(id);
  if (canvas) return canvas;
  const [h, w] = candidate.rle.size;
  const mask = decode(candidate.rle);
  canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(w, h);
  const px = image.data;
  const [r, g, b] = [1, 3, 5].map((i) => parseInt(color.slice(i, i + 2), 16));
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      // outline: 2 pixels wide, so that it still shows when the image is shrunk to fit
      const edge = x < 2 || y < 2 || x >= w - 2 || y >= h - 2 || !mask[i - 1] || !mask[i + 1] || !mask[i - w] || !mask[i + w]
        || !mask[i - 2] || !mask[i + 2] || !mask[i - 2 * w] || !mask[i + 2 * w];
      px[4 * i] = r;
      px[4 * i + 1] = g;
      px[4 * i + 2] = b;
      px[4 * i + 3] = edge ? 255 : 110;
    }
  }
  ctx.putImageData(image, 0, 0);
  layers.set(id, canvas);
  if (layers.size > LAYERS) layers.delete(layers.keys().next().value);
  return canvas;
}
