// The canvas: the image at its own pixel size (CSS scales it by `zoom`), masks, prompts, zones.
import { layer } from "./rle.js";
import { maskOf } from "./state.js";

export class View {
  constructor(canvas, stage) {
    this.canvas = canvas;
    this.stage = stage;
    this.ctx = canvas.getContext("2d");
    this.bitmap = null;
    this.zoom = 1;
  }

  get width() { return this.canvas.width; }
  get height() { return this.canvas.height; }

  setImage(bitmap) {
    this.bitmap = bitmap;
    this.canvas.width = bitmap.width;
    this.canvas.height = bitmap.height;
    this.canvas.hidden = false;
    this.fit();
  }

  fit() {
    if (!this.bitmap) return;
    const w = this.stage.clientWidth - 4, h = this.stage.clientHeight - 4;
    this.setZoom(Math.min(w / this.width, h / this.height));
  }

  setZoom(zoom) {
    this.zoom = Math.min(16, Math.max(0.05, zoom));
    this.canvas.style.width = `${this.width * this.zoom}px`;
    this.canvas.style.height = `${this.height * this.zoom}px`;
  }

  /** A mouse event -> image coordinates {x, y} (floats, pixels), whatever the zoom and scroll. */
  toImage(event) {
    const rect = this.canvas.getBoundingClientRect();
    return { x: (event.clientX - rect.left) * this.width / rect.width,
             y: (event.clientY - rect.top) * this.height / rect.height };
  }

  /** The pixel under image coordinates: integer [x, y] inside the image. */
  pixel(p) {
    return [Math.min(this.width - 1, Math.max(0, Math.floor(p.x))), Math.min(this.height - 1, Math.max(0, Math.floor(p.y)))];
  }

  /** Screen pixels -> image pixels (for line widths and hit radii). */
  px(n) { return n / this.zoom; }

  render(store, overlay = {}) {
    const ctx = this.ctx;
    if (!this.bitmap) return;
    ctx.clearRect(0, 0, this.width, this.height);
    ctx.drawImage(this.bitmap, 0, 0);
    for (const obj of store.objects) {
      if (!obj.hidden) this.drawMask(obj, obj.id === store.current);
    }
    store.zones.forEach((zone, i) => this.drawZone(zone.polygon, i === store.selectedZone, true));
    const obj = store.object;
    if (obj && !obj.hidden) this.drawPrompts(obj);
    if (overlay.box) this.drawBox(overlay.box, "#ffffff", true);
    if (overlay.draft?.length) this.drawZone(overlay.cursor ? [...overlay.draft, overlay.cursor] : overlay.draft, true, false);
  }

  drawMask(obj, selected) {
    const mask = maskOf(obj);
    if (!mask) return;
    this.ctx.globalAlpha = selected ? 1 : 0.7;
    this.ctx.drawImage(layer(mask, obj.color), 0, 0);
    this.ctx.globalAlpha = 1;
  }

  drawPrompts(obj) {
    if (obj.box) this.drawBox(obj.box, obj.color, false);
    const ctx = this.ctx;
    for (const [x, y, label] of obj.points) {
      ctx.beginPath();
      ctx.arc(x + 0.5, y + 0.5, this.px(6), 0, 2 * Math.PI);
      ctx.fillStyle = label === 1 ? "#20c040" : "#e02020";
      ctx.fill();
      ctx.lineWidth = this.px(2);
      ctx.strokeStyle = "#ffffff";
      ctx.stroke();
    }
  }

  drawBox([x1, y1, x2, y2], color, dashed) {
    const ctx = this.ctx;
    ctx.setLineDash(dashed ? [this.px(6), this.px(4)] : []);
    ctx.lineWidth = this.px(2);
    ctx.strokeStyle = color;
    ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    ctx.setLineDash([]);
  }

  drawZone(points, selected, closed) {
    if (!points.length) return;
    const ctx = this.ctx;
    ctx.beginPath();
    ctx.moveTo(points[0][0], points[0][1]);
    for (const [x, y] of points.slice(1)) ctx.lineTo(x, y);
    if (closed) {
      ctx.closePath();
      ctx.fillStyle = "rgba(255, 214, 0, 0.15)";
      ctx.fill();
    }
    ctx.lineWidth = this.px(selected ? 3 : 2);
    ctx.strokeStyle = "#ffd600";
    ctx.stroke();
    const r = this.px(selected ? 5 : 4);
    ctx.fillStyle = selected ? "#ffd600" : "#1d2330";
    for (const [x, y] of closed ? points : points.slice(0, -1)) ctx.fillRect(x - r, y - r, 2 * r, 2 * r);
  }
}
