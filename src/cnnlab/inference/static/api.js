// The lab's requests: JSON answers, and errors said in the page's language (the server's own detail, which
// names the value, follows the sentence).
import { t } from "./i18n.js";

export const SAME_SITE = { "X-Requested-With": "cnnlab" };  // the server refuses uploads without it: a cross-site form cannot set it

export async function getJSON(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    throw new Error(t("error.network"));
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(body.detail) ? body.detail.map(d => d.msg).join("; ") : body.detail;
    const message = body.not_a_number ? t("error.not_number", { detail }) : messageFor(response.status, String(detail || response.statusText));
    throw Object.assign(new Error(message), { status: response.status });
  }
  return body;
}

export const postJSON = (url, body) => getJSON(url, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });

function messageFor(status, detail) {
  if (status === 503) return t("error.busy");
  if (status === 413) return t("error.too_large");
  if (status === 415) return t("error.not_image");
  if (status === 422 && detail.includes("no ink found")) return t("error.no_ink");
  return t("error.rejected", { detail });
}
