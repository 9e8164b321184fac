// The page's document: objects (prompts + masks), zones, selection; undo/redo by snapshots.
const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
                 "#fabed4", "#469990", "#9a6324", "#800000", "#808000", "#000075"];
const HISTORY = 200;

/**
 * An object: {id, name, color, hidden, points: [[x, y, label]], box: [x1, y1, x2, y2] | null,
 *   candidates: [{rle, lowRes, score, key}], chosen, best, token}
 * rle: the mask as COCO RLE ({size: [H, W], counts}); lowRes: the same on SAM's 256x256 grid
 * (null for a pipeline's objects); key: unique, names the mask's drawn layer;
 * token: the decode number that produced the candidates (the server caches the last one's logits).
 * A zone: {name, polygon: [[x, y], ...]}.
 */
export class Store {
  constructor() {
    this.reset();
  }

  reset() {
    this.objects = [];
    this.zones = [];
    this.current = null; // object id
    this.selectedZone = null; // zone index
    this.nextId = 1;
    this.undoStack = [];
    this.redoStack = [];
  }

  snapshot() {
    return structuredClone({ objects: this.objects, zones: this.zones, current: this.current,
                             selectedZone: this.selectedZone, nextId: this.nextId });
  }

  restore(snap) {
    Object.assign(this, structuredClone(snap));
  }

  /** Call before every change: the state before it becomes an undo step. */
  checkpoint() {
    this.undoStack.push(this.snapshot());
    if (this.undoStack.length > HISTORY) this.undoStack.shift();
    this.redoStack = [];
  }

  undo() {
    if (!this.undoStack.length) return false;
    this.redoStack.push(this.snapshot());
    this.restore(this.undoStack.pop());
    return true;
  }

  redo() {
    if (!this.redoStack.length) return false;
    this.undoStack.push(this.snapshot());
    this.restore(this.redoStack.pop());
    return true;
  }

  get object() {
    return this.objects.find((o) => o.id === this.current) ?? null;
  }

  byId(id) {
    return this.objects.find((o) => o.id === id) ?? null;
  }

  /** A new empty object (no checkpoint: callers take one). */
  add(name = "object") {
    const id = this.nextId++;
    const obj = { id, name, color: PALETTE[(id - 1) % PALETTE.length], hidden: false, points: [], box: null,
                  candidates: [], chosen: 0, best: 0, token: null };
    this.objects.push(obj);
    this.current = id;
    return obj;
  }

  remove(id) {
    this.objects = this.objects.filter((o) => o.id !== id);
    if (this.current === id) this.current = this.objects.at(-1)?.id ?? null;
  }
}

/** The mask an object shows: its chosen candidate, or null. */
export function maskOf(obj) {
  return obj.candidates[obj.chosen] ?? null;
}
