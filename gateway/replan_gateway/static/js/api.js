// The gateway's public API, and nothing else: every request the page makes goes through this module
// (GET /v1/info, POST /v1/plan, POST /v1/jobs, GET and DELETE /v1/jobs/{id}, GET /v1/jobs/{id}/events).
// Errors come back as the gateway's envelope {"error": {message, type, code, param, request_id}} and are
// turned into ApiError, which the page shows as one sentence with the code.

import { followEvents } from "./sse.js";

/** An error answer of the API (or no answer at all: status 0, code null). */
export class ApiError extends Error {
  constructor({ message, code = null, type = null, param = null, requestId = null, status = 0 }) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.type = type;
    this.param = param;
    this.requestId = requestId;
    this.status = status;
  }

  /** From an `ErrorDetail` object (the envelope's `error`, or a failed job's `error`). */
  static fromDetail(detail, status = 0) {
    return new ApiError({
      message: detail?.message || "the server gave no reason",
      code: detail?.code ?? null,
      type: detail?.type ?? null,
      param: detail?.param ?? null,
      requestId: detail?.request_id ?? null,
      status,
    });
  }
}

/** The ApiError for a non-2xx answer; a body that is not the envelope (a proxy's page) still says something. */
export function errorFromResponse(status, text) {
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: fall through to the status line
  }
  if (body && typeof body === "object" && body.error) return ApiError.fromDetail(body.error, status);
  return new ApiError({ message: `the gateway answered HTTP ${status}`, status });
}

/** One readable sentence for any error, with the API's code (and field and request id) when there is one. */
export function errorSentence(error) {
  const text = String(error?.message ?? error ?? "unknown error").trim();
  let sentence = text.charAt(0).toUpperCase() + text.slice(1);
  if (!/[.!?]$/.test(sentence)) sentence += ".";
  if (!(error instanceof ApiError)) return sentence;
  const details = [];
  if (error.code) details.push(`error code: ${error.code}`);
  if (error.param) details.push(`field: ${error.param}`);
  if (error.requestId) details.push(`request ${error.requestId}`);
  return details.length ? `${sentence} (${details.join("; ")})` : sentence;
}

/**
 * The API client. `getKey()` returns the API key to send, or null (the local stack runs without auth).
 * Paths are relative to the page's origin: the gateway serves this page.
 */
export function createApi({ getKey = () => null } = {}) {
  async function call(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const key = getKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (error) {
      throw new ApiError({ message: `could not reach the gateway (${error.message})` });
    }
    const text = await response.text();
    if (!response.ok) throw errorFromResponse(response.status, text);
    return text ? JSON.parse(text) : null;
  }

  const jobPath = (id) => `/v1/jobs/${encodeURIComponent(id)}`;

  return {
    /** Backbones, each editor's resolved defaults, limits, whether a key is needed. */
    info: () => call("GET", "/v1/info"),
    /** PlanRequest → PlanResponse {plan: {reasoning, global_prompt, regions}, raw_text, adjustments, ...}. */
    plan: (body) => call("POST", "/v1/plan", body),
    /** JobCreate → JobPublic (status 202, `events_url`). */
    createJob: (body) => call("POST", "/v1/jobs", body),
    getJob: (id) => call("GET", jobPath(id)),
    cancelJob: (id) => call("DELETE", jobPath(id)),
    /** Follow a job's SSE events; see sse.js for the handlers. Returns {close()}. */
    followJob: (job, handlers) => followEvents(job.events_url || `${jobPath(job.id)}/events`, { key: getKey(), ...handlers }),
  };
}
