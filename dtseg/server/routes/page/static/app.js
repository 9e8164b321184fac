// The dtseg page: open an image, embed it once, click to segment, draw zones, export.
import { copyJson, copyPython, copyYaml, exportAs, runConcepts, runEverything, runExemplars, runPipeline } from "./actions.js";
import { request, requestJson } from "./api.js";
import { Decoder } from "./decode.js";
import { renderPanel } from "./panel.js";
import { Store } from "./state.js";
import { View } from "./view.js";
import { ZoneTool } from "./zones.js";

const $ = (id) => document.getElementById(id);
const DRAG_PX = 5; // screen pixels a press must move to become a box

class App {
  constructor() {
    this.store = new Store();
    this.view = new View($("canvas"), $("stage"));
    this.decoder = new Decoder(this);
    this.zones = new ZoneTool(this);
    this.tool = "segment";
    this.imageId = null;
    this.imageData = null; // data URL of the image bytes (sent again for pipelines and exports)
    this.imageName = "image";
    this.press = null; // {start, screen, label, box}
    this.cursor = null;
    this.info = null;
    this.exemplars = []; // Exemplar tool: [{box: [x1, y1, x2, y2], label: 1 | 0}] of the current query
    this.exemplarIds = []; // the objects its last answer added
  }

  get multimask() { return $("multimask").checked; }

  // -- feedback ----------------------------------------------------------------------
  status(id, text) { $(id).textContent = text; }

  showError(message) {
    $("errorText").textContent = message;
    $("error").hidden = false;
  }

  refresh() {
    const cursor = this.cursor ? this.view.pixel(this.cursor) : null;
    this.view.render(this.store, { box: this.press?.box, draft: this.zones.draft, cursor });
    renderPanel(this);
  }

  // -- server info -------------------------------------------------------------------
  async loadInfo() {
    try {
      this.info = await requestJson("/info");
    } catch (exc) {
      this.showError(`cannot read /info: ${exc.message}`);
      return;
    }
    const weights = this.info.random_weights ? " — RANDOM WEIGHTS: masks are meaningless" : "";
    this.status("serverStatus", `${this.info.model} on ${this.info.device}${this.info.auth ? " · auth on" : ""}${weights}`);
    const select = $("pipeline");
    select.replaceChildren(...this.info.pipelines.map((name) => new Option(name, name)));
    $("pipelineForm").hidden = !this.info.pipelines.length;
    const sam3 = this.info.sam3 != null; // a SAM 3 model serves /sam3: phrases and exemplars
    $("conceptForm").hidden = !sam3;
    $("toolExemplar").hidden = !sam3;
  }

