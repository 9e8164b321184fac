// HTTP calls to the dtseg server: API key (sessionStorage), readable errors.
const KEY = "dtseg.apiKey";

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

/** Ask for an API key in the page's dialog; resolves true when one was given. */
function askKey(message) {
  const dialog = document.getElementById("keyDialog");
  document.getElementById("keyMessage").textContent = message;
  const input = document.getElementById("keyInput");
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const ok = dialog.returnValue === "ok" && input.value.trim() !== "";
      if (ok) sessionStorage.setItem(KEY, input.value.trim());
      resolve(ok);
    }, { once: true });
    dialog.showModal();
    input.focus();
  });
}

async function errorOf(response) {
  let text = await response.text();
  try {
    const body = JSON.parse(text);
    text = body.message ?? JSON.stringify(body);
    return new ApiError(response.status, `${response.status}: ${text}`, body.field);
  } catch {
    return new ApiError(response.status, `${response.status}: ${text.slice(0, 300) || response.statusText}`);
  }
}

/**
 * POST (or GET without body) `path`; returns the Response (ok). A 401 asks for a key and retries;
 * any other failure throws ApiError with the server's message.
 */
export async function request(path, body = undefined) {
  for (;;) {
    const headers = {};
    const key = sessionStorage.getItem(KEY);
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, { method: body === undefined ? "GET" : "POST", headers,
                                     body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (exc) {
      throw new ApiError(0, `cannot reach the server (${exc.message})`);
    }
    if (response.ok) return response;
    const error = await errorOf(response);
    if (response.status === 401) {
      sessionStorage.removeItem(KEY);
      const prompt = key ? `The server refused the key (${error.message}). Enter another:`
                         : "This server needs an API key:";
      if (await askKey(prompt)) continue;
    }
    throw error;
  }
}

export async function requestJson(path, body = undefined) {
  return (await request(path, body)).json();
}

export function apiKey() {
  return sessionStorage.getItem(KEY);
}
