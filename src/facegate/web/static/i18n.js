// Messages: every user-facing string of the page comes from i18n/<lang>.json. Elements carry
// data-i18n="key" (text) and data-i18n-<attr>="key" (attributes); text set from code goes
// through setText(), which records the key so that a language switch re-renders it.

export const LANGUAGES = { en: "English", "zh-CN": "简体中文" };
let messages = {};
let current = "en";

export function pickLanguage(preferred) {
  for (const tag of preferred || []) {
    const lower = String(tag).toLowerCase();
    if (lower.startsWith("zh")) return "zh-CN";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

export function language() {
  return current;
}

// A parameter "@key" is itself a message: it follows a language switch too.
export function t(key, params = {}) {
  let text = messages[key];
  if (text === undefined) text = key;
  return text.replace(/\{(\w+)\}/g, (_, name) => {
    if (!(name in params)) return "";
    const value = String(params[name]);
    return value.startsWith("@") ? t(value.slice(1)) : value;
  });
}

export function setText(el, key, params = {}) {
  el.dataset.i18n = key;
  el.dataset.i18nParams = JSON.stringify(params);
  el.textContent = t(key, params);
}

function render(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    const params = el.dataset.i18nParams ? JSON.parse(el.dataset.i18nParams) : {};
    el.textContent = t(el.dataset.i18n, params);
  }
  for (const attr of ["aria-label", "title"]) {
    for (const el of root.querySelectorAll(`[data-i18n-${attr}]`)) {
      el.setAttribute(attr, t(el.getAttribute(`data-i18n-${attr}`)));
    }
  }
}

export async function load(lang) {
  // next to this script: works under any path prefix
  const res = await fetch(new URL(`i18n/${lang}.json`, import.meta.url), { cache: "no-cache" });
  if (!res.ok) throw new Error("messages " + lang);
  messages = await res.json();
  current = lang;
  document.documentElement.lang = lang;
  document.title = t("page.title");
  render(document);
}