  // -- opening and embedding an image ------------------------------------------------
  async openBlob(blob, name) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(blob);
    } catch {
      this.showError(`${name}: not an image this browser can read`);
      return;
    }
    const dataUrl = await new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
    this.store.reset();
    this.decoder.reset();
    this.zones.cancel();
    this.exemplars = [];
    this.exemplarIds = [];
    this.imageId = null;
    this.imageData = dataUrl;
    this.imageName = (name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_.-]+/g, "_") || "image").slice(0, 100);
    $("drop").hidden = true;
    this.view.setImage(bitmap);
    this.status("imageStatus", `${name} · ${bitmap.width} x ${bitmap.height}`);
    this.refresh();
    await this.embed();
  }

  async embed() {
    const start = performance.now();
    const label = $("embedStatus");
    label.classList.add("busy");
    const timer = setInterval(() => { label.textContent = `embedding… ${((performance.now() - start) / 1000).toFixed(1)} s`; }, 100);
    label.textContent = "embedding…";
    try {
      const response = await request("/sam/embed_image", { image: { type: "base64", value: this.imageData }, format: "binary" });
      this.imageId = response.headers.get("X-Image-Id");
      response.body?.cancel(); // the embedding itself is not needed here: the server keeps it
      label.textContent = `embedded in ${((performance.now() - start) / 1000).toFixed(2)} s`;
    } catch (exc) {
      label.textContent = "embedding failed";
      this.showError(`embedding the image failed: ${exc.message}`);
    } finally {
      clearInterval(timer);
      label.classList.remove("busy");
    }
  }

  async openUrl(url) {
    try {
      const response = await request("/fetch_image", { url });
      await this.openBlob(await response.blob(), url.split("/").pop().split("?")[0] || "image");
    } catch (exc) {
      this.showError(exc.message);
    }
  }

  // -- objects -----------------------------------------------------------------------
  newObject() {
    this.store.checkpoint();
    this.store.add();
    this.refresh();
  }

  select(id) {
    if (this.store.current === id) return;
    this.store.current = id;
    this.refresh();
  }

  rename(id, name) {
    const obj = this.store.byId(id);
    if (!obj || obj.name === name) return;
    this.store.checkpoint();
    obj.name = name.trim() || "object";
    this.refresh();
  }

  renameZone(index, name) {
    name = name.trim();
    if (!name || this.store.zones.some((z, i) => i !== index && z.name === name)) {
      this.showError(`zone names must be unique and not empty: ${JSON.stringify(name)}`);
      this.refresh();
      return;
    }
    this.store.checkpoint();
    this.store.zones[index].name = name;
    this.refresh();
  }

  toggleHidden(id) {
    const obj = this.store.byId(id);
    this.store.checkpoint();
    obj.hidden = !obj.hidden;
    this.refresh();
  }

  removeObject(id) {
    if (!this.store.byId(id)) return;
    this.store.checkpoint();
    this.store.remove(id);
    this.refresh();
  }

  choose(k) {
    const obj = this.store.object;
    if (!obj || obj.chosen === k) return;
    this.store.checkpoint();
    obj.chosen = k;
    this.refresh();
  }

  /** A prompt change on the current object (made after a checkpoint), then one decode. */
  prompted(obj) {
    this.refresh();
    this.decoder.schedule(obj.id);
  }

  // -- pointer -----------------------------------------------------------------------
  down(event) {
    if (!this.view.bitmap || event.button === 1) return;
    event.preventDefault();
    $("stage").focus({ preventScroll: true });
    const p = this.view.toImage(event);
    if (this.tool === "zone") {
      if (event.button === 0) this.zones.down(p);
      return;
    }
    const label = event.button === 2 || event.altKey ? 0 : 1;
    this.press = { start: p, screen: [event.clientX, event.clientY], label, box: null };
  }

  move(event) {
    if (!this.view.bitmap) return;
    const p = this.view.toImage(event);
    this.cursor = p;
    const [x, y] = this.view.pixel(p);
    const inside = p.x >= 0 && p.y >= 0 && p.x < this.view.width && p.y < this.view.height;
    this.status("coords", inside ? `x ${x}, y ${y}` : "x –, y –");
    if (this.tool === "zone") {
      if (this.zones.move(p) || this.zones.draft.length) this.refresh();
      return;
    }
    if (!this.press) return;
    const [sx, sy] = this.press.screen;
    if (this.press.box || Math.hypot(event.clientX - sx, event.clientY - sy) > DRAG_PX) {
      const a = this.view.pixel(this.press.start), b = this.view.pixel(p);
      this.press.box = [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
      this.refresh();
    }
  }

  up(event) {
    if (this.tool === "zone") {
      this.zones.up();
      return;
    }
    const press = this.press;
    this.press = null;
    if (!press || !this.imageId) {
      if (press) this.showError("the image is not embedded yet");
      return;
    }
    if (this.tool === "exemplar") { // a box is an example (Alt/right: a counter-example) for SAM 3
      this.refresh();
      if (!press.box) return;
      this.exemplars.push({ box: press.box, label: press.label });
      runExemplars(this);
      return;
    }
    this.store.checkpoint();
    const obj = this.store.object ?? this.store.add();
    if (press.box) {
      obj.box = press.box;
    } else {
      obj.points.push([...this.view.pixel(press.start), press.label]);
    }
    this.prompted(obj);
  }

  setTool(tool) {
    this.tool = tool;
    this.zones.cancel();
    this.press = null;
    this.exemplars = [];
    this.exemplarIds = [];
    $("toolSegment").classList.toggle("active", tool === "segment");
    $("toolZone").classList.toggle("active", tool === "zone");
    $("toolExemplar").classList.toggle("active", tool === "exemplar");
    this.refresh();
  }

  // -- keyboard ----------------------------------------------------------------------
  key(event) {
    if (event.target.closest("input, textarea, select, dialog")) return;
    const key = event.key;
    if (key === "n") this.newObject();
    else if (key === "z" || key === "Z") this.undoRedo(event.shiftKey);
    else if (key === "Escape") this.escape();
    else if (key === "Enter" && this.tool === "zone" && this.zones.draft.length) this.zones.close();
    else if (key === "Delete" || key === "Backspace") this.deleteSelection();
    else return;
    event.preventDefault();
  }

  undoRedo(redo) {
    const done = redo ? this.store.redo() : this.store.undo();
    if (done) this.refresh();
  }

  escape() {
    if (this.press || this.zones.cancel()) {
      this.press = null;
    } else if (this.exemplars.length) { // the next exemplar box starts a new query
      this.exemplars = [];
      this.exemplarIds = [];
    } else if (this.store.selectedZone !== null) {
      this.store.selectedZone = null;
    } else {
      this.store.current = null;
    }
    this.refresh();
  }

  deleteSelection() {
    if (this.tool === "zone" && this.zones.removeSelected()) return;
    if (this.store.current !== null) this.removeObject(this.store.current);
  }

  // -- wiring ------------------------------------------------------------------------
  bind() {
    const canvas = $("canvas"), stage = $("stage");
    canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); this.down(e); });
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", (e) => this.up(e));
    canvas.addEventListener("dblclick", () => { if (this.tool === "zone" && this.zones.draft.length >= 3) this.zones.close(); });
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    canvas.addEventListener("pointerleave", () => this.status("coords", "x –, y –"));
    stage.addEventListener("wheel", (e) => {
      if (!e.ctrlKey || !this.view.bitmap) return;
      e.preventDefault();
      this.view.setZoom(this.view.zoom * (e.deltaY < 0 ? 1.25 : 0.8));
      this.refresh();
    }, { passive: false });
    for (const type of ["dragenter", "dragover"]) stage.addEventListener(type, (e) => { e.preventDefault(); stage.classList.add("dragover"); });
    stage.addEventListener("dragleave", () => stage.classList.remove("dragover"));
    stage.addEventListener("drop", (e) => {
      e.preventDefault();
      stage.classList.remove("dragover");
      const file = [...e.dataTransfer.files].find((f) => f.type.startsWith("image/")) ?? e.dataTransfer.files[0];
      if (file) this.openBlob(file, file.name);
      else if (e.dataTransfer.getData("text/uri-list")) this.openUrl(e.dataTransfer.getData("text/uri-list").split("\n")[0]);
    });
    window.addEventListener("paste", (e) => {
      if (e.target.closest?.("input, textarea")) return;
      const file = [...e.clipboardData.files].find((f) => f.type.startsWith("image/"));
      if (file) this.openBlob(file, file.name || "pasted.png");
    });
    $("file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) this.openBlob(f, f.name); e.target.value = ""; });
    $("urlForm").addEventListener("submit", (e) => { e.preventDefault(); if ($("url").value.trim()) this.openUrl($("url").value.trim()); });
    $("pipelineForm").addEventListener("submit", (e) => { e.preventDefault(); if ($("pipeline").value) runPipeline(this, $("pipeline").value); });
    $("everythingForm").addEventListener("submit", (e) => { e.preventDefault(); runEverything(this, Number($("everythingScore").value)); });
    $("toolSegment").addEventListener("click", () => this.setTool("segment"));
    $("toolZone").addEventListener("click", () => this.setTool("zone"));
    $("toolExemplar").addEventListener("click", () => this.setTool("exemplar"));
    $("conceptForm").addEventListener("submit", (e) => { e.preventDefault(); runConcepts(this, $("concepts").value); });
    $("zoomIn").addEventListener("click", () => { this.view.setZoom(this.view.zoom * 1.25); this.refresh(); });
    $("zoomOut").addEventListener("click", () => { this.view.setZoom(this.view.zoom * 0.8); this.refresh(); });
    $("zoomFit").addEventListener("click", () => { this.view.fit(); this.refresh(); });
    $("zoom100").addEventListener("click", () => { this.view.setZoom(1); this.refresh(); });
    $("undo").addEventListener("click", () => this.undoRedo(false));
    $("redo").addEventListener("click", () => this.undoRedo(true));
    $("newObject").addEventListener("click", () => this.newObject());
    $("copyJson").addEventListener("click", () => copyJson(this));
    $("copyPython").addEventListener("click", () => copyPython(this));
    $("copyYaml").addEventListener("click", () => copyYaml(this));
    for (const button of document.querySelectorAll("button.export")) {
      button.addEventListener("click", () => exportAs(this, button.dataset.format));
    }
    $("errorClose").addEventListener("click", () => { $("error").hidden = true; });
    document.addEventListener("keydown", (e) => this.key(e));
    window.addEventListener("unhandledrejection", (e) => this.showError(String(e.reason?.message ?? e.reason)));
    window.addEventListener("error", (e) => this.showError(String(e.message)));
  }
}

const app = new App();
app.bind();
app.refresh();
app.loadInfo();
window.dtsegPage = app; // for the console
