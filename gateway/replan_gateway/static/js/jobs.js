// One edit job from start to end, without the page: POST /v1/jobs, follow its SSE events as progress,
// then GET /v1/jobs/{id} once the stream says it ended (or was lost). The page decides what to show.

const FINAL = new Set(["done", "error", "cancelled"]);

/** What a progress event means for the bar: {percent, text}; null for events that change nothing. */
export function progressOf(stage, data) {
  if (stage === "step" && data.total) {
    const percent = Math.round((100 * data.step) / data.total);
    return { percent, text: `Step ${data.step} of ${data.total} (${percent}%)` };
  }
  const texts = { queued: "Queued…", planning: "Planning…", editing: "Editing…" };
  return texts[stage] ? { percent: 0, text: texts[stage] } : null;
}

/**
 * Create the job and follow it. Resolves to {job, finished, cancel}: `job` is the created JobPublic,
 * `finished` a promise of the job as stored once it ended (done, error or cancelled; or whatever state it
 * is in if the stream was lost), `cancel()` sends DELETE. Rejects with the API's error if creation fails.
 */
export async function startJob(api, body, { onProgress }) {
  const job = await api.createJob(body);
  let stream = null;
  const finished = new Promise((resolve, reject) => {
    let ended = false;
    const end = () => {
      if (ended) return; // the final event and a lost stream may both arrive
      ended = true;
      stream?.close();
      api.getJob(job.id).then(resolve, reject);
    };
    stream = api.followJob(job, {
      onEvent: (stage, data) => {
        if (FINAL.has(stage)) return end();
        const progress = progressOf(stage, data);
        if (progress) onProgress(progress);
      },
      onLost: end,
    });
  });
  return { job, finished, cancel: () => api.cancelJob(job.id) };
}
