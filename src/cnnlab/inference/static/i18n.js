// Every string the lab shows comes from a catalog per language (i18n-en.json, i18n-ko.json). The browser's
// language chooses it (Korean for ko, ko-KR ...; English for anything else), the page's switch overrides it and
// is remembered. `t(key, values)` fills the {placeholders}; a plural entry has "one" and "other" forms.
export const LANGUAGES = ["en", "ko"];
const STORE = "cnnlab.language";
let catalog = {}, fallback = {}, language = "en";
const listeners = [];

export function chosenLanguage(stored, browser) {
  const wanted = [stored, ...(browser || [])].filter(Boolean).map(code => String(code).toLowerCase().split("-")[0]);
  return wanted.find(code => LANGUAGES.includes(code)) || "en";
}

async function load(code) {
  const response = await fetch(`/static/i18n-${code}.json`);
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return response.json();
}

export async function startLanguage() {
  let stored = null;
  try { stored = localStorage.getItem(STORE); } catch (err) { /* storage off: the browser's language */ }
  fallback = await load("en");
  await useLanguage(chosenLanguage(stored, navigator.languages || [navigator.language]), false);
}

export async function useLanguage(code, remember = true) {
  language = LANGUAGES.includes(code) ? code : "en";
  catalog = language === "en" ? fallback : await load(language).catch(() => fallback);
  if (remember) {
    try { localStorage.setItem(STORE, language); } catch (err) { /* not remembered, still switched */ }
  }
  document.documentElement.lang = language;
  translateStatic(document);
  for (const listener of listeners) listener(language);
}

export const currentLanguage = () => language;
export const onLanguage = listener => listeners.push(listener);

export function t(key, values = {}) {
  let entry = key in catalog ? catalog[key] : fallback[key];
  if (entry === undefined) return key;  // a missing key shows itself: tests/test_i18n.py keeps this from happening
  if (typeof entry === "object") entry = values.count === 1 ? entry.one : entry.other;
  return entry.replace(/\{(\w+)\}/g, (whole, name) => (name in values ? String(values[name]) : whole));
}

// Elements written in index.html: their data-i18n attribute names the key of their text, data-i18n-label,
// -title and -alt those of their attributes.
export function translateStatic(root) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const [attribute, data] of [["aria-label", "i18nLabel"], ["title", "i18nTitle"], ["alt", "i18nAlt"]]) {
    for (const node of root.querySelectorAll(`[data-${data.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)}]`)) {
      node.setAttribute(attribute, t(node.dataset[data]));
    }
  }
  document.title = t("page.title");
}
