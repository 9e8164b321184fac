// The zone tool: click vertices, close on the first vertex (or Enter / double-click), drag vertices.

export class ZoneTool {
  constructor(app) {
    this.app = app;
    this.draft = []; // vertices of the zone being drawn, [x, y] image pixels
    this.dragging = null; // {zone, vertex}
  }

  hit(p) {
    const r = this.app.view.px(8);
    const zones = this.app.store.zones;
    for (let z = zones.length - 1; z >= 0; z--) {
      const v = zones[z].polygon.findIndex(([x, y]) => Math.hypot(x - p.x, y - p.y) <= r);
      if (v >= 0) return { zone: z, vertex: v };
    }
    return null;
  }

  down(p) {
    const app = this.app;
    const [x, y] = app.view.pixel(p);
    if (this.draft.length >= 3 && Math.hypot(this.draft[0][0] - p.x, this.draft[0][1] - p.y) <= app.view.px(8)) {
      this.close();
      return;
    }
    const hit = this.draft.length ? null : this.hit(p);
    if (hit) {
      app.store.checkpoint();
      app.store.selectedZone = hit.zone;
      this.dragging = hit;
    } else {
      this.draft.push([x, y]);
    }
    app.refresh();
  }

  move(p) {
    if (!this.dragging) return false;
    const { zone, vertex } = this.dragging;
    this.app.store.zones[zone].polygon[vertex] = this.app.view.pixel(p);
    return true;
  }

  up() {
    if (this.dragging) {
      this.dragging = null;
      this.app.refresh();
    }
  }

  close() {
    const app = this.app;
    if (this.draft.length < 3) {
      app.showError("a zone needs at least 3 vertices");
      return;
    }
    app.store.checkpoint();
    const names = new Set(app.store.zones.map((z) => z.name));
    let n = app.store.zones.length;
    while (names.has(`zone${n}`)) n++;
    app.store.zones.push({ name: `zone${n}`, polygon: this.draft });
    app.store.selectedZone = app.store.zones.length - 1;
    this.draft = [];
    app.refresh();
  }

  /** Esc: drop the zone being drawn; returns whether there was one. */
  cancel() {
    const had = this.draft.length > 0;
    this.draft = [];
    return had;
  }

  removeSelected() {
    const store = this.app.store;
    if (store.selectedZone === null || !store.zones[store.selectedZone]) return false;
    store.checkpoint();
    store.zones.splice(store.selectedZone, 1);
    store.selectedZone = null;
    this.app.refresh();
    return true;
  }
}
