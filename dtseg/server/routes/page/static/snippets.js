// Text for people to copy: /sam/segment_image payloads, Python, a zones pipeline YAML.

/** The /sam/segment_image JSON body for an object's prompts (Roboflow's single-object shape). */
export function segmentPayload(imageId, obj, multimask = false) {
  const body = { image_id: imageId };
  if (obj.points.length) {
    body.point_coords = obj.points.map(([x, y]) => [x, y]);
    body.point_labels = obj.points.map(([, , label]) => label);
  }
  if (obj.box) body.boxes = [...obj.box];
  if (multimask) body.multimask_output = true;
  return body;
}

function python(value, indent = "") {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return `[${value.map((v) => python(v, indent)).join(", ")}]`;
  if (typeof value === "object") {
    const inner = indent + "    ";
    const items = Object.entries(value).map(([k, v]) => `${inner}${JSON.stringify(k)}: ${python(v, inner)},`);
    return `{\n${items.join("\n")}\n${indent}}`;
  }
  return JSON.stringify(value);
}

/** A runnable Python `requests` call of /sam/segment_image for `payload`. */
export function pythonSnippet(baseUrl, payload, withKey) {
  const auth = withKey ? '\napi_key = "YOUR_API_KEY"' : "";
  const query = withKey ? "?api_key={api_key}" : "";
  return `import requests

base_url = ${JSON.stringify(baseUrl)}${auth}
# the image must be embedded once under this image_id (POST /sam/embed_image with "image_id")
payload = ${python(payload)}
res = requests.post(f"{base_url}/sam/segment_image${query}", json=payload)
res.raise_for_status()
masks = res.json()["masks"]  # one polygon [[x, y], ...] per mask
`;
}

/** A `zones` pipeline config (YAML) that `dtseg segment --config` runs: each zone segmented. */
export function zonesYaml(zones, model, imageName, size) {
  const lines = [
    `# Polygon zones drawn on the dtseg serve page on ${imageName} (${size[0]} x ${size[1]} pixels).`,
    "# Each zone is segmented (its box plus an interior point prompt SAM):",
    "#   dtseg segment IMAGE --config zones.yaml --out out/",
    "# To keep only a detector's objects inside the zones instead, put a stage such as",
    "# `- yolo: {}` before the zones stage.",
    "sam:",
    `  model: ${JSON.stringify(model)}`,
    "prompts:",
    "  - zones:",
    "      zones:",
  ];
  for (const zone of zones) {
    lines.push(`        - name: ${JSON.stringify(zone.name)}`);
    lines.push(`          polygon: [${zone.polygon.map(([x, y]) => `[${Math.round(x)}, ${Math.round(y)}]`).join(", ")}]`);
  }
  lines.push("sinks:", "  - annotated:", "      annotators: [mask, polygon, label]",
             '      label: "{zone}"', "  - json: {}", "");
  return lines.join("\n");
}
