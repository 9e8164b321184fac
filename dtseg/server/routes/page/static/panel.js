// The side panel: objects (select, rename, hide, delete), multimask candidates, zones.

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

export function renderPanel(app) {
  const store = app.store;
  const list = document.getElementById("objects");
  list.replaceChildren(...store.objects.map((obj) => {
    const mask = obj.candidates[obj.chosen];
    const name = el("input", { value: obj.name, title: "class name", ariaLabel: "class name" });
    name.addEventListener("change", () => app.rename(obj.id, name.value));
    name.addEventListener("focus", () => app.select(obj.id));
    const hide = el("button", { textContent: obj.hidden ? "show" : "hide", title: "hide / show" });
    hide.addEventListener("click", (e) => { e.stopPropagation(); app.toggleHidden(obj.id); });
    const remove = el("button", { textContent: "×", title: "delete (Delete)", ariaLabel: "delete" });
    remove.addEventListener("click", (e) => { e.stopPropagation(); app.removeObject(obj.id); });
    const info = el("small", { textContent: mask ? (mask.score ?? 0).toFixed(2) : "–", title: "SAM score" });
    const row = el("li", { className: [obj.id === store.current ? "selected" : "", obj.hidden ? "hidden-object" : ""].join(" ") },
                   el("span", { className: "swatch", style: `background:${obj.color}` }), name, info, hide, remove);
    row.dataset.id = obj.id;
    row.addEventListener("click", () => app.select(obj.id));
    return row;
  }));

  const obj = store.object;
  const box = document.getElementById("candidates");
  box.hidden = !obj || obj.candidates.length < 2;
  if (!box.hidden) {
    document.getElementById("candidateList").replaceChildren(...obj.candidates.map((c, k) => {
      const b = el("button", { className: k === obj.chosen ? "active" : "", textContent: `#${k + 1} ${c.score.toFixed(3)}` });
      b.dataset.candidate = k;
      b.addEventListener("click", () => app.choose(k));
      return b;
    }));
  }

  document.getElementById("zones").replaceChildren(...store.zones.map((zone, i) => {
    const name = el("input", { value: zone.name, title: "zone name", ariaLabel: "zone name" });
    name.addEventListener("change", () => app.renameZone(i, name.value));
    const remove = el("button", { textContent: "×", title: "delete zone", ariaLabel: "delete zone" });
    remove.addEventListener("click", (e) => { e.stopPropagation(); app.store.selectedZone = i; app.zones.removeSelected(); });
    const row = el("li", { className: i === store.selectedZone ? "selected" : "" },
                   el("span", { className: "swatch", style: "background:#ffd600" }), name,
                   el("small", { textContent: `${zone.polygon.length} pts` }), remove);
    row.addEventListener("click", () => { store.selectedZone = i; app.refresh(); });
    return row;
  }));
  document.getElementById("undo").disabled = !store.undoStack.length;
  document.getElementById("redo").disabled = !store.redoStack.length;
}
