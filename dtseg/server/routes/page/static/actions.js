// What the page hands out: prompts as JSON / Python, zones as YAML, server pipelines, SAM 3 concepts, exports.
import { apiKey, request, requestJson } from "./api.js";
import { pythonSnippet, segmentPayload, zonesYaml } from "./snippets.js";

const $ = (id) => document.getElementById(id);

async function show(app, text) {
  $("snippet").value = text;
  try {
    await navigator.clipboard.writeText(text);
    app.status("decodeStatus", "copied to the clipboard");
  } catch {
    app.status("decodeStatus", "select the text to copy it");
  }
}

export function copyJson(app) {
  const obj = app.store.object;
  if (!obj || !app.imageId) return app.showError("select an object with prompts first");
  show(app, JSON.stringify(segmentPayload(app.imageId, obj, app.multimask), null, 2));
}

export function copyPython(app) {
  const obj = app.store.object;
  if (!obj || !app.imageId) return app.showError("select an object with prompts first");
  show(app, pythonSnippet(location.origin, segmentPayload(app.imageId, obj, app.multimask), Boolean(apiKey())));
}

export function copyYaml(app) {
  if (!app.store.zones.length) return app.showError("draw a zone first (Zone tool)");
  show(app, zonesYaml(app.store.zones, app.info?.model ?? "vit_b", app.imageName, [app.view.width, app.view.height]));
}

/** POST `path` with the image and `body`; the answer's detections become objects. Returns the answer (null on error). */
async function detectionsToObjects(app, name, path, body) {
  if (!app.imageData) { app.showError("open an image first"); return null; }
  app.status("decodeStatus", `running ${name}…`);
  const start = performance.now();
  let answer;
  try {
    answer = await requestJson(path, { image: { type: "base64", value: app.imageData }, ...body });
  } catch (exc) {
    app.status("decodeStatus", `${name} failed`);
    app.showError(exc.message);
    return null;
  }
  app.decoder.lastToken = 0; // the pipeline's decode replaced the server's cached logits of this image
  app.store.checkpoint();
  for (const [i, det] of answer.detections.entries()) {
    const obj = app.store.add(det.class_name ?? (det.class_id === null ? "object" : String(det.class_id)));
    obj.box = det.box.map(Math.round);
    obj.candidates = [{ rle: det.rle, lowRes: null, score: det.sam_score ?? det.confidence ?? 0, key: `${name}.${start}.${i}` }];
  }
  answer.seconds = ((performance.now() - start) / 1000).toFixed(2);
  app.refresh();
  return answer;
}

export async function runPipeline(app, config) {
  const answer = await detectionsToObjects(app, config, "/segment", { config, format: "rle" });
  if (answer) app.status("decodeStatus", `${config}: ${answer.detections.length} objects in ${answer.seconds} s`);
}

export async function runEverything(app, minScore) {
  const answer = await detectionsToObjects(app, "everything", "/everything", { pred_iou_thresh: minScore });
  if (!answer) return;
  const kept = answer.detections.length;
  const why = kept ? "" : ` (none scored ≥ ${minScore}${answer.random_weights ? ": random weights score low" : ""}; lower the score)`;
  app.status("decodeStatus", `everything: kept ${kept} of ${answer.prompts} masks in ${answer.seconds} s${why}`);
}

/**
 * POST /sam3/concept_segment with the image and `prompts`; every match of prompt i becomes an
 * object named names[i], after the objects `replace` (ids) are removed. Returns the new ids (null on error).
 */
async function conceptsToObjects(app, prompts, names, replace = []) {
  if (!app.imageData) { app.showError("open an image first"); return null; }
  const threshold = Number($("conceptScore").value);
  app.status("decodeStatus", "finding…");
  const start = performance.now();
  let answer;
  try {
    answer = await requestJson("/sam3/concept_segment", { image: { type: "base64", value: app.imageData },
      image_id: app.imageId ?? undefined, prompts, output_prob_thresh: threshold, format: "rle" });
  } catch (exc) {
    app.status("decodeStatus", "finding failed");
    app.showError(exc.message);
    return null;
  }
  app.store.checkpoint();
  for (const id of replace) app.store.remove(id);
  const ids = [];
  for (const result of answer.prompt_results) {
    for (const [k, prediction] of result.predictions.entries()) {
      const obj = app.store.add(names[result.prompt_index]);
      obj.candidates = [{ rle: prediction.masks, lowRes: null, score: prediction.confidence,
                          key: `concept.${start}.${result.prompt_index}.${k}` }];
      ids.push(obj.id);
    }
  }
  const counts = answer.prompt_results.map((r) => `${names[r.prompt_index]} ${r.predictions.length}`).join(", ");
  app.status("decodeStatus", `found ${counts} (score ≥ ${threshold}) in ${((performance.now() - start) / 1000).toFixed(2)} s`);
  app.refresh();
  return ids;
}

/** Every instance of each comma-separated phrase of `text` becomes an object named by its phrase. */
export async function runConcepts(app, text) {
  const phrases = text.split(",").map((t) => t.trim()).filter(Boolean);
  if (!phrases.length) return app.showError("type a phrase, or several separated by commas");
  await conceptsToObjects(app, phrases.map((t) => ({ type: "text", text: t })), phrases);
}

/** The exemplar boxes drawn so far (app.exemplars: positive and negative) -> every similar object,
 * replacing the previous answer's objects. */
export async function runExemplars(app) {
  const boxes = app.exemplars.map(({ box: [x0, y0, x1, y1] }) => ({ x0, y0, x1, y1 }));
  const prompt = { type: "visual", boxes, box_labels: app.exemplars.map((e) => e.label) };
  const ids = await conceptsToObjects(app, [prompt], ["exemplar"], app.exemplarIds);
  if (ids) app.exemplarIds = ids;
}

export async function exportAs(app, format) {
  if (!app.imageData) return app.showError("open an image first");
  const objects = app.store.objects.filter((o) => o.candidates[o.chosen]).map((o) => ({
    rle: o.candidates[o.chosen].rle, class_name: o.name, sam_score: o.candidates[o.chosen].score }));
  try {
    const response = await request("/export", { image: { type: "base64", value: app.imageData }, name: app.imageName,
                                                format, objects });
    const disposition = response.headers.get("Content-Disposition") ?? "";
    const filename = /filename="([^"]+)"/.exec(disposition)?.[1] ?? `${app.imageName}-${format}`;
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = filename;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    app.status("decodeStatus", `exported ${objects.length} objects to ${filename}`);
  } catch (exc) {
    app.showError(`export failed: ${exc.message}`);
  }
}
