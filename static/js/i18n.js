// The scripts' own texts, in the page's language: Django's JavaScript catalog
// (portal.views.javascript_catalog), which base.html loads before any module. Texts are marked
// with these functions so that makemessages finds them (the "djangojs" domain). Should the
// catalog fail to load, the English source text shows rather than nothing.

const catalog = globalThis.django || {};

export const gettext = catalog.gettext || ((text) => text);

export const ngettext =
  catalog.ngettext || ((singular, plural, count) => (count === 1 ? singular : plural));

// Named placeholders: interpolate(gettext("%(done)s of %(total)s"), { done: 1, total: 3 }).
export function interpolate(text, values) {
  return text.replace(/%\((\w+)\)s/g, (match, name) => (name in values ? String(values[name]) : match));
}
