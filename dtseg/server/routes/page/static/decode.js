// Decoding an object's prompts against the cached embedding (POST /sam/segment_image).
import { requestJson } from "./api.js";
import { logits } from "./rle.js";
import { segmentPayload } from "./snippets.js";

/**
 * One decode at a time: a change made while a decode runs is decoded when it returns, so every
 * user action sends at most one request and answers never arrive out of order.
 */
export class Decoder {
  constructor(app) {
    this.app = app;
    this.running = false;
    this.pending = new Set();
    this.lastToken = 0; // the server caches the logits of its last decode on this image
    this.tokens = 0;
  }

  reset() {
    this.pending.clear();
    this.lastToken = 0;
  }

  schedule(id) {
    this.pending.add(id);
    if (!this.running) this.drain();
  }

  async drain() {
    this.running = true;
    try {
      while (this.pending.size) {
        const id = this.pending.values().next().value;
        this.pending.delete(id);
        await this.decode(id);
      }
    } finally {
      this.running = false;
    }
  }

  /** The request body: prompts, plus the previous mask (the server's cached logits when they are this mask's). */
  body(obj) {
    const app = this.app;
    const body = { ...segmentPayload(app.imageId, obj, app.multimask), format: "rle" };
    const previous = obj.candidates[obj.chosen];
    if (previous) {
      const cached = obj.token === this.lastToken && obj.chosen === obj.best; // the server's last logits are this mask's
      if (cached || previous.lowRes) {
        body.has_mask_input = true;
        body.use_mask_input_cache = cached;
        if (!cached) body.mask_input = logits(previous.lowRes); // the mask on SAM's 256x256 grid
      }
    }
    return body;
  }

  async decode(id) {
    const app = this.app;
    const obj = app.store.byId(id);
    if (!obj || !app.imageId) return;
    if (!obj.points.length && !obj.box) {
      obj.candidates = [];
      app.refresh();
      return;
    }
    const body = this.body(obj);
    const sent = JSON.stringify([obj.points, obj.box]);
    const imageId = app.imageId;
    app.status("decodeStatus", "decoding…");
    const start = performance.now();
    let answer;
    try {
      answer = await requestJson("/sam/segment_image", body);
    } catch (exc) {
      app.status("decodeStatus", "decode failed");
      app.showError(exc.message);
      return;
    }
    const roundTrip = performance.now() - start;
    this.lastToken = ++this.tokens;
    app.status("decodeStatus", `decode ${roundTrip.toFixed(0)} ms round trip (server ${(answer.time * 1000).toFixed(0)} ms)`);
    const current = app.store.byId(id);
    // the object changed (undo, another click) or the image did: this answer is stale
    if (!current || app.imageId !== imageId || JSON.stringify([current.points, current.box]) !== sent) return;
    const scores = answer.scores[0];
    current.candidates = answer.masks.map((rle, k) => ({ rle, lowRes: answer.low_res_masks[k], score: scores[k],
                                                         key: `${this.lastToken}.${k}` }));
    current.best = scores.indexOf(Math.max(...scores));
    current.chosen = current.best;
    current.token = this.lastToken;
    app.refresh();
  }
}
